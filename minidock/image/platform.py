"""Which image of an index a machine runs: ``--platform`` parsing, matching and selection.

:class:`Platform` itself is image-spec data (minidock/oci/image.py, where descriptors are
parsed); this module decides what serves what, as containerd's default matcher does::

    want linux/arm/v7   entries: linux/amd64, linux/arm/v6, linux/arm/v7
                        ranks:   -            1             0  -> linux/arm/v7
"""

from __future__ import annotations

from typing import Any

from minidock.errors import InvalidArgument, RegistryError
from minidock.oci.image import MANIFEST_TYPES, Descriptor, ImageIndex, Platform

__all__ = [
    "Platform", "config_platform", "parse_platform", "platform_matches", "select_manifest",
]


def parse_platform(value: str) -> Platform:
    """``os/arch[/variant]`` as ``--platform`` takes it (``linux/arm64/v8``, ``linux/amd64``)."""
    parts = value.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {value!r}: want os/arch[/variant]")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()


def _platform_rank(want: Platform, have: Platform) -> int | None:
    """How well ``have`` serves ``want``: 0 exact, higher worse, None unusable.

    Like containerd's default matcher: os and architecture must be equal; the variant must
    be equal, except that an arm v7 machine runs v6 and v5 images (ranked after v7).
    """
    w, h = want.normalized(), have.normalized()
    if w.os != h.os or w.architecture != h.architecture:
        return None
    if w.variant == h.variant:
        return 0
    if w.architecture == "arm" and w.variant and h.variant:
        try:
            wv, hv = int(w.variant[1:]), int(h.variant[1:])
        except ValueError:
            return None
        if 5 <= hv < wv:
            return wv - hv
    return None


def select_manifest(index: ImageIndex, want: Platform) -> Descriptor:
    """The index entry for ``want``: the best match, the first of equals (image-spec)."""
    best: tuple[int, int] | None = None
    for pos, entry in enumerate(index.manifests):
        if entry.platform is None or entry.media_type not in MANIFEST_TYPES:
            continue  # attestations, nested indexes, entries without platform
        rank = _platform_rank(want, entry.platform)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, pos)
    if best is None:
        raise RegistryError(f"no matching manifest for {want} in the manifest list entries")
    return index.manifests[best[1]]


def config_platform(config: dict[str, Any]) -> Platform:
    """The platform an image config says it was built for (missing fields: empty)."""
    os_ = config.get("os")
    arch = config.get("architecture")
    variant = config.get("variant")
    return Platform(os_ if isinstance(os_, str) else "", arch if isinstance(arch, str) else "",
                    variant if isinstance(variant, str) and variant else None)


def platform_matches(want: Platform, have: Platform) -> bool:
    return _platform_rank(want, have) is not None
