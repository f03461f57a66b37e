"""``docker diff``: what a container changed in its filesystem, one A/C/D line per path.

The container's rw layer (``overlay2/<mount-id>/diff``) is read against the layers below it,
the -init layer first (minidock.storage.changes has the rules). It works on a running or a
stopped container; the container's lock keeps ``rm`` from deleting the layer meanwhile.
"""

from __future__ import annotations

from minidock.engine import containers as ct
from minidock.paths import Paths
from minidock.storage.changes import overlay_changes


def diff(paths: Paths, ref: str) -> list[tuple[str, str]]:
    """``(kind, path)`` of each change of container ``ref``, kind ``A``, ``C`` or ``D``."""
    c = ct.get(paths, ref)
    store = ct.image_store(paths)
    with ct.container_lock(paths, c.id):
        rw = store.get_rw_layer(c.id)
        upper = store.driver.diff_path(rw.mount_id)
        return overlay_changes(upper, store.driver.lower_dirs(rw.mount_id))
