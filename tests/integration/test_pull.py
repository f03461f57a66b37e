"""``minidock pull`` from real registries (docker-registry on 127.0.0.1, seeded by skopeo), and
from canned servers for what a real registry will not serve.

Each test pulls into its own data root (``fresh`` below) so that "Already exists" and "Image is
up to date" mean what the test arranged. Bad input must leave no layer and no image behind.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import time
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
def fresh(md_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          request: pytest.FixtureRequest) -> MD:
    """An empty data root, and an environment that sees no host configuration: no
    /etc/minidock (unless client_config provides one), no ~/.minidock or ~/.docker
    credentials."""
    _counter[0] += 1
    base = md_dirs / f"pull-{_counter[0]}"
    (base / "root").mkdir(parents=True)
    (base / "run").mkdir()
    if "client_config" not in request.fixturenames:
        cfg = tmp_path / "etc-minidock"
        cfg.mkdir(exist_ok=True)
        monkeypatch.setenv("MINIDOCK_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("MINIDOCK_AUTH_CONFIG", str(tmp_path / "auth" / "config.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return MD(root=str(base / "root"), run_root=str(base / "run"))


def ok(md: MD, *args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    r = md.run(*args, **kwargs)
    assert r.returncode == 0, describe(r)
    return r


def fails(md: MD, *args: object, **kwargs: Any) -> str:
    """Run, expect exit 125 and a one-line error; return that line."""
    r = md.run(*args, **kwargs)
    assert r.returncode == 125, describe(r)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, describe(r)
    return errors[0]


def store_dir(md: MD) -> Path:
    return Path(md.root) / "image" / "overlay2"


def layers_of(md: MD) -> list[str]:
    d = store_dir(md) / "layerdb" / "sha256"
    return sorted(os.listdir(d)) if d.is_dir() else []


def overlay_dirs(md: MD) -> list[str]:
    d = Path(md.root) / "overlay2"
    return sorted(n for n in os.listdir(d) if n != "l") if d.is_dir() else []


def images_of(md: MD) -> list[str]:
    d = store_dir(md) / "imagedb" / "content" / "sha256"
    return sorted(os.listdir(d)) if d.is_dir() else []


def assert_nothing_left(md: MD) -> None:
    assert layers_of(md) == [] and images_of(md) == [] and overlay_dirs(md) == []
    tmp = Path(md.root) / "tmp"
    assert not tmp.is_dir() or os.listdir(tmp) == []


def inspect(md: MD, ref: str) -> dict[str, Any]:
    info: list[dict[str, Any]] = json.loads(ok(md, "image", "inspect", ref).stdout)
    return info[0]


# --- the good cases -------------------------------------------------------------------------------


def test_pull_prints_dockers_lines_and_records_everything(
    fresh: MD, registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded]
) -> None:
    s = seeded["busybox:latest"]
    r = ok(fresh, "pull", registry.ref("busybox"))
    lines = r.stdout.splitlines()
    blob = s.images[0].layers[0].digest
    assert lines == [
        "Using default tag: latest",
        "latest: Pulling from busybox",
        f"{blob[7:19]}: Pull complete",
        f"Digest: {s.digest}",
        f"Status: Downloaded newer image for {registry.ref('busybox:latest')}",
        registry.ref("busybox:latest"),
    ]
    info = inspect(fresh, registry.ref("busybox:latest"))
    assert info["RepoTags"] == [registry.ref("busybox:latest")]
    assert info["RepoDigests"] == [registry.ref(f"busybox@{s.digest}")]
    assert info["RootFS"]["Layers"] == list(s.images[0].diff_ids)
    assert info["Id"] == s.images[0].config.digest  # image id = config digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    # Docker's distribution metadata
    diff_id = s.images[0].diff_ids[0]
    dist = store_dir(fresh) / "distribution"
    assert json.loads((dist / "v2metadata-by-diffid" / "sha256" / diff_id[7:]).read_text()) == [
        {"Digest": blob, "SourceRepository": registry.ref("busybox"), "HMAC": ""}]
    assert (dist / "diffid-by-digest" / "sha256" / blob[7:]).read_text() == diff_id

    again = ok(fresh, "pull", registry.ref("busybox:latest")).stdout.splitlines()
    assert again[-2:] == [f"Status: Image is up to date for {registry.ref('busybox:latest')}",
                          registry.ref("busybox:latest")]
    assert ok(fresh, "pull", "-q", registry.ref("busybox")).stdout == (
        registry.ref("busybox:latest") + "\n")


@pytest.mark.parametrize("name", ["busybox:oci", "busybox:zstd", "busybox:plain",
                                  "busybox:two-layers"])
def test_every_manifest_and_layer_flavour(
    fresh: MD, registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded], name: str
) -> None:
    s = seeded[name]
    ok(fresh, "pull", s.ref)
    info = inspect(fresh, s.ref)
    assert info["RootFS"]["Layers"] == list(s.images[0].diff_ids)
    assert info["RepoDigests"] == [s.digest_ref]
    assert len(layers_of(fresh)) == len(s.images[0].diff_ids)
    assert not (Path(fresh.root) / "tmp").is_dir() or os.listdir(Path(fresh.root) / "tmp") == []


def test_shared_layers_are_stored_once(
    fresh: MD, registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded]
) -> None:
    ok(fresh, "pull", seeded["busybox:latest"].ref)
    two = seeded["busybox:two-layers"]
    lines = ok(fresh, "pull", two.ref).stdout.splitlines()
    base, top = (d.digest[7:19] for d in two.images[0].layers)
    assert f"{base}: Already exists" in lines and f"{top}: Pull complete" in lines
    assert len(layers_of(fresh)) == 2


def test_pull_by_digest(fresh: MD, registry: reglib.RegistryServer,
                        seeded: dict[str, reglib.Seeded]) -> None:
    s = seeded["busybox:oci"]
    lines = ok(fresh, "pull", s.digest_ref).stdout.splitlines()
    assert lines[0] == f"{s.digest}: Pulling from busybox"
    assert lines[-1] == s.digest_ref
    info = inspect(fresh, s.digest_ref)
    assert info["RepoTags"] == [] and info["RepoDigests"] == [s.digest_ref]


@pytest.mark.parametrize("name", ["busybox:multi", "busybox:multi-oci"])
def test_platform_selection(fresh: MD, registry: reglib.RegistryServer,
                            seeded: dict[str, reglib.Seeded], name: str) -> None:
    s = seeded[name]
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    ok(fresh, "pull", s.ref)
    info = inspect(fresh, s.ref)
    assert info["Architecture"] == host_arch
    assert info["RepoDigests"] == [s.digest_ref]  # the index's digest, as Docker records it

    ok(fresh, "pull", "--platform", "linux/arm64", s.ref)
    arm = inspect(fresh, s.ref)
    assert arm["Architecture"] == "arm64" and arm.get("Variant") in (None, "v8")
    arm_image = next(i for i in s.images if i.platform["architecture"] == "arm64")
    assert arm["RootFS"]["Layers"] == list(arm_image.diff_ids)

    err = fails(fresh, "pull", "--platform", "linux/s390x", s.ref)
    assert err == "Error: no matching manifest for linux/s390x in the manifest list entries"


def test_single_platform_image_and_the_wrong_platform(
    fresh: MD, registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded]
) -> None:
    err = fails(fresh, "pull", "--platform", "linux/arm64", seeded["busybox:latest"].ref)
    assert "does not match the specified platform: wanted linux/arm64/v8, actual: linux/amd64" \
        in err
    assert_nothing_left(fresh)


def test_unknown_references(fresh: MD, registry: reglib.RegistryServer,
                            seeded: dict[str, reglib.Seeded]) -> None:
    err = fails(fresh, "pull", registry.ref("library/ubunt"))
    assert err == f"Error: manifest unknown: {registry.ref('library/ubunt:latest')}"
    err = fails(fresh, "pull", registry.ref("busybox:nope"))
    assert err == f"Error: manifest unknown: {registry.ref('busybox:nope')}"
    assert fails(fresh, "pull", "Upper/Case").startswith("Error: invalid reference format")
    assert_nothing_left(fresh)


@pytest.mark.cgroup
def test_run_pulls_a_missing_image(fresh: MD, registry: reglib.RegistryServer,
                                   seeded: dict[str, reglib.Seeded]) -> None:
    ref = seeded["busybox:two-layers"].ref
    r = fresh.run("run", "--rm", "--network", "none", ref, "cat", "/etc/seeded")
    assert r.returncode == 0, describe(r)
    assert r.stdout == reglib.SEEDED_FILE.decode()
    err = r.stderr.splitlines()
    assert err[0] == f"Unable to find image '{ref}' locally"
    assert err[1] == "two-layers: Pulling from busybox"
    assert err[-1] == f"Status: Downloaded newer image for {ref}"
    # the second run finds it
    r = fresh.run("run", "--rm", "--network", "none", ref, "true")
    assert r.returncode == 0 and "Unable to find" not in r.stderr, describe(r)


def test_registry_mirror_serves_docker_hub_images(
    fresh: MD, registry: reglib.RegistryServer, test_images: Path
) -> None:
    reglib.seed(registry, "library/mirrored:1", reglib.busybox_spec(test_images))
    cfg = Path(os.environ["MINIDOCK_CONFIG_DIR"]) / "config.json"
    cfg.write_text(json.dumps({"registry-mirrors": [registry.url]}))
    lines = ok(fresh, "pull", "mirrored:1").stdout.splitlines()
    assert lines[0] == "1: Pulling from library/mirrored"
    assert lines[-1] == "docker.io/library/mirrored:1"
    assert inspect(fresh, "mirrored:1")["RepoTags"] == ["mirrored:1"]


# --- authentication -------------------------------------------------------------------------------


def _login_file(user: str, password: str, host: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {host: {"auth": auth}}}


def test_tls_and_basic_auth(fresh: MD, registry_tls: reglib.RegistryServer,
                            client_config: Path, test_images: Path) -> None:
    s = reglib.seed(registry_tls, "private/busybox:1", reglib.busybox_spec(test_images))
    err = fails(fresh, "pull", s.ref)
    assert err.startswith("Error: unauthorized: authentication required")
    auth = Path(os.environ["MINIDOCK_AUTH_CONFIG"])
    auth.parent.mkdir(parents=True, exist_ok=True)
    auth.write_text(json.dumps(_login_file("alice", "wrong", registry_tls.host)))
    assert fails(fresh, "pull", s.ref).startswith("Error: unauthorized")
    assert registry_tls.username and registry_tls.password
    auth.write_text(json.dumps(_login_file(registry_tls.username, registry_tls.password,
                                           registry_tls.host)))
    ok(fresh, "pull", s.ref)
    assert inspect(fresh, s.ref)["RepoDigests"] == [s.digest_ref]


def test_tls_with_the_wrong_ca_is_refused(fresh: MD, registry_tls: reglib.RegistryServer,
                                          client_config: Path, tmp_path: Path) -> None:
    other = reglib.TestCA(tmp_path / "other-ca")
    (client_config / "certs.d" / registry_tls.host / "ca.crt").write_bytes(
        other.cert_path.read_bytes())
    err = fails(fresh, "pull", registry_tls.ref("private/busybox:1"))
    assert "certificate verify failed" in err or "x509" in err


def test_docker_config_is_the_fallback(fresh: MD, registry_tls: reglib.RegistryServer,
                                       client_config: Path, test_images: Path) -> None:
    s = reglib.seed(registry_tls, "private/busybox:2", reglib.busybox_spec(test_images))
    docker = Path(os.environ["DOCKER_CONFIG"])
    docker.mkdir(parents=True, exist_ok=True)
    assert registry_tls.username and registry_tls.password
    (docker / "config.json").write_text(json.dumps(_login_file(
        registry_tls.username, registry_tls.password, f"https://{registry_tls.host}")))
    ok(fresh, "pull", s.ref)


def test_token_auth_anonymous_and_with_credentials(
    fresh: MD, registry_token: reglib.RegistryServer, test_images: Path
) -> None:
    issuer = registry_token.issuer
    assert issuer is not None
    public = reglib.seed(registry_token, "public/busybox:1", reglib.busybox_spec(test_images))
    private = reglib.seed(registry_token, "team/busybox:1", reglib.busybox_spec(test_images))
    issuer.clear()
    ok(fresh, "pull", public.ref)
    fetches = issuer.requests
    # one anonymous token for the whole pull (HEAD, manifest, config, layer): cached per scope
    assert len(fetches) == 1, fetches
    assert fetches[0].anonymous and fetches[0].scopes == ("repository:public/busybox:pull",)

    issuer.clear()
    err = fails(fresh, "pull", private.ref)
    assert err.startswith("Error: unauthorized"), err
    assert registry_token.username and registry_token.password
    auth = Path(os.environ["MINIDOCK_AUTH_CONFIG"])
    auth.parent.mkdir(parents=True, exist_ok=True)
    auth.write_text(json.dumps(_login_file(registry_token.username, registry_token.password,
                                           registry_token.host)))
    issuer.clear()
    ok(fresh, "pull", private.ref)
    assert [(r.account, r.authenticated, r.scopes) for r in issuer.requests] == [
        (registry_token.username, True, ("repository:team/busybox:pull",))]

    auth.write_text(json.dumps(_login_file(registry_token.username, "wrong",
                                           registry_token.host)))
    err = fails(fresh, "pull", private.ref)
    assert err == "Error: unauthorized: incorrect username or password"


def test_a_redirect_to_another_host_gets_no_credentials(
    fresh: MD, test_images: Path, tmp_path: Path
) -> None:
    layer = reglib.compress(reglib.make_layer({"hello": b"hi\n"}), "gzip")
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    with reglib.StaticRegistry() as storage, reglib.StaticRegistry() as reg:
        ldigest = storage.blob("r", layer)
        cdigest = reg.blob("r", config)
        reg.route(f"/v2/r/blobs/{ldigest}",
                  reglib.Route(307, b"", {"Location": f"{storage.url}/v2/r/blobs/{ldigest}"}))
        reg.manifest("r", "latest", json.dumps({
            "schemaVersion": 2, "mediaType": reglib.OCI_MANIFEST,
            "config": {"mediaType": reglib.OCI_CONFIG, "digest": cdigest, "size": len(config)},
            "layers": [{"mediaType": reglib.OCI_LAYER + "+gzip", "digest": ldigest,
                        "size": len(layer)}]}).encode(), reglib.OCI_MANIFEST)
        # Basic auth on the registry: every request to it carries the credentials.
        reg.route("/v2/", reglib.Route(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'}))
        auth = Path(os.environ["MINIDOCK_AUTH_CONFIG"])
        auth.parent.mkdir(parents=True, exist_ok=True)
        auth.write_text(json.dumps(_login_file("u", "p", reg.host)))
        ok(fresh, "pull", reg.ref("r"))
        to_registry = [h for m, p, h in reg.requests if p.startswith("/v2/r/")]
        assert to_registry and all("Authorization" in h for h in to_registry)
        to_storage = [h for m, p, h in storage.requests]
        assert to_storage and not any("Authorization" in h for h in to_storage)


# --- bad input: a clear error, nothing kept ----------------------------------------------------


def _unique_image(test_images: Path) -> reglib.ImageSpec:
    extra = reglib.make_layer({"unique": os.urandom(200_000).hex().encode()})
    return reglib.busybox_spec(test_images, extra_layer=extra)


def test_digest_mismatch_and_truncated_blob(fresh: MD, make_registry: MakeRegistry,
                                            test_images: Path) -> None:
    server = make_registry("open")
    s = reglib.seed(server, "bad/one:1", _unique_image(test_images))
    top = s.images[0].layers[1]
    blob = server.blob_path(top.digest).read_bytes()
    reglib.corrupt_blob_on_disk(server, top.digest, data=blob[:-1] + bytes([blob[-1] ^ 1]))
    err = fails(fresh, "pull", s.ref)
    assert err == (f"Error: blob digest mismatch: got sha256:"
                   f"{hashlib.sha256(blob[:-1] + bytes([blob[-1] ^ 1])).hexdigest()}, "
                   f"want {top.digest}"), err
    assert_nothing_left(fresh)

    reglib.corrupt_blob_on_disk(server, top.digest, data=blob, truncate=len(blob) // 2)
    err = fails(fresh, "pull", s.ref)
    assert err == (f"Error: blob {top.digest} is truncated: got {len(blob) // 2} of "
                   f"{len(blob)} bytes"), err
    assert_nothing_left(fresh)


def test_config_diff_ids_must_match_the_layers(fresh: MD, test_images: Path) -> None:
    layer = reglib.compress(reglib.make_layer({"a": b"a"}), "gzip")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "e" * 64]}})
    with reglib.StaticRegistry() as reg:
        ldigest = reg.blob("r", layer)
        cdigest = reg.blob("r", config.encode())
        reg.manifest("r", "latest", json.dumps({
            "schemaVersion": 2, "mediaType": reglib.OCI_MANIFEST,
            "config": {"mediaType": reglib.OCI_CONFIG, "digest": cdigest, "size": len(config)},
            "layers": [{"mediaType": reglib.OCI_LAYER + "+gzip", "digest": ldigest,
                        "size": len(layer)}]}).encode(), reglib.OCI_MANIFEST)
        err = fails(fresh, "pull", reg.ref("r"))
    assert "the image config says sha256:" + "e" * 64 in err
    assert_nothing_left(fresh)


@pytest.mark.parametrize(("body", "media_type", "message"), [
    (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","x":"'
     + b"y" * (4 << 20) + b'"}', reglib.OCI_MANIFEST, "manifest too large"),
    (b'{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}',
     "application/vnd.example.thing+json", "unsupported manifest media type"),
    (json.dumps({"schemaVersion": 2, "mediaType": reglib.OCI_INDEX, "manifests": [],
                 "layers": []}).encode(), reglib.OCI_INDEX, "both manifests and layers"),
])
def test_bad_manifests(fresh: MD, body: bytes, media_type: str, message: str) -> None:
    with reglib.StaticRegistry() as reg:
        reg.manifest("r", "latest", body, media_type)
        assert message in fails(fresh, "pull", reg.ref("r"))
    assert_nothing_left(fresh)


def test_a_registry_dying_mid_blob(fresh: MD) -> None:
    layer = reglib.compress(reglib.make_layer({"big": os.urandom(3 << 20)}), "gzip")
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    with reglib.StaticRegistry() as reg:
        ldigest = reg.blob("r", layer, truncate_at=len(layer) // 3)
        cdigest = reg.blob("r", config)
        reg.manifest("r", "latest", json.dumps({
            "schemaVersion": 2, "mediaType": reglib.OCI_MANIFEST,
            "config": {"mediaType": reglib.OCI_CONFIG, "digest": cdigest, "size": len(config)},
            "layers": [{"mediaType": reglib.OCI_LAYER + "+gzip", "digest": ldigest,
                        "size": len(layer)}]}).encode(), reglib.OCI_MANIFEST)
        err = fails(fresh, "pull", reg.ref("r"))
        assert err.startswith(f"Error: download blob {ldigest}: unexpected EOF"), err
        blob_gets = [h for m, p, h in reg.requests if p.endswith(ldigest) and m == "GET"]
        # retried (bounded), resuming where the transfer broke off
        assert 2 <= len(blob_gets) <= 5
        assert blob_gets[1].get("Range", "").startswith("bytes=")
    assert_nothing_left(fresh)


def test_a_registry_that_is_gone(fresh: MD, make_registry: MakeRegistry,
                                 test_images: Path) -> None:
    server = make_registry("open")
    reglib.seed(server, "x/busybox:1", reglib.busybox_spec(test_images))
    server.kill()
    r = fresh.run("pull", server.ref("x/busybox:1"))
    # as Docker: no "Pulling from" line when the registry never answered, just the error
    assert r.returncode == 125 and r.stdout == "", describe(r)
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, describe(r)
    assert "connection refused" in r.stderr
    assert_nothing_left(fresh)


# --- interrupted pulls ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def debian(registry: reglib.RegistryServer, test_images: Path) -> reglib.Seeded:
    return reglib.seed(registry, "debian:bookworm", test_images / "debian-bookworm.tar")


def _pull_until_applying(md: MD, ref: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(md.argv("pull", ref), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    diff_dirs = Path(md.root) / "overlay2"
    while time.monotonic() < deadline:
        dirs = [d for d in (os.listdir(diff_dirs) if diff_dirs.is_dir() else []) if d != "l"]
        if dirs and any(os.listdir(diff_dirs / d / "diff") for d in dirs
                        if (diff_dirs / d / "diff").is_dir()):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    pytest.fail("the pull never started applying its layer")


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_an_interrupted_pull_leaves_the_store_consistent(
    fresh: MD, registry: reglib.RegistryServer, debian: reglib.Seeded, how: str
) -> None:
    proc = _pull_until_applying(fresh, debian.ref)
    proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    if how == "sigint":
        assert proc.returncode == 130, err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert layers_of(fresh) == [] and images_of(fresh) == []  # nothing half-registered
    r = ok(fresh, "pull", debian.ref, timeout=600)
    assert f"Status: Downloaded newer image for {debian.ref}" in r.stdout
    info = inspect(fresh, debian.ref)
    assert info["RootFS"]["Layers"] == list(debian.images[0].diff_ids)
    # the debris of the killed pull is gone: one overlay2 dir per layer, no temp files
    assert len(overlay_dirs(fresh)) == len(layers_of(fresh)) == 1
    assert os.listdir(Path(fresh.root) / "tmp") == []
    assert os.listdir(store_dir(fresh) / "layerdb" / "tmp") == []


def test_progress_on_a_terminal_is_redrawn_in_place(
    fresh: MD, registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded]
) -> None:
    s = seeded["busybox:two-layers"]
    cmd = " ".join(fresh.argv("pull", s.ref))
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=os.environ.copy())
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out
    top = s.images[0].layers[1].digest[7:19]
    assert re.search(r"\x1b\[\d+A\r\x1b\[2K" + top + r": Pull complete", out), out
    assert "Status: Downloaded newer image" in out
