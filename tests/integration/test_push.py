"""``minidock push`` to real registries, checked with skopeo (an independent client): layers
gzip-compressed with their DiffIDs preserved, blobs skipped or mounted when the registry has
them, monolithic and chunked uploads, token auth with push scope."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import registry as reglib
from conftest import MD, describe

pytestmark = [pytest.mark.registry, pytest.mark.root, pytest.mark.overlay, pytest.mark.images]
MakeRegistry = Callable[..., reglib.RegistryServer]
_counter = [0]


@pytest.fixture
def fresh(md_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MD:
    _counter[0] += 1
    base = md_dirs / f"push-{_counter[0]}"
    (base / "root").mkdir(parents=True)
    (base / "run").mkdir()
    (tmp_path / "etc").mkdir()
    monkeypatch.setenv("MINIDOCK_CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("MINIDOCK_AUTH_CONFIG", str(tmp_path / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return MD(root=str(base / "root"), run_root=str(base / "run"))


def ok(md: MD, *args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    r = md.run(*args, **kwargs)
    assert r.returncode == 0, describe(r)
    return r


def import_busybox(md: MD, test_images: Path, tag: str) -> str:
    return ok(md, "import", "-c", 'CMD ["sh"]', test_images / "busybox.tar", tag).stdout.strip()


def remote_layers(server: reglib.RegistryServer, ref: str, dest: Path) -> tuple[
        dict[str, Any], dict[str, Any], list[str]]:
    """(manifest, config, DiffIDs of the layer blobs as skopeo copied them)."""
    reglib.copy_to_oci_dir(server, ref, dest)
    index = json.loads((dest / "index.json").read_text())
    blobs = dest / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(
        (blobs / layer["digest"][7:]).read_bytes())).hexdigest() for layer in manifest["layers"]]
    return manifest, config, diff_ids


def test_push_an_imported_image_and_pull_it_back(
    fresh: MD, registry: reglib.RegistryServer, test_images: Path, tmp_path: Path
) -> None:
    image_id = import_busybox(fresh, test_images, "bb:1")
    ref = registry.ref("pushed/bb:1")
    ok(fresh, "tag", "bb:1", ref)
    lines = ok(fresh, "push", ref).stdout.splitlines()
    info = json.loads(ok(fresh, "image", "inspect", ref).stdout)[0]
    diff_id = info["RootFS"]["Layers"][0]
    assert lines[0] == f"The push refers to repository [{registry.ref('pushed/bb')}]"
    assert lines[1] == f"{diff_id[7:19]}: Pushed"
    digest = reglib.remote_digest(registry, "pushed/bb:1")
    assert lines[-1].startswith(f"1: digest: {digest} size: ")
    assert info["RepoDigests"] == [registry.ref(f"pushed/bb@{digest}")]

    raw = reglib.inspect_remote(registry, "pushed/bb:1", raw=True)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [layer["mediaType"] for layer in raw["layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"]
    _, config, diff_ids = remote_layers(registry, "pushed/bb:1", tmp_path / "oci")
    assert diff_ids == config["rootfs"]["diff_ids"] == info["RootFS"]["Layers"]

    again = ok(fresh, "push", ref).stdout.splitlines()
    assert again[1] == f"{diff_id[7:19]}: Layer already exists"
    ok(fresh, "tag", "bb:1", registry.ref("elsewhere/bb:2"))
    mounted = ok(fresh, "push", registry.ref("elsewhere/bb:2")).stdout.splitlines()
    assert mounted[1] == f"{diff_id[7:19]}: Mounted from pushed/bb"

    ok(fresh, "rmi", "bb:1", ref, registry.ref("elsewhere/bb:2"))
    ok(fresh, "pull", ref)
    assert json.loads(ok(fresh, "image", "inspect", ref).stdout)[0]["Id"] == image_id


def test_chunked_upload_of_a_pulled_multi_layer_image(
    fresh: MD, registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded],
    make_registry: MakeRegistry, tmp_path: Path,
) -> None:
    two = seeded["busybox:two-layers"]
    ok(fresh, "pull", two.ref)
    target = make_registry("open")
    ref = target.ref("copy/bb:two")
    ok(fresh, "tag", two.ref, ref)
    r = ok(fresh, "push", ref, env={"MINIDOCK_PUSH_CHUNK_SIZE": str(256 << 10)})
    assert r.stdout.count(": Pushed") == 2, r.stdout
    log = target.log_path.read_text(errors="replace")
    assert log.count('"PATCH /v2/copy/bb/blobs/uploads/') >= 4  # > 1 MiB in 256 KiB chunks
    _, config, diff_ids = remote_layers(target, "copy/bb:two", tmp_path / "oci")
    assert diff_ids == config["rootfs"]["diff_ids"] == list(two.images[0].diff_ids)


def test_push_with_token_auth(fresh: MD, make_registry: MakeRegistry,
                              test_images: Path) -> None:
    server = make_registry("token")
    import_busybox(fresh, test_images, "bb:1")
    ref = server.ref("team/bb:1")
    ok(fresh, "tag", "bb:1", ref)
    r = fresh.run("push", ref)
    assert r.returncode == 125 and "Error: unauthorized" in r.stderr, describe(r)
    assert server.readonly_username and server.readonly_password
    ok(fresh, "login", "-u", server.readonly_username, "--password-stdin", server.host,
       input=server.readonly_password)
    r = fresh.run("push", ref)
    assert r.returncode == 125 and "Error: unauthorized" in r.stderr, describe(r)
    assert server.username and server.password
    ok(fresh, "login", "-u", server.username, "--password-stdin", server.host,
       input=server.password)
    assert server.issuer is not None
    server.issuer.clear()
    ok(fresh, "push", ref)
    assert {r.scopes for r in server.issuer.requests} == {("repository:team/bb:pull,push",)}
    assert reglib.remote_digest(server, "team/bb:1").startswith("sha256:")


def test_push_errors(fresh: MD, registry: reglib.RegistryServer) -> None:
    r = fresh.run("push", registry.ref("nothing/here:1"))
    assert r.returncode == 125, describe(r)
    assert r.stderr.strip() == (
        f"Error: An image does not exist locally with the tag: {registry.ref('nothing/here')}")
    r = fresh.run("push", registry.ref("x@sha256:" + "a" * 64))
    assert r.returncode == 125 and "cannot push a digest reference" in r.stderr
    assert not os.path.exists(os.path.join(fresh.root, "tmp")) or not os.listdir(
        os.path.join(fresh.root, "tmp"))


def test_built_and_committed_images_travel_through_a_registry(
    fresh: MD, registry: reglib.RegistryServer, test_images: Path, md_dirs: Path,
    tmp_path: Path
) -> None:
    """A build FROM a registry image pulls it (and --pull again); what a build or a commit
    deleted stays deleted after push and a pull into another root."""
    import_busybox(fresh, test_images, "bb:1")
    base = registry.ref("base/bb:1")
    ok(fresh, "tag", "bb:1", base)
    ok(fresh, "push", base)
    ok(fresh, "rmi", "bb:1", base)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN rm /bin/ls && echo built > /built\n")
    built = registry.ref("built/bb:1")
    r = ok(fresh, "build", "-t", built, ctx)
    assert "Pulling from base/bb" in r.stdout  # a missing base is pulled, as docker does
    r = ok(fresh, "build", "--pull", "-t", built, ctx)
    assert "Image is up to date" in r.stdout and "Using cache" in r.stdout
    ok(fresh, "push", built)
    ok(fresh, "run", "--name", "committer", base, "rm", "/bin/cat")
    committed = registry.ref("committed/bb:1")
    ok(fresh, "commit", "committer", committed)
    ok(fresh, "push", committed)
    ok(fresh, "rm", "committer")

    other = MD(root=str(md_dirs / f"{Path(fresh.root).parent.name}-other" / "root"),
               run_root=str(md_dirs / f"{Path(fresh.root).parent.name}-other" / "run"))
    Path(other.root).mkdir(parents=True)
    Path(other.run_root).mkdir()
    ok(other, "pull", built)
    ok(other, "pull", committed)
    r = other.run("run", "--rm", built, "sh", "-c", "cat /built; ls /bin/ls")
    assert r.stdout.startswith("built\n") and r.returncode == 1  # /bin/ls stays deleted
    r = other.run("run", "--rm", committed, "sh", "-c", "test -e /bin/cat")
    assert r.returncode == 1
    for md in (fresh, other):
        md.run("rmi", "-f", built, committed, base)
