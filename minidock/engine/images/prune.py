"""``docker image prune [-a]``: remove the images nothing uses, and report what went.

The ``until=`` and ``label=`` tests come from :mod:`minidock.engine.filters`.
"""

from __future__ import annotations

from collections.abc import Callable

from minidock.engine.filters import label_matches, parse_time, until_timestamp
from minidock.errors import MinidockError
from minidock.image.store import ImageStore
from minidock.paths import Paths


def prune_images(
    paths: Paths,
    all_images: bool,
    in_use: Callable[[str], list[str]],
    filters: dict[str, list[str]] | None = None,
    now: float | None = None,
) -> tuple[list[str], int]:
    """``docker image prune [-a]``: (Docker's report lines, bytes reclaimed).

    Dangling images (no tag) go; with ``all_images`` every image no container uses. Images
    that are the parent of another image are kept (deleting them is refused anyway), as the
    daemon only considers "top" images. Lines are ``untagged: REF`` / ``deleted: ID``.
    """
    import time as _time

    filters = filters or {}
    until: float | None = None
    if "until" in filters:
        until = until_timestamp(filters["until"][-1], _time.time() if now is None else now)
    store = ImageStore(paths)
    lines: list[str] = []
    reclaimed = 0
    with store.locked():
        ids = store.list_images()
        parents = {store.get_parent(i) for i in ids}
        for image_id in ids:
            if image_id in parents or store.children(image_id):
                continue
            refs = store.references(image_id)
            tags = [r for r in refs if "@" not in r]
            if tags and not all_images:
                continue
            if in_use(image_id):
                continue
            try:
                config = store.get_image_config(image_id)
            except MinidockError:
                continue
            if until is not None:
                created = parse_time(str(config.get("created") or ""))
                if created is None or created >= until:
                    continue
            if "label" in filters:
                labels = (config.get("config") or {}).get("Labels") or {}
                if not all(label_matches(labels, w) for w in filters["label"]):
                    continue
            sizes = {layer.chain_id: layer.size for layer in store.image_layers(image_id)}
            for r in refs:
                store.remove_tag(r)
                lines.append(f"untagged: {r}")
            removed = store.delete_image(image_id)
            lines.append(f"deleted: {image_id}")
            for chain in removed:
                lines.append(f"deleted: {chain}")
                reclaimed += sizes.get(chain, 0)
    return lines, reclaimed
