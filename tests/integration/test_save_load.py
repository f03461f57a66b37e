"""save / load / export round trips with real images, real archives and a real consumer.

busybox and debian:bookworm are imported (fixture ``images``), saved, loaded into fresh data
roots (same image ids), read by skopeo (a docker-archive consumer that is not us), converted
by skopeo into OCI layouts that load back; hand-made archives in Docker's pre-25 layout load;
broken archives fail with one line and exit 125 and leave the store as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.images]

SKOPEO = shutil.which("skopeo")


MD = Any  # tests/integration/conftest.py's MD (the CLI bound to a data root)


def describe(r: subprocess.CompletedProcess[str]) -> str:
    return f"exit {r.returncode}: {' '.join(map(str, r.args))}\n{r.stdout}{r.stderr}"


@pytest.fixture
def fresh(md: MD, tmp_path: Path) -> MD:
    """An empty data root of its own (its run root is per-boot state: under tmp too)."""
    (tmp_path / "root").mkdir()
    (tmp_path / "run").mkdir()
    return type(md)(root=str(tmp_path / "root"), run_root=str(tmp_path / "run"))


def store_state(md: MD) -> list[str]:
    """Everything in the image store and the overlay2 dir (to compare before/after)."""
    out = []
    for sub in ("image/overlay2/layerdb/sha256", "image/overlay2/imagedb/content/sha256",
                "overlay2"):
        d = Path(md.root) / sub
        if d.is_dir():
            out += [f"{sub}/{n}" for n in sorted(os.listdir(d)) if n != "l"]
    repos = Path(md.root) / "image/overlay2/repositories.json"
    if repos.exists():
        out.append(repos.read_text())
    return out


@pytest.fixture(scope="module")
def saved(md: MD, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("save") / "both.tar"
    md.run("save", "-o", out, "busybox:latest", "debian:bookworm", check=True, timeout=600)
    return out


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}  # type: ignore[union-attr]


def test_save_layout_is_docker_25(saved: Path, images: dict[str, str]) -> None:
    files = members(saved)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    manifest = json.loads(files["manifest.json"])
    by_tag = {m["RepoTags"][0]: m for m in manifest}
    for ref, image_id in images.items():
        item = by_tag[ref]
        assert item["Config"] == "blobs/sha256/" + image_id.removeprefix("sha256:")
        config = files[item["Config"]]
        assert "sha256:" + hashlib.sha256(config).hexdigest() == image_id
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        assert item["Layers"] == ["blobs/sha256/" + d.removeprefix("sha256:") for d in diff_ids]
        for layer, diff_id in zip(item["Layers"], diff_ids, strict=True):
            # Stored uncompressed under its DiffID, byte for byte the imported tar.
            assert "sha256:" + hashlib.sha256(files[layer]).hexdigest() == diff_id
    index = json.loads(files["index.json"])
    names = {d["annotations"]["io.containerd.image.name"] for d in index["manifests"]}
    assert names == {"docker.io/library/busybox:latest", "docker.io/library/debian:bookworm"}
    assert {d["annotations"]["org.opencontainers.image.ref.name"]
            for d in index["manifests"]} == {"latest", "bookworm"}
    assert json.loads(files["repositories"]).keys() == {"busybox", "debian"}


def test_saved_layer_is_the_imported_tarball(saved: Path, test_images: Path) -> None:
    original = (test_images / "busybox.tar").read_bytes()
    digest = hashlib.sha256(original).hexdigest()
    assert members(saved)[f"blobs/sha256/{digest}"] == original


def test_save_load_round_trip_same_ids(saved: Path, images: dict[str, str], fresh: MD) -> None:
    r = fresh.run("load", "-i", saved, timeout=600, check=True)
    assert r.stdout.splitlines() == ["Loaded image: busybox:latest",
                                     "Loaded image: debian:bookworm"]
    for ref, image_id in images.items():
        got = fresh.run("image", "inspect", "--format", "{{.Id}}", ref, check=True)
        assert got.stdout.strip() == image_id
    # And what was loaded saves to the same bytes again (tar-split recorded on load too).
    again = Path(fresh.root).parent / "again.tar"
    fresh.run("image", "save", "-o", again, "busybox:latest", "debian:bookworm", check=True,
              timeout=600)
    assert again.read_bytes() == saved.read_bytes()


def test_save_to_stdout_and_load_from_stdin(md: MD, images: dict[str, str], fresh: MD) -> None:
    data = subprocess.run(md.argv("save", "busybox"), capture_output=True, check=True).stdout
    r = fresh.run("image", "load", "-q", input=data, check=True)
    assert r.stdout == "Loaded image: busybox:latest\n"


def test_save_refuses_a_terminal(md: MD, images: dict[str, str]) -> None:
    import pty

    parent, child = pty.openpty()
    try:
        r = subprocess.run(md.argv("save", "busybox"), stdout=child, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    finally:
        os.close(child)
        os.close(parent)
    assert r.returncode == 125
    assert "cowardly refusing to save to a terminal. Use the -o flag or redirect" in r.stderr


@pytest.mark.skipif(SKOPEO is None, reason="needs skopeo")
def test_skopeo_reads_the_archive_and_its_oci_copy_loads(saved: Path, tmp_path: Path,
                                                        images: dict[str, str],
                                                        fresh: MD) -> None:
    bb = images["busybox:latest"]
    r = subprocess.run(["skopeo", "inspect", f"docker-archive:{saved}:busybox:latest"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    layers = json.loads(r.stdout)["Layers"]
    config = subprocess.run(["skopeo", "inspect", "--config",
                             f"docker-archive:{saved}:busybox:latest"],
                            capture_output=True, text=True, check=True).stdout
    assert layers == json.loads(config)["rootfs"]["diff_ids"]
    for compress in ("plain", "gzip", "zstd"):
        oci = tmp_path / f"oci-{compress}"
        args = [] if compress == "plain" else ["--dest-compress-format", compress,
                                               "--dest-compress"]
        subprocess.run(["skopeo", "copy", *args, f"docker-archive:{saved}:busybox:latest",
                        f"oci:{oci}:docker.io/library/bb-{compress}:v1"],
                       capture_output=True, text=True, check=True, timeout=300)
        archive = tmp_path / f"oci-{compress}.tar"
        with tarfile.open(archive, "w") as tf:
            for name in sorted(os.listdir(oci)):
                tf.add(oci / name, arcname=name)
        r = fresh.run("load", "-i", archive, check=True, timeout=300)
        assert r.stdout == f"Loaded image: bb-{compress}:v1\n"
        got = fresh.run("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                        f"bb-{compress}:v1", check=True)
        assert json.loads(got.stdout) == layers
    assert bb  # skopeo rewrites the config (so another id); the layers are what must match


def old_layout(saved: Path, dest: Path, *, tamper: str = "") -> Path:
    """Docker's pre-25 `docker save` layout for busybox, metadata last (as Docker sorts)."""
    files = members(saved)
    item = next(m for m in json.loads(files["manifest.json"]) if m["RepoTags"] == [
        "busybox:latest"])
    config = files[item["Config"]]
    layer = files[item["Layers"][0]]
    if tamper == "diffid":
        doc = json.loads(config)
        doc["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
        config = json.dumps(doc).encode()
    v1id = hashlib.sha256(b"v1" + layer[:64]).hexdigest()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    entries = [(f"{v1id}/VERSION", b"1.0"), (f"{v1id}/json", b'{"id":"%s"}' % v1id.encode())]
    if tamper != "missing":
        entries.append((f"{v1id}/layer.tar", layer))
    entries += [(config_name, config), ("manifest.json", json.dumps([{
        "Config": config_name, "RepoTags": ["old:layout"],
        "Layers": [f"{v1id}/layer.tar"]}]).encode()),
        ("repositories", json.dumps({"old": {"layout": v1id}}).encode())]
    with tarfile.open(dest, "w") as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return dest


def test_old_layout_loads(saved: Path, tmp_path: Path, fresh: MD, images: dict[str, str]) -> None:
    archive = old_layout(saved, tmp_path / "old.tar")
    r = fresh.run("load", "-i", archive, check=True)
    assert r.stdout == "Loaded image: old:layout\n"
    got = fresh.run("image", "inspect", "--format", "{{.Id}}", "old:layout", check=True)
    assert got.stdout.strip() == images["busybox:latest"]


@pytest.mark.parametrize("bad", ["missing", "diffid", "truncated", "garbage"])
def test_bad_archives_fail_cleanly(saved: Path, tmp_path: Path, fresh: MD, bad: str) -> None:
    # Something in the store that must stay as it is (not busybox: a stored layer need not
    # be in the archive, as with Docker).
    seed = tmp_path / "seed.tar"
    with tarfile.open(seed, "w") as tf:
        info = tarfile.TarInfo("hello")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"hello\n"))
    fresh.run("import", seed, "seed:1", check=True)
    before = store_state(fresh)
    if bad == "truncated":
        archive = tmp_path / "truncated.tar"
        archive.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    elif bad == "garbage":
        archive = tmp_path / "garbage.tar"
        archive.write_bytes(b"not a tar at all" * 100)
    else:
        archive = old_layout(saved, tmp_path / f"{bad}.tar", tamper=bad)
    r = fresh.run("load", "-i", archive, timeout=300)
    assert r.returncode == 125, describe(r)
    assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert store_state(fresh) == before
    assert not os.listdir(Path(fresh.root) / "tmp")


def test_save_of_an_edited_layer_fails(md: MD, images: dict[str, str], tmp_path: Path,
                                       fresh: MD, test_images: Path) -> None:
    fresh.run("import", test_images / "busybox.tar", "edited:1", check=True)
    layerdb = Path(fresh.root) / "image/overlay2/layerdb/sha256"
    (chain,) = os.listdir(layerdb)
    cache_id = (layerdb / chain / "cache-id").read_text()
    victim = Path(fresh.root) / "overlay2" / cache_id / "diff/bin/busybox"
    victim.write_bytes(victim.read_bytes()[:-1] + b"X")
    out = tmp_path / "edited.tar"
    r = fresh.run("save", "-o", out, "edited:1")
    assert r.returncode == 125, describe(r)
    assert "changed" in r.stderr
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if "minidock-save" in n]
    # Without its tar-split, the layer is regenerated and its DiffID no longer matches.
    (layerdb / chain / "tar-split.json.gz").unlink()
    r = fresh.run("save", "-o", out, "edited:1")
    assert r.returncode == 125 and "no tar-split" in r.stderr, describe(r)


def test_export_container_is_its_merged_view(md: MD, images: dict[str, str],
                                             tmp_path: Path, test_images: Path) -> None:
    r = md.run("run", "--name", "to-export", "busybox", "sh", "-c",
               "echo hello > /new-file && rm /bin/ls", check=True)
    try:
        out = tmp_path / "export.tar"
        md.run("export", "-o", out, "to-export", check=True, timeout=300)
        with tarfile.open(out) as tf:
            got = {m.name.rstrip("/"): m for m in tf}
            assert tf.extractfile(got["new-file"]).read() == b"hello\n"  # type: ignore[union-attr]
        with tarfile.open(test_images / "busybox.tar") as tf:
            image = {os.path.normpath(m.name) for m in tf if os.path.normpath(m.name) != "."}
        init = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/console",
                "etc/mtab", "dev/pts", "dev/shm", "proc", "sys", "new-file"}
        assert set(got) == (image | init) - {"bin/ls"}
        assert not [m for m in got.values() if os.path.basename(m.name).startswith(".wh.")]
        data = subprocess.run(md.argv("export", "to-export"), capture_output=True,
                              check=True).stdout
        assert data == out.read_bytes()
    finally:
        md.run("rm", "-f", "to-export")
    assert r.returncode == 0
