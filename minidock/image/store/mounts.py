"""layerdb/mounts: each container's rw layer, on its -init layer, on its image's top layer.

    layerdb/mounts/<container-id>/   mount-id, init-id, [parent]
    overlay2/<mount-id>-init/        what every container sees whatever its image (below)
    overlay2/<mount-id>/             what the container writes

The parent is the image's top ChainID (absent for an image with no layers), so this room
sits on the images one.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from minidock.errors import Conflict, InvalidArgument, NotFound, StorageError, quietly
from minidock.image.reference import validate_digest
from minidock.image.store.base import CACHE_ID, HEX64, read_text
from minidock.image.store.images import Images
from minidock.records import record
from minidock.storage.overlay2 import IdMap


@record(frozen=True)
class RWLayer:
    container_id: str
    mount_id: str
    init_id: str
    parent: str | None


# Docker's -init layer (daemon/initlayer): what every container sees whatever its image.
_INIT_ENTRIES: tuple[tuple[str, str], ...] = (
    ("/dev/pts", "dir"),
    ("/dev/shm", "dir"),
    ("/proc", "dir"),
    ("/sys", "dir"),
    ("/.dockerenv", "file"),
    ("/etc/resolv.conf", "file"),
    ("/etc/hosts", "file"),
    ("/etc/hostname", "file"),
    ("/dev/console", "file"),
    ("/etc/mtab", "/proc/mounts"),
)


def setup_init_layer(root: str) -> None:
    """Fill a mounted -init layer the way Docker does.

    Every component of every path is unlinked first unless it is a directory: a symlink
    in the image (``/etc -> /somewhere``) must not redirect what we create, and the
    unlink leaves a whiteout in the -init layer. After that every existing component is a
    real directory, and the walk opens each with O_NOFOLLOW relative to the previous one,
    so nothing resolves outside ``root``.
    """
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path, kind in _INIT_ENTRIES:
            parts = path.strip("/").split("/")
            dfd = os.dup(root_fd)
            try:
                for i, part in enumerate(parts):
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        os.unlink(part, dir_fd=dfd)
                    last = i == len(parts) - 1
                    if last:
                        _create_init_entry(dfd, part, kind)
                        break
                    try:
                        nfd = _open_dir(dfd, part)
                    except FileNotFoundError:
                        os.mkdir(part, 0o755, dir_fd=dfd)
                        nfd = _open_dir(dfd, part)
                        os.fchmod(nfd, 0o755)
                    os.close(dfd)
                    dfd = nfd
            finally:
                os.close(dfd)
    finally:
        os.close(root_fd)


def _open_dir(dfd: int, name: str) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)


def _create_init_entry(dfd: int, name: str, kind: str) -> None:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return  # still there after the unlink: a directory, which Docker keeps as is
    except FileNotFoundError:
        pass
    if kind == "dir":
        os.mkdir(name, 0o755, dir_fd=dfd)
        fd = _open_dir(dfd, name)
        try:
            os.fchmod(fd, 0o755)
        finally:
            os.close(fd)
    elif kind == "file":
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o755, dir_fd=dfd)
        try:
            os.fchmod(fd, 0o755)  # Docker creates these 0755 (os.OpenFile(..., 0o755))
        finally:
            os.close(fd)
    else:
        os.symlink(kind, name, dir_fd=dfd)


class Mounts(Images):
    """Container rw layers: create, mount, measure, delete."""

    def _mount_dir(self, container_id: str) -> str:
        if not HEX64.match(container_id):
            raise InvalidArgument(f"invalid container id {container_id!r}")
        return os.path.join(self.layerdb, "mounts", container_id)

    def list_rw_layers(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.layerdb, "mounts"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if HEX64.match(n))

    def get_rw_layer(self, container_id: str) -> RWLayer:
        d = self._mount_dir(container_id)
        try:
            mount_id = read_text(os.path.join(d, "mount-id"))
            init_id = read_text(os.path.join(d, "init-id"))
            try:
                parent: str | None = validate_digest(read_text(os.path.join(d, "parent")))
            except FileNotFoundError:
                parent = None
        except FileNotFoundError:
            raise NotFound(f"no rw layer for container {container_id}") from None
        except (OSError, InvalidArgument) as e:
            raise StorageError(f"read rw layer metadata {d}: {e}") from e
        if not CACHE_ID.match(mount_id) or init_id != f"{mount_id}-init":
            raise StorageError(f"read rw layer metadata {d}: invalid mount-id or init-id")
        return RWLayer(container_id, mount_id, init_id, parent)

    def create_rw_layer(self, container_id: str, image_id: str | None) -> str:
        """Create a container's -init and rw layers on top of ``image_id`` (None: on nothing,
        a build's step after FROM scratch); return mount-id."""
        final = self._mount_dir(container_id)
        with self.locked():
            if os.path.lexists(final):
                raise Conflict(f"rw layer for container {container_id} already exists")
            top = self.top_layer(image_id) if image_id else None
            self._ensure_dirs()
            mount_id = os.urandom(32).hex()
            init_id = f"{mount_id}-init"
            with contextlib.ExitStack() as undo:
                self.driver.create(init_id, top.cache_id if top else None)
                undo.callback(quietly, self.driver.remove, init_id, ignore=Exception)
                root = self.driver.get(init_id, volatile=True)
                try:
                    setup_init_layer(root)
                except OSError as e:
                    raise StorageError(f"set up init layer {root}: {e}") from e
                finally:
                    self.driver.put(init_id)
                self.driver.create(mount_id, init_id)
                undo.callback(quietly, self.driver.remove, mount_id, ignore=Exception)
                files = {"mount-id": mount_id, "init-id": init_id}
                if top is not None:
                    files["parent"] = top.chain_id
                self._commit_dir(files, final)
                undo.pop_all()
            return mount_id

    def mount_rw_layer(self, container_id: str, idmap: IdMap | None = None,
                       copy: bool = False) -> str:
        """Mount the container's root filesystem; returns the merged path. ``idmap``: seen
        through a user namespace's id mapping (``--userns remap``; overlay2.get), over
        chowned copies of the layers with ``copy``."""
        with self.locked():
            return self.driver.get(self.get_rw_layer(container_id).mount_id, idmap=idmap,
                                   copy=copy)

    def unmount_rw_layer(self, container_id: str) -> None:
        """Unmount the container's root filesystem. A container whose rw layer is already
        gone (an ``rm`` killed after removing it) has nothing mounted: not an error."""
        with self.locked():
            try:
                rw = self.get_rw_layer(container_id)
            except NotFound:
                return
            self.driver.put(rw.mount_id)

    def rw_layer_metadata(self, container_id: str) -> dict[str, str]:
        return self.driver.metadata(self.get_rw_layer(container_id).mount_id)

    def rw_layer_size(self, container_id: str) -> int:
        """Bytes the container wrote (Docker's SizeRw): the size of its rw layer's diff."""
        return self.driver.diff_size(self.get_rw_layer(container_id).mount_id)

    def _delete_rw_layer(self, container_id: str) -> RWLayer | None:
        """Remove the container's rw and -init layers (unmounting them if needed) and its
        record; returns what was removed, None if there was none. Under the store lock."""
        try:
            rw = self.get_rw_layer(container_id)
        except NotFound:
            return None
        self.driver.remove(rw.mount_id)
        self.driver.remove(rw.init_id)
        d = self._mount_dir(container_id)
        doomed = f"{d}-{os.urandom(8).hex()}-removing"
        os.rename(d, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return rw
