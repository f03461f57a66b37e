"""``docker images``: the images of the store, one summary each, newest first.

The ``--filter`` tests are :func:`minidock.engine.filters.filter_images`.
"""

from __future__ import annotations

from minidock.errors import MinidockError
from minidock.image.store import ImageStore
from minidock.paths import Paths
from minidock.records import field, record


@record
class ImageSummary:
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: str
    size: int
    parent: str = ""
    containers: list[str] = field(default_factory=list)


def list_images(paths: Paths, all_images: bool = False) -> list[ImageSummary]:
    """Images newest first; without ``all_images``, untagged images with children are hidden."""
    store = ImageStore(paths)
    out: list[ImageSummary] = []
    ids = store.list_images()
    parents = {i: store.get_parent(i) for i in ids}
    has_children = {p for p in parents.values() if p}
    for image_id in ids:
        refs = store.references(image_id)
        if not refs and not all_images and image_id in has_children:
            continue  # an intermediate image of a build
        try:
            config = store.get_image_config(image_id)
            size = store.image_size(image_id)
        except MinidockError:
            continue  # removed meanwhile (or corrupt): skip, do not fail the listing
        out.append(ImageSummary(
            id=image_id,
            repo_tags=[r for r in refs if "@" not in r],
            repo_digests=[r for r in refs if "@" in r],
            created=str(config.get("created") or ""),
            size=size,
            parent=parents.get(image_id) or "",
        ))
    out.sort(key=lambda s: (s.created, s.id), reverse=True)
    return out
