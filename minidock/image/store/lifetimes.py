"""When the store lets go: reference counts from disk, removal, and debris of killed processes.

There is no daemon to keep reference counts in memory, so they are computed from the
records each time: a layer stays while an image's rootfs ends in it, another layer names
it as parent, or a container rw layer sits on it. This is the one room that reads all the
others (images for their top layers, layers for their parents, mounts for theirs, and
references to drop an image's names), which is why removal lives here and not in them.

What a kill -9 leaves (staging dirs, ``*-removing`` dirs, overlay2 dirs no record names,
layers nothing uses) can only be told from work in progress while no apply runs: see the
apply lock in base.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from minidock.errors import MinidockError
from minidock.image.store.base import CACHE_ID, HEX64, listdir
from minidock.image.store.ids import chain_ids
from minidock.image.store.mounts import Mounts
from minidock.image.store.references import References


class Lifetimes(References, Mounts):
    """What uses a layer, and removing images, rw layers and layers nothing uses."""

    def _used_chains(self) -> set[str]:
        """Every ChainID something still depends on (images, child layers, rw layers)."""
        used: set[str] = set()
        for image_id in self.list_images():
            with contextlib.suppress(MinidockError):
                chains = chain_ids(self._diff_ids(image_id))
                if chains:
                    used.add(chains[-1])
        for chain in self.list_layers():
            with contextlib.suppress(MinidockError):
                parent = self.get_layer(chain).parent
                if parent:
                    used.add(parent)
        for cid in self.list_rw_layers():
            with contextlib.suppress(MinidockError):
                rw_parent = self.get_rw_layer(cid).parent
                if rw_parent:
                    used.add(rw_parent)
        return used

    def release_layer(self, chain_id: str) -> list[str]:
        """Remove ``chain_id`` and then each parent, while nothing uses them.

        Returns the removed ChainIDs, top first.
        """
        removed: list[str] = []
        with self.locked():
            current: str | None = chain_id
            while current is not None and self.layer_exists(current):
                if current in self._used_chains():
                    break
                layer = self.get_layer(current)
                self._delete_layer(layer)
                removed.append(current)
                current = layer.parent
        return removed

    def delete_image(self, image_id: str) -> list[str]:
        """Delete an image (and any reference left to it); returns the layers removed."""
        with self.locked():
            chains = chain_ids(self._diff_ids(image_id))
            for ref in self.references(image_id):
                self._remove_ref_key(ref)
            self._delete_image_files(image_id)
            return self.release_layer(chains[-1]) if chains else []

    def remove_rw_layer(self, container_id: str) -> None:
        """Remove the container's rw and -init layers (unmounting them if needed)."""
        with self.locked():
            rw = self._delete_rw_layer(container_id)
            if rw is not None and rw.parent is not None:
                # Normally the image still holds its layers; if it was deleted meanwhile,
                # this rw layer was the last user.
                self.release_layer(rw.parent)

    def stale(self, unused: bool = False) -> list[tuple[str, str]]:
        """What killed processes left behind, as (path, why) pairs; nothing is changed.

        Debris of a kill -9 in mid-write: staging dirs and temp files in layerdb/tmp,
        ``*-removing`` dirs of interrupted deletions, overlay2 dirs no layer, rw layer or
        -init layer names (an apply that never committed). With ``unused``, also layers
        that no image, child layer or container uses (a pull killed before it made its
        image). Empty while an apply or build runs anywhere: then nothing can be told
        apart from work in progress.
        """
        if not os.path.isdir(self.layerdb):
            return []
        with self._quiescent() as quiet:
            if not quiet:
                return []
            return self._stale(unused)

    def _stale(self, unused: bool) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        tmp = os.path.join(self.layerdb, "tmp")
        for name in listdir(tmp):
            found.append((os.path.join(tmp, name), "staging file of an interrupted write"))
        for kind in ("sha256", "mounts"):
            d = os.path.join(self.layerdb, kind)
            for name in listdir(d):
                if name.endswith("-removing"):
                    found.append((os.path.join(d, name), "half-done deletion"))
        # Orphans are only certain if every record could be read: a layer whose
        # metadata is unreadable would make its own data look orphaned.
        named: set[str] = set()
        try:
            for chain in self.list_layers():
                named.add(self.get_layer(chain).cache_id)
            for cid in listdir(os.path.join(self.layerdb, "mounts")):
                if HEX64.match(cid):
                    rw = self.get_rw_layer(cid)
                    named.update((rw.mount_id, rw.init_id))
        except (MinidockError, OSError):
            return found
        for name in listdir(self.driver.home):
            if CACHE_ID.match(name) and name not in named:
                found.append((os.path.join(self.driver.home, name),
                              "overlay2 dir no layer or container names"))
        if unused:
            used = self._used_chains()
            for chain in self.list_layers():
                if chain not in used:
                    found.append((self._layer_dir(chain), "layer no image or container uses"))
        return found

    def cleanup_stale(self, unused: bool = False) -> list[str]:
        """Remove what :meth:`stale` finds; returns the paths removed. Best effort: while an
        apply runs, it does nothing now and a later call does the work."""
        removed: list[str] = []
        if not os.path.isdir(self.layerdb):
            return removed
        with self._quiescent() as quiet:
            if not quiet:
                return removed
            for path, _ in self._stale(unused):
                name = os.path.basename(path)
                if path.startswith(self.driver.home + os.sep):
                    with contextlib.suppress(MinidockError, OSError):
                        self.driver.remove(name)
                        removed.append(path)
                elif os.path.dirname(path) == os.path.join(self.layerdb, "sha256") \
                        and HEX64.match(name):
                    chain = "sha256:" + name
                    with contextlib.suppress(MinidockError, OSError):
                        removed.extend(self._layer_dir(c) for c in self.release_layer(chain))
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                        removed.append(path)
        return removed
