"""How the store names what it holds: image ids and ChainIDs, both sha256 digests.

An image is named by its config bytes; a layer by its ChainID, which covers the layer and
everything under it::

    image id         = sha256(config bytes, exactly as stored)
    ChainID(L0)      = DiffID(L0)
    ChainID(L0..Ln)  = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))     (strings with "sha256:")

so the same tar on top of the same parents is stored once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from minidock.image.reference import validate_digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
