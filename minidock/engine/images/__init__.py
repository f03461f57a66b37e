"""Image operations of the engine, one module per command, over the image store.

Orchestration over :class:`minidock.image.store.ImageStore`, no click and no printing:
functions take Paths and plain values and return data; the CLI formats it::

    import_.py    import_image          a tarball (file, -, URL) -> one layer -> an image;
                                        --change read by minidock.dockerfile
    listing.py    list_images           ImageSummary rows, newest first
    remove.py     tag, remove_image     add a name; rmi: untag, delete with the last name
    inspect.py    inspect_image         image inspect; resolve_image, image_for_container
                                        (run/create: pulls what is missing)
    history.py    image_history         history entries matched to layers
    prune.py      prune_images          image prune [-a]
    archive.py    save, load, export    tar archives (imported by the commands that use it,
                                        never from here: it is the heaviest)
    platform.py   host_platform         this machine's GOARCH and variant

The ``--filter`` engine these share with ``ps`` and ``container prune`` is
:mod:`minidock.engine.filters`; its names are importable from here too, for the callers
that have always found them here.

Every name below loads its module on first use: ``run`` reaches this package for
``image_for_container`` alone, and should not pay for import's lexer or prune.
"""

from __future__ import annotations

from minidock.engine.lazy import lazy_attributes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from minidock.engine.filters import (
        IMAGE_FILTERS,
        PRUNE_FILTERS,
        filter_images,
        label_matches,
        parse_filters,
        parse_time,
        until_timestamp,
    )
    from minidock.engine.images.history import HistoryEntry, image_history
    from minidock.engine.images.import_ import build_import_config, import_image
    from minidock.engine.images.inspect import (
        image_for_container,
        inspect_image,
        is_image_id,
        resolve_image,
    )
    from minidock.engine.images.listing import ImageSummary, list_images
    from minidock.engine.images.platform import host_platform
    from minidock.engine.images.prune import prune_images
    from minidock.engine.images.remove import remove_image, tag

# public name -> the module that defines it
_HOMES = {
    "IMAGE_FILTERS": "minidock.engine.filters",
    "PRUNE_FILTERS": "minidock.engine.filters",
    "filter_images": "minidock.engine.filters",
    "label_matches": "minidock.engine.filters",
    "parse_filters": "minidock.engine.filters",
    "parse_time": "minidock.engine.filters",
    "until_timestamp": "minidock.engine.filters",
    "HistoryEntry": "minidock.engine.images.history",
    "image_history": "minidock.engine.images.history",
    "build_import_config": "minidock.engine.images.import_",
    "import_image": "minidock.engine.images.import_",
    "image_for_container": "minidock.engine.images.inspect",
    "inspect_image": "minidock.engine.images.inspect",
    "is_image_id": "minidock.engine.images.inspect",
    "resolve_image": "minidock.engine.images.inspect",
    "ImageSummary": "minidock.engine.images.listing",
    "list_images": "minidock.engine.images.listing",
    "host_platform": "minidock.engine.images.platform",
    "prune_images": "minidock.engine.images.prune",
    "remove_image": "minidock.engine.images.remove",
    "tag": "minidock.engine.images.remove",
}

__all__ = [
    "IMAGE_FILTERS",
    "PRUNE_FILTERS",
    "HistoryEntry",
    "ImageSummary",
    "build_import_config",
    "filter_images",
    "host_platform",
    "image_for_container",
    "image_history",
    "import_image",
    "inspect_image",
    "is_image_id",
    "label_matches",
    "list_images",
    "parse_filters",
    "parse_time",
    "prune_images",
    "remove_image",
    "resolve_image",
    "tag",
    "until_timestamp",
]


__getattr__ = lazy_attributes(__name__, _HOMES)
