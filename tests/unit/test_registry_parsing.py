"""The pure parts of the registry client: challenges, tokens, redirects, manifests, platforms,
error wording, endpoints, engine config and credentials files. No network."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from minidock.engine.distribution import DistributionMetadata, progress_bar
from minidock.errors import AuthenticationError, InvalidArgument, RegistryError
from minidock.image import distribution as reg
from minidock.image.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    CredentialStore,
    decode_auth,
    server_key,
)
from minidock.paths import Paths
from minidock.settings import EngineConfig, is_loopback, parse_engine_config

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


# --- WWW-Authenticate ---------------------------------------------------------------------------


def test_bearer_challenge_as_docker_hub_sends_it() -> None:
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/ubuntu:pull"')
    [c] = reg.parse_www_authenticate(header)
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/ubuntu:pull",
    }


def test_scheme_is_case_insensitive_and_values_may_be_tokens() -> None:
    [c] = reg.parse_www_authenticate("BEARER Realm=http://127.0.0.1:5001/token , service=reg")
    assert c.scheme == "bearer"
    assert c.params == {"realm": "http://127.0.0.1:5001/token", "service": "reg"}


def test_quoted_string_escapes_and_commas_inside_quotes() -> None:
    [c] = reg.parse_www_authenticate(
        r'Bearer realm="https://a/t",scope="repository:a:pull,push",error="say \"hi\""')
    assert c.params["scope"] == "repository:a:pull,push"
    assert c.params["error"] == 'say "hi"'


def test_several_challenges_in_one_header() -> None:
    cs = reg.parse_www_authenticate('Basic realm="reg", Bearer realm="https://t",service="s"')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params == {"realm": "reg"}
    assert cs[1].params == {"realm": "https://t", "service": "s"}
    assert reg.pick_challenge(cs) == cs[1]  # token auth preferred


def test_basic_and_token68_and_unknown_schemes() -> None:
    [c] = reg.parse_www_authenticate('basic realm="Registry Realm"')
    assert c.scheme == "basic" and c.params == {"realm": "Registry Realm"}
    [n] = reg.parse_www_authenticate("Negotiate abc123==")
    assert n.params == {"token68": "abc123=="}
    assert reg.pick_challenge([n]) is None
    assert reg.parse_www_authenticate("") == []


# --- tokens ---------------------------------------------------------------------------------------


def test_token_response_fields_and_lifetime() -> None:
    assert reg.parse_token_response(b'{"token":"t","expires_in":300}') == ("t", 300)
    assert reg.parse_token_response(b'{"access_token":"a"}') == ("a", 60)  # default 60 s
    assert reg.parse_token_response(b'{"token":"t","expires_in":5}') == ("t", 60)  # minimum
    assert reg.parse_token_response(b'{"token":"t","access_token":"t","expires_in":"x"}')[1] == 60
    for bad in (b"{}", b'{"token":""}', b"[]", b"not json", b'{"token":"a\\nb"}'):
        with pytest.raises(RegistryError):
            reg.parse_token_response(bad)


def test_token_cache_keeps_tokens_until_they_expire() -> None:
    now = [1000.0]
    cache = reg.TokenCache(clock=lambda: now[0])
    key = ("https://auth/token", "svc", "repository:a:pull", "")
    assert cache.get(key) is None
    cache.put(key, "tok", 60)
    now[0] += 59.9
    assert cache.get(key) == "tok"
    assert cache.get(("https://auth/token", "svc", "repository:b:pull", "")) is None  # per scope
    now[0] += 0.1
    assert cache.get(key) is None  # expired, and dropped
    cache.put(key, "tok2", 60)
    cache.drop(key)
    assert cache.get(key) is None


# --- redirects ------------------------------------------------------------------------------------


def test_redirect_to_another_host_drops_the_credentials() -> None:
    url, keep = reg.redirect_target("https://reg.example/v2/a/blobs/x",
                                    "https://s3.example/bucket/x?sig=1", "https://reg.example")
    assert url == "https://s3.example/bucket/x?sig=1" and keep is False


def test_redirect_on_the_same_origin_keeps_them() -> None:
    url, keep = reg.redirect_target("https://reg.example/v2/a/blobs/x", "/blobs/data/x",
                                    "https://reg.example:443")
    assert url == "https://reg.example/blobs/data/x" and keep is True
    # another port is another origin
    _, keep = reg.redirect_target("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5001/x",
                                  "http://127.0.0.1:5000")
    assert keep is False


def test_redirect_from_https_to_http_is_refused() -> None:
    with pytest.raises(RegistryError, match="https to http"):
        reg.redirect_target("https://reg.example/v2/a/blobs/x", "http://cdn.example/x",
                            "https://reg.example")
    with pytest.raises(RegistryError, match="not an http"):
        reg.redirect_target("https://reg.example/v2/", "file:///etc/passwd", "https://reg.example")
    # http -> https is an upgrade, fine
    assert reg.redirect_target("http://a/v2/", "https://a/x", "http://a")[0] == "https://a/x"


# --- manifests ------------------------------------------------------------------------------------


def manifest(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": reg.DOCKER_MANIFEST,
        "config": {"mediaType": reg.DOCKER_CONFIG, "digest": D1, "size": 100},
        "layers": [{"mediaType": reg.DOCKER_LAYER, "digest": D2, "size": 2000}],
    }
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def index(*entries: dict[str, Any], media_type: str = reg.OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "manifests": list(entries)}).encode()


def entry(digest: str, arch: str, variant: str | None = None, os_: str = "linux",
          media_type: str = reg.OCI_MANIFEST) -> dict[str, Any]:
    platform = {"os": os_, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {"mediaType": media_type, "digest": digest, "size": 500, "platform": platform}


def test_docker_and_oci_manifests_parse() -> None:
    m = reg.parse_manifest(manifest(), reg.DOCKER_MANIFEST)
    assert isinstance(m, reg.ImageManifest)
    assert m.config.digest == D1 and [layer.digest for layer in m.layers] == [D2]
    oci = manifest(mediaType=reg.OCI_MANIFEST,
                   config={"mediaType": reg.OCI_CONFIG, "digest": D1, "size": 1},
                   layers=[{"mediaType": reg.OCI_LAYER_ZSTD, "digest": D2, "size": 1},
                           {"mediaType": reg.OCI_LAYER, "digest": D3, "size": 1}])
    m = reg.parse_manifest(oci, "application/vnd.oci.image.manifest.v1+json; charset=utf-8")
    assert isinstance(m, reg.ImageManifest) and len(m.layers) == 2
    # no mediaType in the body: the Content-Type decides, then the shape
    assert isinstance(reg.parse_manifest(manifest(mediaType=None), None), reg.ImageManifest)
    idx = reg.parse_manifest(index(entry(D1, "amd64")), reg.OCI_INDEX)
    assert isinstance(idx, reg.ImageIndex) and idx.manifests[0].platform == reg.Platform(
        "linux", "amd64")


@pytest.mark.parametrize(("data", "content_type", "message"), [
    (json.dumps({"schemaVersion": 2, "mediaType": reg.OCI_INDEX, "manifests": [],
                 "layers": []}).encode(), None, "both manifests and layers"),
    (manifest(mediaType="application/vnd.example.thing+json"), None,
     "unsupported manifest media type"),
    (manifest(schemaVersion=1), None, "schema 1"),
    (b'{"schemaVersion":1,"name":"x"}', "application/vnd.docker.distribution.manifest.v1+prettyjws",
     "schema 1"),
    (manifest(), reg.OCI_MANIFEST, "does not match the Content-Type"),
    (manifest(layers=[{"mediaType": "application/x-foo", "digest": D2, "size": 1}]), None,
     "unsupported layer media type"),
    (manifest(config={"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": D1,
                      "size": 1}), None, "not a container image"),
    (manifest(layers=[{"mediaType": reg.DOCKER_LAYER, "digest": "sha512:" + "a" * 128,
                       "size": 1}]), None, "unsupported digest"),
    (manifest(layers=[{"mediaType": reg.DOCKER_LAYER, "digest": "sha256:../../etc",
                       "size": 1}]), None, "invalid digest"),
    (manifest(layers=[{"mediaType": reg.DOCKER_LAYER, "digest": D2, "size": -1}]), None,
     "invalid size"),
    (manifest(layers=[{"mediaType": reg.DOCKER_LAYER, "digest": D2, "size": True}]), None,
     "invalid size"),
    (manifest(layers=[{"mediaType": reg.DOCKER_LAYER, "digest": D2, "size": 1}] * 126), None,
     "the limit is 125"),
    (b"[]", None, "not a JSON object"),
    (b"{nope", None, "invalid manifest"),
])
def test_bad_manifests_are_refused(data: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        reg.parse_manifest(data, content_type)


def test_size_and_depth_limits() -> None:
    big = manifest(annotations={"x": "y" * reg.MAX_MANIFEST_SIZE})
    with pytest.raises(RegistryError, match="too large"):
        reg.parse_manifest(big)
    deep = b'{"schemaVersion":2,"a":' + b"[" * 100 + b"]" * 100 + b"}"
    with pytest.raises(RegistryError, match="nested deeper"):
        reg.parse_manifest(deep)
    # brackets inside strings do not count
    reg.check_json_depth(b'{"a":"' + b"[" * 1000 + b'"}')


# --- platforms ------------------------------------------------------------------------------------


def test_parse_platform() -> None:
    assert reg.parse_platform("linux/amd64") == reg.Platform("linux", "amd64")
    assert reg.parse_platform("linux/arm64") == reg.Platform("linux", "arm64", "v8")
    assert reg.parse_platform("linux/aarch64") == reg.Platform("linux", "arm64", "v8")
    assert reg.parse_platform("linux/arm/7") == reg.Platform("linux", "arm", "v7")
    assert reg.parse_platform("linux/arm") == reg.Platform("linux", "arm", "v7")
    assert str(reg.parse_platform("Linux/ARM64/v8")) == "linux/arm64/v8"
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d"):
        with pytest.raises(InvalidArgument):
            reg.parse_platform(bad)


def test_platform_selection_from_an_index() -> None:
    idx = reg.parse_manifest(index(
        entry(D1, "amd64"),
        entry(D2, "arm64", "v8"),
        entry(D3, "unknown", os_="unknown"),  # a buildkit attestation manifest
    ))
    assert isinstance(idx, reg.ImageIndex)
    assert reg.select_manifest(idx, reg.Platform("linux", "amd64")).digest == D1
    # arm64 without a variant is v8, on either side
    assert reg.select_manifest(idx, reg.Platform("linux", "arm64")).digest == D2
    idx2 = reg.parse_manifest(index(entry(D1, "amd64"), entry(D2, "arm64")))
    assert isinstance(idx2, reg.ImageIndex)
    assert reg.select_manifest(idx2, reg.parse_platform("linux/arm64/v8")).digest == D2
    with pytest.raises(RegistryError, match="no matching manifest for linux/s390x"):
        reg.select_manifest(idx, reg.Platform("linux", "s390x"))
    with pytest.raises(RegistryError, match="no matching manifest for windows/amd64"):
        reg.select_manifest(idx, reg.Platform("windows", "amd64"))


def test_arm_v7_falls_back_to_v6_and_the_first_exact_match_wins() -> None:
    idx = reg.parse_manifest(index(entry(D1, "arm", "v6"), entry(D2, "arm", "v7"),
                                   entry(D3, "arm", "v7")))
    assert isinstance(idx, reg.ImageIndex)
    assert reg.select_manifest(idx, reg.parse_platform("linux/arm/v7")).digest == D2
    assert reg.select_manifest(idx, reg.parse_platform("linux/arm/v6")).digest == D1
    only_v6 = reg.parse_manifest(index(entry(D1, "arm", "v6")))
    assert isinstance(only_v6, reg.ImageIndex)
    assert reg.select_manifest(only_v6, reg.parse_platform("linux/arm/v7")).digest == D1
    with pytest.raises(RegistryError):
        reg.select_manifest(idx, reg.parse_platform("linux/arm/v5"))


# --- errors ---------------------------------------------------------------------------------------


def test_status_explanations_are_one_line() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    e = reg.explain_status(404, body, "manifest", "127.0.0.1:5000/library/ubunt:latest")
    assert str(e) == "manifest unknown: 127.0.0.1:5000/library/ubunt:latest"
    e = reg.explain_status(401, b"", "manifest", "")
    assert isinstance(e, AuthenticationError)
    assert str(e) == "unauthorized: authentication required"
    e = reg.explain_status(403, b"", "manifest", "r:t")
    assert str(e).startswith("denied: requested access to the resource is denied")
    e = reg.explain_status(429, json.dumps({"errors": [{
        "code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit.\n\x1b[31m"}
    ]}).encode(), "manifest", "x", {"RateLimit-Limit": "100;w=21600", "Retry-After": "60"})
    assert str(e) == ("toomanyrequests: You have reached your pull rate limit. [31m (limit 100); "
                      "retry after 60 s")
    assert "\n" not in str(reg.explain_status(500, b"x" * 10000, "blob", "y"))


# --- endpoints and engine config ----------------------------------------------------------------


def test_endpoints() -> None:
    cfg = EngineConfig(registry_mirrors=("https://mirror.example", "http://127.0.0.1:5000"),
                       insecure_registries=("10.0.0.0/8", "myreg:5000"), certs_dir="/nonexistent")
    hub = reg.endpoints_for("docker.io", cfg)
    assert [e.base for e in hub] == ["https://mirror.example", "http://127.0.0.1:5000",
                                     "https://registry-1.docker.io"]
    assert hub[0].mirror and not hub[-1].mirror
    assert [e.base for e in reg.endpoints_for("docker.io", cfg, push=True)] == [
        "https://registry-1.docker.io"]
    local = reg.endpoints_for("127.0.0.1:5000", cfg)
    assert [(e.base, e.verify) for e in local] == [("https://127.0.0.1:5000", False),
                                                  ("http://127.0.0.1:5000", True)]
    assert [e.base for e in reg.endpoints_for("10.1.2.3:5000", cfg)][-1] == "http://10.1.2.3:5000"
    assert [e.base for e in reg.endpoints_for("myreg:5000", cfg)][-1] == "http://myreg:5000"
    assert [e.base for e in reg.endpoints_for("quay.io", cfg)] == ["https://quay.io"]


def test_ca_in_certs_d_turns_verification_on(tmp_path: Path) -> None:
    (tmp_path / "127.0.0.1:5000").mkdir()
    (tmp_path / "127.0.0.1:5000" / "ca.crt").write_text("x")
    cfg = EngineConfig(certs_dir=str(tmp_path))
    assert cfg.ca_files("127.0.0.1:5000") == [str(tmp_path / "127.0.0.1:5000" / "ca.crt")]
    assert reg.endpoints_for("127.0.0.1:5000", cfg)[0].verify is True
    assert cfg.ca_files("../etc") == []


def test_loopback_and_engine_config() -> None:
    assert is_loopback("localhost:5000") and is_loopback("127.9.9.9") and is_loopback("[::1]:5")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("example.com")
    cfg = parse_engine_config(b'{"registry-mirrors":["https://m.example/"],'
                              b'"insecure-registries":["http://r:5000"],"debug":true}')
    assert cfg.registry_mirrors == ("https://m.example",)
    assert cfg.insecure_registries == ("r:5000",)
    assert cfg.is_insecure("r:5000") and not cfg.is_insecure("r:5001")
    assert parse_engine_config(b"").registry_mirrors == ()
    for bad in (b'{"registry-mirrors":"x"}', b'{"registry-mirrors":["ftp://x"]}', b"[1]"):
        with pytest.raises(InvalidArgument):
            parse_engine_config(bad)


# --- credentials ----------------------------------------------------------------------------------


def test_server_keys_as_docker_writes_them() -> None:
    assert server_key("docker.io") == DOCKER_HUB_KEY
    assert server_key("https://index.docker.io/v1/") == DOCKER_HUB_KEY
    assert server_key("registry-1.docker.io") == DOCKER_HUB_KEY
    assert server_key("https://localhost:5000/v2/") == "localhost:5000"
    assert decode_auth(base64.b64encode(b"u:p:with:colons").decode()) == Credentials(
        "u", "p:with:colons")
    assert "secret" not in repr(Credentials("u", "secret"))


def test_store_writes_0600_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"https://localhost:5000/v1/": {"auth": "eDp5"}},
                                "psFormat": "table"}))
    store = CredentialStore(str(path), fallback="")
    assert store.get("localhost:5000") == Credentials("x", "y")  # another spelling of the key
    assert store.store("localhost:5000", Credentials("alice", "s3cret")) == "localhost:5000"
    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "table"
    assert doc["auths"] == {"localhost:5000": {"auth": base64.b64encode(b"alice:s3cret").decode()}}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store.get("http://localhost:5000") == Credentials("alice", "s3cret")
    assert store.erase("localhost:5000") is True
    assert store.erase("localhost:5000") is False
    assert store.get("localhost:5000") is None


def test_dockers_file_is_the_fallback(tmp_path: Path) -> None:
    docker = tmp_path / "docker.json"
    docker.write_text(json.dumps({"auths": {DOCKER_HUB_KEY: {"auth": "ZG9jazpodWI="}}}))
    store = CredentialStore(str(tmp_path / "ours.json"), fallback=str(docker))
    assert store.get("docker.io") == Credentials("dock", "hub")
    store.store("docker.io", Credentials("mine", "pw"))
    assert store.get("docker.io") == Credentials("mine", "pw")  # ours first
    assert json.loads(docker.read_text())["auths"][DOCKER_HUB_KEY]["auth"] == "ZG9jazpodWI="


# --- output and metadata --------------------------------------------------------------------------


def test_progress_bar_like_docker() -> None:
    assert progress_bar(0, 2_800_000) == "[>" + " " * 50 + "]       0B/2.8MB"
    half = progress_bar(1_400_000, 2_800_000)
    assert half == "[" + "=" * 25 + ">" + " " * 25 + "]    1.4MB/2.8MB"
    assert progress_bar(32_768, 2_800_000).endswith("]  32.77kB/2.8MB")
    assert progress_bar(2_800_000, 2_800_000) == "[" + "=" * 50 + ">]    2.8MB/2.8MB"


def test_distribution_metadata_files(tmp_path: Path) -> None:
    meta = DistributionMetadata(Paths(root=str(tmp_path), run_root=str(tmp_path / "run")))
    meta.add(D1, D2, "docker.io/library/busybox")
    meta.add(D1, D2, "docker.io/library/busybox")  # no duplicate
    meta.add(D1, D3, "127.0.0.1:5000/busybox")
    base = tmp_path / "image" / "overlay2" / "distribution"
    stored = json.loads((base / "v2metadata-by-diffid" / "sha256" / D1[7:]).read_text())
    assert stored == [
        {"Digest": D2, "SourceRepository": "docker.io/library/busybox", "HMAC": ""},
        {"Digest": D3, "SourceRepository": "127.0.0.1:5000/busybox", "HMAC": ""},
    ]
    assert (base / "diffid-by-digest" / "sha256" / D2[7:]).read_text() == D1
    assert meta.diff_id(D3) == D1 and meta.diff_id(D1) is None
    assert meta.metadata(D2) == []
