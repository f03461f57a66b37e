"""Docker's image store: layers, images and references, file for file.

Everything lives under ``<root>/image/overlay2`` (Paths.image_store), with the layer data
itself in the overlay2 driver's ``<root>/overlay2/<cache-id>``::

    image/overlay2/
      repositories.json   0600  {"Repositories":{"busybox":{"busybox:latest":"sha256:<id>"}}}
      imagedb/content/sha256/<id-hex>    0600 config bytes; id = sha256(bytes), checked on read
      imagedb/metadata/sha256/<id-hex>/  parent, lastUpdated, builtLocally (all optional)
      layerdb/sha256/<chainid-hex>/      diff, size, cache-id, [parent]  (one dir per chain)
      layerdb/mounts/<container-id>/     mount-id, init-id, [parent]     (container rw layer)
      layerdb/tmp/write-set-*/           staging: filled, fsynced, then renamed into place

One room per store, each a class on top of the rooms it needs::

    module         class       on top of            holds
    ids.py         -           -                    image ids and ChainIDs (pure functions)
    base.py        StoreBase   -                    paths, store lock, apply lock, staged writes
    layers.py      Layers      StoreBase            layerdb/sha256: layers by ChainID, register
    images.py      Images      Layers               imagedb: configs by id, their metadata
    references.py  References  Images               repositories.json: tags, digests, resolve
    mounts.py      Mounts      Images               layerdb/mounts: rw layers, the -init layer
    lifetimes.py   Lifetimes   References, Mounts   what uses a layer; rmi, rw layer removal,
                                                    debris of killed processes
    __init__.py    ImageStore  Lifetimes            all of it, under the one name callers use

Why one class assembled by inheritance rather than an ImageStore holding ``.layers``,
``.images`` and ``.refs``: some fifty call sites use the flat API (``store.resolve``,
``store.create_rw_layer``, ...), which stays as it was without a forwarding method per
call; and the stores are not independent: an image checks its layers, a reference its
image, a rw layer sits on an image's top layer. Each room names, by its base classes,
exactly the rooms it builds on, and mypy holds it to that. The one knot (removing
anything needs to know what every other store still uses) is tied in lifetimes.py, the
only room that sees them all.
"""

from __future__ import annotations

from minidock.image.store.ids import chain_id_of, chain_ids, image_id_of, sha256_digest
from minidock.image.store.images import MAX_CONFIG_SIZE, rfc3339nano
from minidock.image.store.layers import MAX_LAYER_DEPTH, TAR_SPLIT, Layer
from minidock.image.store.lifetimes import Lifetimes
from minidock.image.store.mounts import RWLayer, setup_init_layer

__all__ = [
    "MAX_CONFIG_SIZE",
    "MAX_LAYER_DEPTH",
    "TAR_SPLIT",
    "ImageStore",
    "Layer",
    "RWLayer",
    "chain_id_of",
    "chain_ids",
    "image_id_of",
    "rfc3339nano",
    "setup_init_layer",
    "sha256_digest",
]


class ImageStore(Lifetimes):
    """Layers, images and references of one data root: every room above, as one object."""
