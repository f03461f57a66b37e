"""layerdb: the image layers, one record per ChainID, and their data in overlay2.

    layerdb/sha256/<chainid-hex>/   diff, size, cache-id, [parent], [tar-split.json.gz]
    overlay2/<cache-id>/            the layer's files (the overlay2 driver's dir)

A layer is registered by applying its tar into a fresh overlay2 dir, then renaming its
record into place; it is removed by renaming the record to ``<hex>-<random>-removing``
first, so a crash half-way leaves a name that is never mistaken for a live layer. When a
layer may go (nothing uses it any more) is lifetimes.py's question, not this room's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil

from minidock.errors import InvalidArgument, NotFound, StorageError, quietly
from minidock.image.reference import digest_hex, validate_digest
from minidock.image.store.base import CACHE_ID, HEX64, StoreBase, read_text
from minidock.image.store.ids import chain_id_of
from minidock.linux import flock
from minidock.records import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import BinaryIO

# The layer store allows 125 layers: the driver's 128 lower dirs minus the container's
# -init and rw layers (and one spare, as Docker keeps).
MAX_LAYER_DEPTH = 125

# Docker's name for the record that rebuilds a layer's tar byte for byte (image/export.py).
TAR_SPLIT = "tar-split.json.gz"


@record(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    cache_id: str
    parent: str | None
    size: int


class Layers(StoreBase):
    """Layers by ChainID: read, list, register, delete one."""

    def _layer_dir(self, chain_id: str) -> str:
        return os.path.join(self.layerdb, "sha256", digest_hex(chain_id))

    def layer_exists(self, chain_id: str) -> bool:
        return os.path.isdir(self._layer_dir(chain_id))

    def get_layer(self, chain_id: str) -> Layer:
        d = self._layer_dir(chain_id)
        try:
            diff_id = validate_digest(read_text(os.path.join(d, "diff")))
            size = int(read_text(os.path.join(d, "size")))
            cache_id = read_text(os.path.join(d, "cache-id"))
            try:
                parent: str | None = validate_digest(read_text(os.path.join(d, "parent")))
            except FileNotFoundError:
                parent = None
        except FileNotFoundError:
            raise NotFound(f"layer {chain_id} does not exist") from None
        except (OSError, ValueError, InvalidArgument) as e:
            raise StorageError(f"read layer metadata {d}: {e}") from e
        if not CACHE_ID.match(cache_id):
            raise StorageError(f"read layer metadata {d}: invalid cache-id {cache_id!r}")
        return Layer(chain_id, diff_id, cache_id, parent, size)

    def list_layers(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.layerdb, "sha256"))
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n for n in names if HEX64.match(n))

    def layer_chain(self, chain_id: str) -> list[Layer]:
        """The layer and its ancestors, base first."""
        out: list[Layer] = []
        current: str | None = chain_id
        while current is not None:
            if len(out) > MAX_LAYER_DEPTH + 2:
                raise StorageError(f"layer chain of {chain_id} is too deep or loops")
            layer = self.get_layer(current)
            out.append(layer)
            current = layer.parent
        out.reverse()
        return out

    def register_layer(self, stream: BinaryIO, parent: str | None = None) -> Layer:
        """Apply a layer tar on top of chain ``parent`` and record it (see _register_layer).

        The whole apply holds the *apply lock* shared (any number of applies run at once,
        in any process), which is how :meth:`cleanup_stale` knows that an overlay2 dir no
        layer names is debris of a killed apply rather than one being filled right now.
        """
        with flock.locked(self._apply_lock, shared=True):
            return self._register_layer(stream, parent)

    def _register_layer(self, stream: BinaryIO, parent: str | None = None) -> Layer:
        """Apply a layer tar (any compression) on top of chain ``parent`` and record it.

        If the resulting ChainID is already stored, the new copy is dropped and the stored
        layer returned. On any failure nothing is left: no overlay2 dir, no metadata.
        Hold :meth:`locked` around this and the image that will use the layer if a
        concurrent ``rmi`` must not collect the layer in between.
        """
        from minidock.image.layer import apply_layer  # decompressors load only when needed

        parent_layer = self.get_layer(parent) if parent is not None else None
        if parent is not None and len(self.layer_chain(parent)) >= MAX_LAYER_DEPTH:
            raise StorageError(f"register layer on {parent}: max depth exceeded "
                               f"(an image has at most {MAX_LAYER_DEPTH} layers)")
        self._ensure_dirs()
        cache_id = os.urandom(32).hex()
        with contextlib.ExitStack() as undo:
            self.driver.create(cache_id, parent_layer.cache_id if parent_layer else None)
            undo.callback(quietly, self.driver.remove, cache_id, ignore=Exception)
            # The tar-split record (how to rebuild the exact tar for save/push) is written
            # next to the staging dirs and moved into the layer's dir with its other files.
            split_tmp = self._new_tar_split_file()
            undo.callback(quietly, os.unlink, split_tmp, ignore=FileNotFoundError)
            with open(split_tmp, "wb") as split:
                applied = apply_layer(stream, self.driver.diff_path(cache_id), tar_split=split)
                split.flush()
                os.fsync(split.fileno())
            diff_id = validate_digest(applied.diff_id)
            # Docker records what ApplyDiff returns: the size of the diff dir as applied
            # (regular files and symlinks, hard links once), which apply_layer counts as it
            # goes, sparing a second walk (Overlay2Driver.diff_size computes the same).
            size = applied.size
            chain = chain_id_of(parent, diff_id)
            with self.locked():
                if self.layer_exists(chain):
                    return self.get_layer(chain)  # stored already: undo drops this copy
                if parent is not None and not self.layer_exists(parent):
                    raise StorageError(f"register layer: parent layer {parent} was removed")
                files = {"diff": diff_id, "size": str(size), "cache-id": cache_id}
                if parent is not None:
                    files["parent"] = parent
                self._commit_dir(files, self._layer_dir(chain), moved={TAR_SPLIT: split_tmp})
                undo.pop_all()
        return Layer(chain, diff_id, cache_id, parent, size)

    def _new_tar_split_file(self) -> str:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="tar-split-", dir=os.path.join(self.layerdb, "tmp"))
        os.close(fd)
        return path

    def tar_split_path(self, chain_id: str) -> str:
        """Where the layer's tar-split record is (it may be missing for old layers)."""
        return os.path.join(self._layer_dir(chain_id), TAR_SPLIT)

    def _delete_layer(self, layer: Layer) -> None:
        d = self._layer_dir(layer.chain_id)
        while True:
            doomed = f"{d}-{os.urandom(32).hex()}-removing"
            try:
                os.rename(d, doomed)
                break
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise StorageError(f"remove layer {d}: {os.strerror(e.errno or 0)}") from e
        self.driver.remove(layer.cache_id)
        shutil.rmtree(doomed, ignore_errors=True)
