"""Reference parsing and normalization, checked against Docker's behaviour."""

from __future__ import annotations

import pytest

from minidock.errors import InvalidArgument
from minidock.image.reference import (
    familiar,
    is_id_prefix,
    parse_reference,
    parse_tagged,
    short_id,
    validate_digest,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("value", "full", "fam"),
    [
        ("ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"),
        ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04"),
        ("library/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"),
        ("docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"),
        ("index.docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"),
        ("docker.io/library/ubuntu:x", "docker.io/library/ubuntu:x", "ubuntu:x"),
        ("foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
        ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest"),
        ("localhost:5000/foo:bar", "localhost:5000/foo:bar", "localhost:5000/foo:bar"),
        ("127.0.0.1:5000/a/b/c:1", "127.0.0.1:5000/a/b/c:1", "127.0.0.1:5000/a/b/c:1"),
        ("[::1]:5000/foo", "[::1]:5000/foo:latest", "[::1]:5000/foo:latest"),
        ("ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3"),
        ("Example.com/foo", "Example.com/foo:latest", "Example.com/foo:latest"),
        ("a_b__c-d---e.f:T_a.g-1", "docker.io/library/a_b__c-d---e.f:T_a.g-1",
         "a_b__c-d---e.f:T_a.g-1"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}",
         f"busybox:1@{DIGEST}"),
    ],
)
def test_normalize(value: str, full: str, fam: str) -> None:
    ref = parse_reference(value).with_default_tag()
    assert str(ref) == full
    assert ref.familiar() == fam
    assert familiar(value) == fam


def test_no_default_tag_until_asked() -> None:
    ref = parse_reference("ubuntu")
    assert ref.tag is None and ref.digest is None
    assert ref.familiar() == "ubuntu"
    assert parse_reference(f"ubuntu@{DIGEST}").with_default_tag().tag is None


def test_parts() -> None:
    ref = parse_reference("localhost:5000/team/app:1.0")
    assert (ref.domain, ref.path, ref.tag) == ("localhost:5000", "team/app", "1.0")
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    assert ref.registry == "localhost:5000"
    assert parse_reference("ubuntu").registry == "registry-1.docker.io"


def test_uppercase_repository_message_like_docker() -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_reference("Ubuntu")
    assert str(e.value) == ("invalid reference format: repository name (library/Ubuntu) "
                            "must be lowercase")
    with pytest.raises(InvalidArgument, match=r"repository name \(Foo\) must be lowercase"):
        parse_reference("localhost:5000/Foo")


@pytest.mark.parametrize(
    "value",
    ["", "foo:", ":tag", "foo:bad tag", "foo/", "/foo", "foo//bar", "-foo", "foo-", "foo..bar",
     "foo:a:b", "foo@sha256:abc", "foo@md5:" + "a" * 32, "foo:" + "x" * 129, "a" * 256,
     "foo bar", "foo@" + DIGEST.upper(), "fo\u00f6", "../etc", "foo/../bar"],
)
def test_invalid_references_name_the_value(value: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_reference(value)
    msg = str(e.value)
    assert msg.startswith(("invalid reference format", "invalid repository name"))
    if value and value.lower() == value:
        assert repr(value) in msg or value in msg


def test_64_hex_is_not_a_name() -> None:
    with pytest.raises(InvalidArgument, match="cannot specify 64-byte hexadecimal strings"):
        parse_reference("a" * 64)


def test_tag_with_128_chars_ok() -> None:
    assert parse_reference("foo:" + "x" * 128).tag == "x" * 128


def test_parse_tagged_refuses_digests_and_sha256_name() -> None:
    assert parse_tagged("foo").familiar() == "foo:latest"
    with pytest.raises(InvalidArgument, match="digest"):
        parse_tagged(f"foo@{DIGEST}")
    with pytest.raises(InvalidArgument, match="ambiguous"):
        parse_tagged("sha256:abc")


def test_validate_digest() -> None:
    assert validate_digest(DIGEST) == DIGEST
    for bad in ["sha256:", DIGEST[:-1], DIGEST + "0", DIGEST.upper(), "sha512:" + "a" * 128,
                DIGEST[7:], f"{DIGEST}/..", "sha256:" + "g" * 64]:
        with pytest.raises(InvalidArgument, match="invalid digest"):
            validate_digest(bad)


def test_short_id_and_prefix() -> None:
    assert short_id(DIGEST) == "0123456789ab"
    assert short_id("0123456789abcdef") == "0123456789ab"
    assert is_id_prefix("0123") and is_id_prefix("sha256:0123")
    assert not is_id_prefix("xyz") and not is_id_prefix("") and not is_id_prefix("sha256:")
