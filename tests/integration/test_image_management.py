"""Image management through the CLI: --format, images flags and filters, history, prune.

The read-only checks use the session's ``images`` (busybox:latest, debian:bookworm); tests that
tag, untag or prune work in a private data root under the session's temp dir, so they never
remove an image another test relies on.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.images]

IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


@pytest.fixture
def own(md: Any, md_dirs: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """An MD with its own empty data root (removed afterwards)."""
    base = md_dirs / f"own-{request.node.name}"
    (base / "root").mkdir(parents=True)
    (base / "run").mkdir()
    yield dataclasses.replace(md, root=str(base / "root"), run_root=str(base / "run"))
    shutil.rmtree(base, ignore_errors=True)


def import_(md: Any, tar: Path, ref: str, *extra: str) -> str:
    out = md.run("import", *extra, tar, ref, check=True).stdout
    found = IMAGE_ID.findall(out)
    assert found, out
    return found[-1]


def small_tar(path: Path, size: int = 5000) -> Path:
    """A rootfs of one file, so that its layer is not shared with any other image."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(b"x" * size))
    return path


# --- --format ----------------------------------------------------------------------------


def test_image_inspect_format_json_layers(md: Any, images: dict[str, str]) -> None:
    doc = json.loads(md.run("image", "inspect", "busybox", check=True).stdout)[0]
    r = md.run("image", "inspect", "--format={{json .RootFS.Layers}}", "busybox", check=True)
    assert r.stdout == json.dumps(doc["RootFS"]["Layers"], separators=(",", ":")) + "\n"
    assert json.loads(r.stdout) and all(d.startswith("sha256:") for d in json.loads(r.stdout))
    r = md.run("image", "inspect", "-f", "{{.Id}} {{len .RootFS.Layers}} {{.Os}}", "busybox",
               check=True)
    assert r.stdout == f"{images['busybox:latest']} 1 linux\n"


def test_inspect_format_errors_exit_125(md: Any, images: dict[str, str]) -> None:
    r = md.run("image", "inspect", "-f", "{{.Nope}}", "busybox")
    assert r.returncode == 125
    assert ('template parsing error: template: :1:2: executing "" at <.Nope>: map has no entry '
            'for key "Nope"') in r.stderr
    r = md.run("images", "--format", "{{if}}")
    assert r.returncode == 125 and "template parsing error" in r.stderr


def test_images_format_table(md: Any, images: dict[str, str]) -> None:
    r = md.run("images", "--format", "table {{.Repository}}\\t{{.Tag}}", check=True)
    lines = r.stdout.splitlines()
    assert lines[0] == "REPOSITORY   TAG"
    assert "busybox      latest" in lines
    assert "debian       bookworm" in lines
    r = md.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "busybox", check=True)
    assert r.stdout == f"busybox:latest {short(images['busybox:latest'])}\n"
    r = md.run("images", "--format", "{{json .Size}}", "--no-trunc", "busybox", check=True)
    assert re.fullmatch(r'"[\d.]+[kM]?B"\n', r.stdout)


def test_images_quiet_and_digests(md: Any, images: dict[str, str]) -> None:
    quiet = md.run("images", "-q", check=True).stdout.split()
    assert short(images["busybox:latest"]) in quiet
    assert short(images["debian:bookworm"]) in quiet
    full = md.run("images", "-q", "--no-trunc", "busybox", check=True).stdout
    assert full == images["busybox:latest"] + "\n"
    lines = md.run("images", "--digests", "busybox", check=True).stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED",
                                "SIZE"]
    # an imported image has no registry digest
    assert lines[1].split()[:4] == ["busybox", "latest", "<none>",
                                    short(images["busybox:latest"])]


def test_images_filters(own: Any, test_images: Path) -> None:
    tar = test_images / "busybox.tar"
    first = import_(own, tar, "app:1")
    second = import_(own, tar, "app:1", "-m", "again")  # takes app:1 away from the first
    other = import_(own, tar, "tools/busybox:latest", "-m", "other")
    assert len({first, second, other}) == 3

    dangling = own.run("images", "-q", "--filter", "dangling=true", check=True).stdout
    assert dangling == short(first) + "\n"
    tagged = own.run("images", "-q", "-f", "dangling=false", check=True).stdout.split()
    assert sorted(tagged) == sorted([short(second), short(other)])
    listing = own.run("images", check=True).stdout.splitlines()
    assert any(line.split()[:3] == ["<none>", "<none>", short(first)] for line in listing)

    # reference= is Go's path.Match on the familiar name: "*" does not cross a "/"
    r = own.run("images", "--format", "{{.Repository}}", "--filter", "reference=app",
                check=True)
    assert r.stdout == "app\n"
    r = own.run("images", "--format", "{{.Repository}}", "--filter", "reference=*",
                check=True)
    assert r.stdout == "app\n"
    r = own.run("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                "reference=*/*:latest", check=True)
    assert r.stdout == "tools/busybox:latest\n"
    r = own.run("images", "-q", "--filter", f"before={short(second)}", check=True)
    assert r.stdout == short(first) + "\n"
    r = own.run("images", "-q", "--filter", "since=app:1", check=True)
    assert r.stdout == short(other) + "\n"
    r = own.run("images", "--filter", "colour=blue")
    assert r.returncode == 125 and "invalid filter 'colour'" in r.stderr


# --- history -----------------------------------------------------------------------------


def test_history_of_imported_image(md: Any, images: dict[str, str]) -> None:
    image_id = images["busybox:latest"]
    lines = md.run("image", "history", "busybox", check=True).stdout.splitlines()
    assert len(lines) == 2
    assert re.split(r"\s{3,}", lines[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE",
                                             "COMMENT"]
    assert lines[1].startswith(short(image_id) + "   ")
    assert lines[1].endswith("Imported from -")
    assert re.search(r"ago\s+[\d.]+[kM]B\s+Imported from -$", lines[1])

    size = json.loads(md.run("image", "inspect", "busybox", check=True).stdout)[0]["Size"]
    r = md.run("image", "history", "--human=false", "--no-trunc", "--format",
               "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}|{{.CreatedSince}}", "busybox",
               check=True)
    fields = r.stdout.rstrip("\n").split("|")
    assert fields[:4] == [image_id, "", str(size), "Imported from -"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", fields[4])
    assert md.run("image", "history", "-q", "busybox", check=True).stdout == (
        short(image_id) + "\n")


# --- prune and ps --format ----------------------------------------------------------------


def test_image_prune_keeps_images_in_use(own: Any, test_images: Path, tmp_path: Path) -> None:
    tar = test_images / "busybox.tar"
    keep = import_(own, tar, "keep:1")
    gone = import_(own, tar, "gone:1", "-m", "unused")
    old = import_(own, tar, "dang:1", "-m", "old")
    import_(own, tar, "dang:1", "-m", "new")  # old is now dangling
    small = import_(own, small_tar(tmp_path / "small.tar"), "small:1")
    own.run("create", "--name", "user", "keep:1", "true", check=True)
    try:
        r = own.run("ps", "-a", "--format", "{{.Names}} {{.Image}} {{.State}} {{.Status}}",
                    check=True)
        assert r.stdout == "user keep:1 created Created\n"
        r = own.run("ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}", check=True)
        assert r.stdout.splitlines()[0] == "CONTAINER ID   NAMES"

        r = own.run("image", "prune", "-f", check=True)
        assert r.stdout == (f"Deleted Images:\ndeleted: {old}\n\n"
                            "Total reclaimed space: 0B\n")  # its layer is shared
        left = own.run("images", "-q", "--no-trunc", check=True).stdout.split()
        assert old not in left and {keep, gone, small} <= set(left)

        r = own.run("image", "prune", "-a", "-f", check=True)
        lines = r.stdout.splitlines()
        assert lines[0] == "Deleted Images:"
        for ref, image_id in (("gone:1", gone), ("small:1", small)):
            assert f"untagged: {ref}" in lines
            assert f"deleted: {image_id}" in lines
        assert not any("keep:1" in line or keep in line for line in lines)
        # small's own layer went with it: 5000 bytes of data plus the tar's headers
        reclaimed = re.fullmatch(r"Total reclaimed space: ([\d.]+)kB", lines[-1])
        assert reclaimed and float(reclaimed.group(1)) >= 5
        left = own.run("images", "-q", "--no-trunc", check=True).stdout.split()
        assert left == [keep]

        r = own.run("image", "prune", "-a", "-f", check=True)
        assert r.stdout == "Total reclaimed space: 0B\n"
    finally:
        own.run("rm", "-f", "user")
