"""How the store names what it holds: image ids and ChainIDs, both sha256 digests.

An image is named by its config bytes; a layer by its ChainID, which covers the layer and
everything under it::

    image id         = sha256(config bytes, exactly as stored)
    ChainID(L0)      = DiffID(L0)
    ChainID(L0..Ln)  = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))     (strings with "sha256:")

so the same tar on top of the same parents is stored once.
"""

from __future__ import annotations

from collections.abc import Sequence

from minidock.image.reference import validate_digest


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of a small input: an image config (verified on every read, as
    Docker's image store does) or a ChainID's two digests.

    hashlib loads OpenSSL, ~2-3 ms of every `run`; CPython's own sha256 module is built in and
    as quick on a few KiB. Layers, which are large, are hashed with hashlib elsewhere."""
    try:
        from _sha2 import sha256  # CPython 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.10, 3.11
        except ImportError:  # another Python, or a CPython built without them
            from hashlib import sha256
    return "sha256:" + sha256(data).hexdigest()


def image_id_of(config: bytes) -> str:
    """An image's id is the digest of its config bytes, exactly as stored."""
    return sha256_digest(config)


def chain_id_of(parent_chain_id: str | None, diff_id: str) -> str:
    """ChainID of ``diff_id`` stacked on the chain ``parent_chain_id`` (None: a base layer)."""
    validate_digest(diff_id)
    if parent_chain_id is None:
        return diff_id
    validate_digest(parent_chain_id)
    return sha256_digest(f"{parent_chain_id} {diff_id}".encode())


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The ChainID of every prefix of ``diff_ids`` (base first)."""
    out: list[str] = []
    parent: str | None = None
    for diff_id in diff_ids:
        parent = chain_id_of(parent, diff_id)
        out.append(parent)
    return out
