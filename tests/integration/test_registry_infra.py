"""Self-tests of the registry fixtures (tests/integration/registry.py): each mode starts and
authenticates as a registry should, the token issuer grants and denies, the registry really
verifies the tokens (signature, issuer, audience, expiry), skopeo seeds every image flavour the
pull tests need, the bad-input helpers produce what they promise, and nothing is left behind."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import registry as reglib

pytestmark = pytest.mark.registry
MakeRegistry = Callable[..., reglib.RegistryServer]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(
    server: reglib.RegistryServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    return reglib.http_request("GET", server.url + path, headers=headers, ca_path=server.ca_path)


def fetch_token(
    issuer: reglib.TokenIssuer, scope: str, creds: tuple[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    query = f"service={issuer.service}&scope={scope}"
    headers = basic(*creds) if creds else {}
    status, _, body = reglib.http_request("GET", f"{issuer.realm}?{query}", headers=headers)
    return status, json.loads(body)


# -- each mode starts and authenticates --------------------------------------------------------


def test_open_registry_answers_v2(registry: reglib.RegistryServer) -> None:
    status, headers, _ = get(registry, "/v2/")
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.host == f"127.0.0.1:{registry.port}"
    assert registry.url == f"http://{registry.host}"
    assert registry.ca_path is None and registry.credentials is None


def test_tls_registry_needs_the_ca_and_basic_auth(registry_tls: reglib.RegistryServer) -> None:
    assert registry_tls.url.startswith("https://127.0.0.1:")
    assert registry_tls.ca_path is not None and registry_tls.ca_path.is_file()
    assert registry_tls.username and registry_tls.password

    status, headers, _ = get(registry_tls, "/v2/")
    assert status == 401
    scheme, params = reglib.parse_challenge(headers["WWW-Authenticate"])
    assert scheme == "basic" and params["realm"]

    assert get(registry_tls, "/v2/", basic(registry_tls.username, registry_tls.password))[0] == 200
    assert get(registry_tls, "/v2/", basic(registry_tls.username, "wrong"))[0] == 401

    # the certificate chains only to the test CA, and names both 127.0.0.1 and localhost
    with pytest.raises(ssl.SSLCertVerificationError):
        reglib.http_request("GET", registry_tls.url + "/v2/", ca_path=None)
    localhost = f"https://localhost:{registry_tls.port}/v2/"
    assert reglib.http_request("GET", localhost, ca_path=registry_tls.ca_path)[0] == 401


def test_token_registry_challenges_with_the_issuer(registry_token: reglib.RegistryServer) -> None:
    issuer = registry_token.issuer
    assert issuer is not None and issuer.running
    status, headers, _ = get(registry_token, "/v2/")
    assert status == 401
    scheme, params = reglib.parse_challenge(headers["WWW-Authenticate"])
    assert scheme == "bearer"
    assert params["realm"] == issuer.realm and params["service"] == issuer.service

    status, headers, _ = get(registry_token, "/v2/private/x/tags/list")
    assert status == 401
    _, params = reglib.parse_challenge(headers["WWW-Authenticate"])
    assert params["scope"] == "repository:private/x:pull"


def test_token_issuer_grants_and_denies(registry_token: reglib.RegistryServer) -> None:
    issuer = registry_token.issuer
    assert issuer is not None and registry_token.credentials is not None
    issuer.clear()

    status, body = fetch_token(issuer, "repository:private/x:pull,push", registry_token.credentials)
    assert status == 200 and body["token"] == body["access_token"]
    assert body["expires_in"] == issuer.expires_in

    # wrong password: refused outright
    user = registry_token.credentials[0]
    status, _ = fetch_token(issuer, "repository:private/x:pull", (user, "wrong"))
    assert status == 401
    # anonymous: a token, but with pull only under public/
    assert fetch_token(issuer, "repository:public/x:pull,push")[0] == 200
    assert fetch_token(issuer, "repository:private/x:pull")[0] == 200
    # read-only user: pull only
    ro = (registry_token.readonly_username, registry_token.readonly_password)
    assert ro[0] and ro[1]
    fetch_token(issuer, "repository:private/x:pull,push", (ro[0], ro[1]))

    log = issuer.requests
    assert [(r.account, r.authenticated, r.status) for r in log] == [
        ("alice", True, 200),
        ("alice", False, 401),
        (None, False, 200),
        (None, False, 200),
        ("bob", True, 200),
    ]
    assert log[0].granted == (
        {"type": "repository", "name": "private/x", "actions": ["pull", "push"]},
    )
    assert log[2].anonymous and log[2].granted == (
        {"type": "repository", "name": "public/x", "actions": ["pull"]},
    )
    assert log[3].granted == ()
    assert log[4].granted == ({"type": "repository", "name": "private/x", "actions": ["pull"]},)
    assert all(r.service == issuer.service and r.path == "/token" for r in log)


def test_registry_enforces_the_token_scope(registry_token: reglib.RegistryServer) -> None:
    issuer = registry_token.issuer
    assert issuer is not None and registry_token.credentials is not None
    reglib.push_image_http(
        registry_token, "public/scoped:1", reglib.ImageSpec([reglib.make_layer({"a": b"a"})])
    )
    path = "/v2/public/scoped/manifests/1"
    accept = {"Accept": reglib.MANIFEST_ACCEPT}

    _, anon = fetch_token(issuer, "repository:public/scoped:pull")
    assert get(registry_token, path, {**accept, **bearer(str(anon["token"]))})[0] == 200
    # a token without access to this repository: 401 insufficient_scope
    _, other = fetch_token(issuer, "repository:private/other:pull", registry_token.credentials)
    status, _, body = get(registry_token, path, {**accept, **bearer(str(other["token"]))})
    assert status == 401 and b"UNAUTHORIZED" in body
    # an anonymous push is not granted
    client = reglib.RegistryHTTP(registry_token, anonymous=True)
    status, _, _ = client.request("POST", "/v2/public/scoped/blobs/uploads/")
    assert status == 401


def test_registry_verifies_token_signature_issuer_audience(
    registry_token: reglib.RegistryServer, tmp_path: Path
) -> None:
    issuer = registry_token.issuer
    assert issuer is not None
    access = [{"type": "registry", "name": "catalog", "actions": ["*"]}]

    def status_with(token: str) -> int:
        return get(registry_token, "/v2/_catalog", bearer(token))[0]

    assert status_with(issuer.make_token("alice", access)) == 200
    with issuer.settings(issuer="someone-else"):
        assert status_with(issuer.make_token("alice", access)) == 401
    with issuer.settings(service="another-registry"):
        assert status_with(issuer.make_token("alice", access)) == 401
    # a well-formed token from a key whose cert does not chain to the rootcertbundle
    rogue = reglib.TokenIssuer(
        tmp_path / "rogue",
        reglib.TestCA(tmp_path / "rogue-ca"),
        service=issuer.service,
        issuer=issuer.issuer,
    )
    assert status_with(rogue.make_token("alice", access)) == 401
    # a tampered signature
    token = issuer.make_token("alice", access)
    head, claims, sig = token.split(".")
    assert status_with(f"{head}.{claims}.{sig[:-4]}AAAA") == 401


def test_token_expiry_is_enforced_by_the_registry(
    make_registry: MakeRegistry,
) -> None:
    server = make_registry("token", expires_in=3)
    issuer = server.issuer
    assert issuer is not None
    access = [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    token = issuer.make_token("alice", access)
    assert get(server, "/v2/_catalog", bearer(token))[0] == 200
    time.sleep(3.5)
    assert get(server, "/v2/_catalog", bearer(token))[0] == 401
    # a client re-authenticating gets a fresh token that works
    assert get(server, "/v2/_catalog", bearer(issuer.make_token("alice", access)))[0] == 200


def test_token_issuer_oauth_post(registry_token: reglib.RegistryServer) -> None:
    issuer = registry_token.issuer
    assert issuer is not None and registry_token.credentials is not None
    user, password = registry_token.credentials
    form = (
        f"grant_type=password&service={issuer.service}&client_id=minidock"
        f"&username={user}&password={password}&scope=repository:private/x:pull"
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = reglib.http_request("POST", issuer.realm, body=form, headers=headers)
    assert status == 200
    data = json.loads(body)
    assert data["refresh_token"] and data["access_token"]
    refresh = (
        f"grant_type=refresh_token&service={issuer.service}&client_id=minidock"
        f"&refresh_token={data['refresh_token']}&scope=repository:private/x:pull"
    ).encode()
    status, _, _ = reglib.http_request("POST", issuer.realm, body=refresh, headers=headers)
    assert status == 200
    assert issuer.requests[-1].grant_type == "refresh_token"
    assert issuer.requests[-1].account == user


# -- seeding with skopeo, inspecting with skopeo --------------------------------------------------


def test_seeded_images_are_what_skopeo_sees(
    registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded], test_images: Path
) -> None:
    busybox_diff_id = reglib.sha256_digest((test_images / "busybox.tar").read_bytes())
    expect = {
        "busybox:latest": (reglib.DOCKER_MANIFEST, [reglib.DOCKER_LAYER_GZIP]),
        "busybox:oci": (reglib.OCI_MANIFEST, [reglib.OCI_LAYER + "+gzip"]),
        "busybox:zstd": (reglib.OCI_MANIFEST, [reglib.OCI_LAYER + "+zstd"]),
        "busybox:plain": (reglib.OCI_MANIFEST, [reglib.OCI_LAYER]),
        "busybox:two-layers": (reglib.DOCKER_MANIFEST, [reglib.DOCKER_LAYER_GZIP] * 2),
    }
    for name, (media_type, layer_types) in expect.items():
        s = seeded[name]
        raw = reglib.inspect_remote(registry, name, raw=True)
        assert raw["mediaType"] == media_type == s.media_type, name
        assert [layer["mediaType"] for layer in raw["layers"]] == layer_types, name
        assert reglib.remote_digest(registry, name) == s.digest
        config = reglib.inspect_remote(registry, s.digest_ref, config=True)
        assert config["rootfs"]["diff_ids"][0] == busybox_diff_id, name
        assert config["architecture"] == "amd64" and config["config"]["Cmd"] == ["sh"]
        # the registry holds the layer bytes that hash to the digest and decompress to the tar
        status, blob = reglib.RegistryHTTP(registry).get_blob(s.repo, raw["layers"][0]["digest"])
        assert status == 200 and reglib.sha256_digest(blob) == raw["layers"][0]["digest"]
    two = reglib.inspect_remote(registry, "busybox:two-layers", config=True)
    assert len(two["rootfs"]["diff_ids"]) == 2


def test_two_layer_image_round_trips_through_skopeo(
    registry: reglib.RegistryServer, seeded: dict[str, reglib.Seeded], tmp_path: Path
) -> None:
    layout = reglib.copy_to_oci_dir(registry, "busybox:two-layers", tmp_path / "oci")
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_bytes())
    top = manifest["layers"][1]["digest"].split(":", 1)[1]
    layer = gzip.decompress((layout / "blobs" / "sha256" / top).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.extractfile("etc/seeded")
        assert member is not None and member.read() == reglib.SEEDED_FILE


@pytest.mark.parametrize("name", ["busybox:multi", "busybox:multi-oci"])
def test_multi_platform_index_is_seeded(
    registry: reglib.RegistryServer,
    seeded: dict[str, reglib.Seeded],
    busybox_arm64: Path,
    name: str,
) -> None:
    raw = reglib.inspect_remote(registry, name, raw=True)
    want_type = reglib.DOCKER_LIST if name == "busybox:multi" else reglib.OCI_INDEX
    assert raw["mediaType"] == want_type == seeded[name].media_type
    platforms = [m["platform"] for m in raw["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    # each platform's image is there, with its own rootfs
    arm = raw["manifests"][1]["digest"]
    config = reglib.inspect_remote(registry, f"{seeded[name].repo}@{arm}", config=True)
    assert config["architecture"] == "arm64"
    arm_diff_id = hashlib.sha256(busybox_arm64.read_bytes()).hexdigest()
    assert config["rootfs"]["diff_ids"] == [f"sha256:{arm_diff_id}"]


def test_seed_into_tls_and_token_registries(
    registry_tls: reglib.RegistryServer,
    registry_token: reglib.RegistryServer,
    test_images: Path,
) -> None:
    spec = reglib.busybox_spec(test_images)
    s = reglib.seed(registry_tls, "library/busybox:tls", spec)
    assert reglib.inspect_remote(registry_tls, "library/busybox:tls")["Digest"] == s.digest

    issuer = registry_token.issuer
    assert issuer is not None
    issuer.clear()
    private = reglib.seed(registry_token, "private/busybox:1", spec, format="oci")
    public = reglib.seed(registry_token, "public/busybox:1", spec)
    assert all(r.authenticated for r in issuer.requests)
    assert any("push" in r.scopes[0] for r in issuer.requests if r.scopes)

    issuer.clear()
    assert (
        reglib.inspect_remote(registry_token, "public/busybox:1", anonymous=True)["Digest"]
        == public.digest
    )
    assert issuer.requests and all(r.anonymous for r in issuer.requests)
    with pytest.raises(reglib.RegistryError, match=r"unauthorized|denied|401"):
        reglib.inspect_remote(registry_token, "private/busybox:1", anonymous=True)
    assert reglib.remote_digest(registry_token, "private/busybox:1") == private.digest


# -- bad input -------------------------------------------------------------------------------------


def test_registry_refuses_bad_uploads(registry: reglib.RegistryServer) -> None:
    client = reglib.RegistryHTTP(registry)
    status, _ = client.push_blob("bad/upload", b"hello", digest=reglib.sha256_digest(b"x"),
                                 check=False)  # fmt: skip
    assert status == 400
    # what distribution 2.8 refuses to take (and the StaticRegistry therefore serves)
    big = json.dumps({"schemaVersion": 2, "mediaType": reglib.OCI_MANIFEST,
                      "annotations": {"x": "a" * (5 << 20)}}).encode()  # fmt: skip
    assert (
        client.push_manifest("bad/upload", "big", big, reglib.OCI_MANIFEST, check=False)[0] == 400
    )
    unknown = b'{"schemaVersion":2,"mediaType":"application/x-unknown"}'
    assert client.push_manifest("bad/upload", "u", unknown, "application/x-unknown",
                                check=False)[0] == 400  # fmt: skip


def test_on_disk_corruption_is_served(
    make_registry: Callable[..., reglib.RegistryServer], test_images: Path
) -> None:
    # a registry of its own: blobs are shared by digest across repositories, so corrupting
    # the busybox layer in the session registry would break every later pull of busybox
    registry = make_registry("open")
    s = reglib.seed(registry, "bad/corrupt:1", reglib.busybox_spec(test_images))
    client = reglib.RegistryHTTP(registry)
    layer = s.manifest["layers"][0]
    reglib.corrupt_blob_on_disk(registry, layer["digest"], truncate=1000)
    status, data = client.get_blob("bad/corrupt", layer["digest"])
    assert status == 200 and len(data) == 1000 < layer["size"]

    wrong = reglib.put_blob_on_disk(
        registry, "bad/corrupt", b"not the bytes", digest=reglib.sha256_digest(b"other")
    )
    status, data = client.get_blob("bad/corrupt", wrong)
    assert status == 200 and data == b"not the bytes"

    # a manifest with both `layers` and `manifests`: PUT refused for OCI, served once planted
    both = dict(s.manifest, mediaType=reglib.OCI_MANIFEST)
    both["manifests"] = [{"mediaType": reglib.OCI_MANIFEST, "digest": s.digest, "size": 1}]
    body = json.dumps(both).encode()
    assert client.push_manifest("bad/corrupt", "both", body, reglib.OCI_MANIFEST,
                                check=False)[0] == 400  # fmt: skip
    digest = reglib.put_manifest_on_disk(registry, "bad/corrupt", "both", body)
    status, ctype, served = client.get_manifest("bad/corrupt", "both")
    assert status == 200 and served == body and reglib.sha256_digest(served) == digest
    assert ctype == reglib.OCI_MANIFEST


def test_static_registry_serves_what_distribution_will_not(
    static_registry: reglib.StaticRegistry,
) -> None:
    big = b'{"schemaVersion":2,"x":"' + b"a" * (5 << 20) + b'"}'
    static_registry.manifest("bad/big", "latest", big, reglib.OCI_MANIFEST)
    status, headers, body = reglib.http_request(
        "GET", static_registry.url + "/v2/bad/big/manifests/latest"
    )
    assert status == 200 and body == big
    assert headers["Docker-Content-Digest"] == reglib.sha256_digest(big)

    data = os.urandom(100_000)
    digest = static_registry.blob("bad/cut", data, truncate_at=1000)
    conn = http.client.HTTPConnection(static_registry.host, timeout=10)
    conn.request("GET", f"/v2/bad/cut/blobs/{digest}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Length"] == str(len(data))
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()
    assert [r[:2] for r in static_registry.requests] == [
        ("GET", "/v2/bad/big/manifests/latest"),
        ("GET", f"/v2/bad/cut/blobs/{digest}"),
    ]


# -- client config, lifecycle, leftovers ---------------------------------------------------------


def test_client_config_holds_the_ca(
    client_config: Path, registry_tls: reglib.RegistryServer
) -> None:
    assert os.environ["MINIDOCK_CONFIG_DIR"] == str(client_config)
    ca = client_config / "certs.d" / registry_tls.host / "ca.crt"
    assert json.loads((client_config / "config.json").read_text()) == {}
    assert reglib.http_request("GET", registry_tls.url + "/v2/", ca_path=ca)[0] == 401


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("mode", ["open", "tls", "token"])
def test_nothing_is_left_behind(mode: reglib.Mode) -> None:
    server = reglib.RegistryServer(mode)
    with server:
        pid, port, workdir = server.pid, server.port, server.dir
        assert pid is not None and Path(f"/proc/{pid}").exists() and _port_open(port)
        issuer_port = server.issuer.port if server.issuer else None
    assert not server.running and server.pid is None
    assert not Path(f"/proc/{pid}").exists()  # reaped, not even a zombie
    assert not workdir.exists()
    assert not _port_open(port)
    if issuer_port is not None:
        assert server.issuer is not None and not server.issuer.running
        assert not _port_open(issuer_port)
    server.stop()  # twice is harmless


def test_kill_and_restart_keeps_port_and_storage(
    make_registry: MakeRegistry, test_images: Path
) -> None:
    server = make_registry("open")
    s = reglib.seed(server, "survivor:1", reglib.busybox_spec(test_images))
    port, pid = server.port, server.pid
    server.kill()
    assert not server.running and not Path(f"/proc/{pid}").exists()
    with pytest.raises(OSError):
        reglib.http_request("GET", server.url + "/v2/", timeout=2)
    server.start()
    assert server.port == port and server.pid != pid
    assert reglib.remote_digest(server, "survivor:1") == s.digest


def test_a_failed_start_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # a "registry" that exits at once: start() must fail, say why, and clean up
    monkeypatch.setenv(reglib.REGISTRY_BIN_ENV, "/bin/false")
    server = reglib.RegistryServer("open")
    with pytest.raises(reglib.RegistryError, match="did not start"):
        server.start()
    assert not server.dir.exists() and server.proc is None
