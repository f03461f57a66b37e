"""ChainID, image id and the store's timestamp format (pure functions)."""

from __future__ import annotations

import hashlib

import pytest

from minidock.errors import InvalidArgument
from minidock.image.store import chain_id_of, chain_ids, image_id_of, rfc3339nano

D0 = "sha256:" + "a" * 64
D1 = "sha256:" + "b" * 64
D2 = "sha256:" + "c" * 64


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_base_layer_chain_id_is_its_diff_id() -> None:
    assert chain_id_of(None, D0) == D0


def test_chain_id_hashes_parent_space_diff_with_prefixes() -> None:
    assert chain_id_of(D0, D1) == _sha(f"{D0} {D1}")


def test_chain_ids_of_a_stack() -> None:
    c1 = _sha(f"{D0} {D1}")
    c2 = _sha(f"{c1} {D2}")
    assert chain_ids([D0, D1, D2]) == [D0, c1, c2]
    assert chain_ids([]) == []


def test_chain_id_known_vector() -> None:
    # Independent of our implementation: the sha256 of the literal string.
    expected = "sha256:" + hashlib.sha256(
        b"sha256:" + b"a" * 64 + b" sha256:" + b"b" * 64
    ).hexdigest()
    assert chain_ids([D0, D1])[-1] == expected


def test_chain_order_matters() -> None:
    assert chain_ids([D0, D1])[-1] != chain_ids([D1, D0])[-1]


@pytest.mark.parametrize("bad", ["", "sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64,
                                 "a" * 64, "sha256:" + "a" * 64 + "/.."])
def test_invalid_digests_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        chain_id_of(None, bad)
    with pytest.raises(InvalidArgument):
        chain_id_of(bad, D0)


def test_image_id_is_sha256_of_exact_bytes() -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    assert image_id_of(config) == "sha256:" + hashlib.sha256(config).hexdigest()
    assert image_id_of(config + b"\n") != image_id_of(config)


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
        (1_700_000_000_120_000_000, "2023-11-14T22:13:20.12Z"),
        (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
    ],
)
def test_rfc3339nano_like_go(ns: int, expected: str) -> None:
    assert rfc3339nano(ns) == expected


def test_small_digests_match_hashlib_without_loading_it() -> None:
    """sha256_digest uses CPython's built-in sha256 (hashlib's OpenSSL costs `run` ~2 ms):
    the same answers, on the empty input and across block boundaries."""
    import hashlib
    import subprocess
    import sys

    from minidock.image.store import sha256_digest

    for data in (b"", b"abc", bytes(range(256)) * 40, b"x" * 55, b"x" * 64):
        assert sha256_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    code = ("import sys; from minidock.image.store.ids import sha256_digest; "
            "sha256_digest(b'{}'); print('hashlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out == "False\n"
