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

Identity: a layer is named by its ChainID, which covers the layer and everything under it::

    ChainID(L0)      = DiffID(L0)
    ChainID(L0..Ln)  = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))     (strings with "sha256:")

so the same tar on top of the same parents is stored once. Lifetimes are reference counts
computed from disk (there is no daemon to keep them in memory): a layer stays while an
image's rootfs ends in it, another layer names it as parent, or a container rw layer sits
on it. Deletion renames ``<hex>`` to ``<hex>-<random>-removing`` first, so a crash half-way
leaves a name that is never mistaken for a live layer.

Concurrency: mutations run under one flock (Paths.locks/image-store.lock), reentrant
within a process, so concurrent CLIs never interleave read-modify-write cycles. Readers
take no lock: every file appears by rename, whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from minidock.errors import (
    Conflict,
    ImageNotFound,
    InvalidArgument,
    MinidockError,
    NotFound,
    StorageError,
)
from minidock.image.reference import (
    Reference,
    digest_hex,
    is_digest,
    is_id_prefix,
    is_identifier,
    parse_reference,
    parse_tagged,
    validate_digest,
)
from minidock.jsonobj import parse_object
from minidock.paths import Paths
from minidock.storage.atomic import (
    atomic_write,
    fsync_dir,
    rename_dir_synced,
    write_file_synced,
)
from minidock.storage.overlay2 import Overlay2Driver

# The layer store allows 125 layers: the driver's 128 lower dirs minus the container's
# -init and rw layers (and one spare, as Docker keeps).
MAX_LAYER_DEPTH = 125
MAX_CONFIG_SIZE = 16 << 20

# Docker's name for the record that rebuilds a layer's tar byte for byte (image/export.py).
TAR_SPLIT = "tar-split.json.gz"

_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_CACHE_ID = re.compile(r"^[a-f0-9]{64}(-init)?$")


# --- pure helpers (unit-tested) ----------------------------------------------------------


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


def rfc3339nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano in UTC: nanoseconds with trailing zeros (and a bare ".") cut."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _read_text(path: str, limit: int = 4096) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode().strip()


# --- the lock ------------------------------------------------------------------------------


class _StoreLock:
    """An exclusive flock, reentrant within this process (one per lock-file path)."""

    _registry: dict[str, _StoreLock] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._depth = 0
        self._pid = 0

    @classmethod
    def for_path(cls, path: str) -> _StoreLock:
        lock = cls._registry.get(path)
        if lock is None:
            lock = cls._registry[path] = cls(path)
        return lock

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._pid != os.getpid():  # a forked child does not own its parent's lock
            self._fd, self._depth, self._pid = -1, 0, os.getpid()
        if self._depth == 0:
            os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                os.close(self._fd)  # closing the only descriptor releases the flock
                self._fd = -1


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    cache_id: str
    parent: str | None
    size: int


@dataclass(frozen=True)
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


# --- the store -----------------------------------------------------------------------------


class ImageStore:
    """Layers, images and references of one data root."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.root = paths.image_store
        self.driver = Overlay2Driver(paths.overlay2)
        self.layerdb = os.path.join(self.root, "layerdb")
        self.imagedb = os.path.join(self.root, "imagedb")
        self.refs_file = os.path.join(self.root, "repositories.json")
        self._lock = _StoreLock.for_path(os.path.join(paths.locks, "image-store.lock"))

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the store lock (reentrant) around a sequence of mutations."""
        return self._lock.held()

    def _ensure_dirs(self) -> None:
        for path, mode in (
            (os.path.dirname(self.root), 0o700),
            (self.root, 0o700),
            (self.imagedb, 0o700),
            (os.path.join(self.imagedb, "content"), 0o700),
            (os.path.join(self.imagedb, "content", "sha256"), 0o700),
            (os.path.join(self.imagedb, "metadata"), 0o700),
            (os.path.join(self.imagedb, "metadata", "sha256"), 0o700),
            (self.layerdb, 0o700),
            (os.path.join(self.layerdb, "sha256"), 0o755),
            (os.path.join(self.layerdb, "tmp"), 0o755),
            (os.path.join(self.layerdb, "mounts"), 0o755),
        ):
            if not os.path.isdir(path):
                with contextlib.suppress(FileExistsError):
                    os.makedirs(path, mode)
                    os.chmod(path, mode)

    def _staging_dir(self) -> str:
        path = os.path.join(self.layerdb, "tmp", f"write-set-{os.urandom(8).hex()}")
        os.mkdir(path, 0o700)  # (tempfile would cost its import on every create)
        return path

    # ==== layers =========================================================================

    def _layer_dir(self, chain_id: str) -> str:
        return os.path.join(self.layerdb, "sha256", digest_hex(chain_id))

    def layer_exists(self, chain_id: str) -> bool:
        return os.path.isdir(self._layer_dir(chain_id))

    def get_layer(self, chain_id: str) -> Layer:
        d = self._layer_dir(chain_id)
        try:
            diff_id = validate_digest(_read_text(os.path.join(d, "diff")))
            size = int(_read_text(os.path.join(d, "size")))
            cache_id = _read_text(os.path.join(d, "cache-id"))
            try:
                parent: str | None = validate_digest(_read_text(os.path.join(d, "parent")))
            except FileNotFoundError:
                parent = None
        except FileNotFoundError:
            raise NotFound(f"layer {chain_id} does not exist") from None
        except (OSError, ValueError, InvalidArgument) as e:
            raise StorageError(f"read layer metadata {d}: {e}") from e
        if not _CACHE_ID.match(cache_id):
            raise StorageError(f"read layer metadata {d}: invalid cache-id {cache_id!r}")
        return Layer(chain_id, diff_id, cache_id, parent, size)

    def list_layers(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.layerdb, "sha256"))
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n for n in names if _HEX64.match(n))

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
        with self._apply_lock(fcntl.LOCK_SH):
            return self._register_layer(stream, parent)

    def _apply_lock_fd(self) -> int:
        os.makedirs(self.paths.locks, 0o700, exist_ok=True)
        return os.open(os.path.join(self.paths.locks, "layer-apply.lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def _apply_lock(self, how: int) -> Iterator[None]:
        fd = self._apply_lock_fd()
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def building(self) -> contextlib.AbstractContextManager[None]:
        """Hold around "register layers, then create the image that uses them" (pull, load):
        the apply lock, shared, so :meth:`stale` never takes a layer registered a moment
        ago, not yet used by the image being made, for an unused one."""
        return self._apply_lock(fcntl.LOCK_SH)

    @contextlib.contextmanager
    def _quiescent(self) -> Iterator[bool]:
        """The store lock, and whether no apply or build runs anywhere (apply lock free)."""
        with self.locked():
            fd = self._apply_lock_fd()
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                yield True
            finally:
                os.close(fd)

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
        for name in _listdir(tmp):
            found.append((os.path.join(tmp, name), "staging file of an interrupted write"))
        for kind in ("sha256", "mounts"):
            d = os.path.join(self.layerdb, kind)
            for name in _listdir(d):
                if name.endswith("-removing"):
                    found.append((os.path.join(d, name), "half-done deletion"))
        # Orphans are only certain if every record could be read: a layer whose
        # metadata is unreadable would make its own data look orphaned.
        named: set[str] = set()
        try:
            for chain in self.list_layers():
                named.add(self.get_layer(chain).cache_id)
            for cid in _listdir(os.path.join(self.layerdb, "mounts")):
                if _HEX64.match(cid):
                    rw = self.get_rw_layer(cid)
                    named.update((rw.mount_id, rw.init_id))
        except (MinidockError, OSError):
            return found
        for name in _listdir(self.driver.home):
            if _CACHE_ID.match(name) and name not in named:
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
                        and _HEX64.match(name):
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
        keep = False
        # The tar-split record (how to rebuild the exact tar for save/push) is written next
        # to the staging dirs and moved into the layer's dir with its other files.
        split_tmp = self._new_tar_split_file()
        try:
            self.driver.create(cache_id, parent_layer.cache_id if parent_layer else None)
        except BaseException:
            os.unlink(split_tmp)
            raise
        try:
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
                    return self.get_layer(chain)
                if parent is not None and not self.layer_exists(parent):
                    raise StorageError(f"register layer: parent layer {parent} was removed")
                files = {"diff": diff_id, "size": str(size), "cache-id": cache_id}
                if parent is not None:
                    files["parent"] = parent
                self._commit_dir(files, self._layer_dir(chain), moved={TAR_SPLIT: split_tmp})
                keep = True
            return Layer(chain, diff_id, cache_id, parent, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(split_tmp)  # still there when the layer was not committed
            if not keep:
                with contextlib.suppress(Exception):
                    self.driver.remove(cache_id)

    def _new_tar_split_file(self) -> str:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="tar-split-", dir=os.path.join(self.layerdb, "tmp"))
        os.close(fd)
        return path

    def tar_split_path(self, chain_id: str) -> str:
        """Where the layer's tar-split record is (it may be missing for old layers)."""
        return os.path.join(self._layer_dir(chain_id), TAR_SPLIT)

    def _commit_dir(self, files: dict[str, str], final: str,
                    moved: dict[str, str] | None = None) -> None:
        """Write ``files`` into a staging dir under layerdb/tmp, then rename it to ``final``.

        ``moved`` maps more names to already written (fsynced) files on the same filesystem,
        renamed into the staging dir so they appear with the others, all at once.
        """
        staging = self._staging_dir()
        try:
            for name, content in files.items():
                write_file_synced(os.path.join(staging, name), content.encode(), 0o644)
            for name, src in (moved or {}).items():
                os.chmod(src, 0o644)
                os.rename(src, os.path.join(staging, name))
            rename_dir_synced(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

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

    # ==== container rw layers ============================================================

    def _mount_dir(self, container_id: str) -> str:
        if not _HEX64.match(container_id):
            raise InvalidArgument(f"invalid container id {container_id!r}")
        return os.path.join(self.layerdb, "mounts", container_id)

    def list_rw_layers(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.layerdb, "mounts"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _HEX64.match(n))

    def get_rw_layer(self, container_id: str) -> RWLayer:
        d = self._mount_dir(container_id)
        try:
            mount_id = _read_text(os.path.join(d, "mount-id"))
            init_id = _read_text(os.path.join(d, "init-id"))
            try:
                parent: str | None = validate_digest(_read_text(os.path.join(d, "parent")))
            except FileNotFoundError:
                parent = None
        except FileNotFoundError:
            raise NotFound(f"no rw layer for container {container_id}") from None
        except (OSError, InvalidArgument) as e:
            raise StorageError(f"read rw layer metadata {d}: {e}") from e
        if not _CACHE_ID.match(mount_id) or init_id != f"{mount_id}-init":
            raise StorageError(f"read rw layer metadata {d}: invalid mount-id or init-id")
        return RWLayer(container_id, mount_id, init_id, parent)

    def create_rw_layer(self, container_id: str, image_id: str) -> str:
        """Create a container's -init and rw layers on top of ``image_id``; return mount-id."""
        final = self._mount_dir(container_id)
        with self.locked():
            if os.path.lexists(final):
                raise Conflict(f"rw layer for container {container_id} already exists")
            top = self.top_layer(image_id)
            self._ensure_dirs()
            mount_id = os.urandom(32).hex()
            init_id = f"{mount_id}-init"
            created: list[str] = []
            try:
                self.driver.create(init_id, top.cache_id if top else None)
                created.append(init_id)
                root = self.driver.get(init_id, volatile=True)
                try:
                    setup_init_layer(root)
                except OSError as e:
                    raise StorageError(f"set up init layer {root}: {e}") from e
                finally:
                    self.driver.put(init_id)
                self.driver.create(mount_id, init_id)
                created.append(mount_id)
                files = {"mount-id": mount_id, "init-id": init_id}
                if top is not None:
                    files["parent"] = top.chain_id
                self._commit_dir(files, final)
            except BaseException:
                for layer_id in reversed(created):
                    with contextlib.suppress(Exception):
                        self.driver.remove(layer_id)
                raise
            return mount_id

    def mount_rw_layer(self, container_id: str) -> str:
        """Mount the container's root filesystem; returns the merged path."""
        with self.locked():
            return self.driver.get(self.get_rw_layer(container_id).mount_id)

    def unmount_rw_layer(self, container_id: str) -> None:
        with self.locked():
            self.driver.put(self.get_rw_layer(container_id).mount_id)

    def rw_layer_metadata(self, container_id: str) -> dict[str, str]:
        return self.driver.metadata(self.get_rw_layer(container_id).mount_id)

    def rw_layer_size(self, container_id: str) -> int:
        """Bytes the container wrote (Docker's SizeRw): the size of its rw layer's diff."""
        return self.driver.diff_size(self.get_rw_layer(container_id).mount_id)

    def remove_rw_layer(self, container_id: str) -> None:
        """Remove the container's rw and -init layers (unmounting them if needed)."""
        with self.locked():
            try:
                rw = self.get_rw_layer(container_id)
            except NotFound:
                return
            self.driver.remove(rw.mount_id)
            self.driver.remove(rw.init_id)
            d = self._mount_dir(container_id)
            doomed = f"{d}-{os.urandom(8).hex()}-removing"
            os.rename(d, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            if rw.parent is not None:
                # Normally the image still holds its layers; if it was deleted meanwhile,
                # this rw layer was the last user.
                self.release_layer(rw.parent)

    # ==== images =========================================================================

    def _content_path(self, image_id: str) -> str:
        return os.path.join(self.imagedb, "content", "sha256", digest_hex(image_id))

    def _metadata_dir(self, image_id: str) -> str:
        return os.path.join(self.imagedb, "metadata", "sha256", digest_hex(image_id))

    def image_exists(self, image_id: str) -> bool:
        return is_digest(image_id) and os.path.isfile(self._content_path(image_id))

    def list_images(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.imagedb, "content", "sha256"))
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n for n in names if _HEX64.match(n))

    def get_config(self, image_id: str) -> bytes:
        """The image's config bytes, verified against the id."""
        path = self._content_path(image_id)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_SIZE + 1)
        except FileNotFoundError:
            raise ImageNotFound(f"No such image: {image_id}") from None
        if len(data) > MAX_CONFIG_SIZE or image_id_of(data) != image_id:
            raise StorageError(f"read image config {path}: content does not match its digest")
        return data

    def get_image_config(self, image_id: str) -> dict[str, Any]:
        return parse_object(self.get_config(image_id), f"parse image config {image_id}",
                            StorageError)

    @staticmethod
    def diff_ids_of(config: dict[str, Any]) -> list[str]:
        rootfs = config.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidArgument('image config: rootfs.type must be "layers"')
        diff_ids = rootfs.get("diff_ids") or []
        if not isinstance(diff_ids, list):
            raise InvalidArgument("image config: rootfs.diff_ids must be a list")
        return [validate_digest(d) for d in diff_ids]

    def _diff_ids(self, image_id: str) -> list[str]:
        return self.diff_ids_of(self.get_image_config(image_id))

    def create_image(self, config: bytes) -> str:
        """Store an image config whose layers are all registered; returns its id."""
        if len(config) > MAX_CONFIG_SIZE:
            raise InvalidArgument(f"image config is too large ({len(config)} bytes)")
        parsed = parse_object(config, "invalid image config")
        diff_ids = self.diff_ids_of(parsed)
        if len(diff_ids) > MAX_LAYER_DEPTH:
            raise InvalidArgument(f"image config has {len(diff_ids)} layers, the limit is "
                                  f"{MAX_LAYER_DEPTH}")
        image_id = image_id_of(config)
        with self.locked():
            for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
                try:
                    layer = self.get_layer(chain)
                except NotFound:
                    raise StorageError(f"create image {image_id}: layer {diff_id} (chain "
                                       f"{chain}) is not registered") from None
                if layer.diff_id != diff_id:
                    raise StorageError(f"create image {image_id}: layer {chain} has diff "
                                       f"{layer.diff_id}, want {diff_id}")
            self._ensure_dirs()
            if not self.image_exists(image_id):
                atomic_write(self._content_path(image_id), config, 0o600)
        return image_id

    def image_layers(self, image_id: str) -> list[Layer]:
        """The image's layers, base first."""
        chains = chain_ids(self._diff_ids(image_id))
        return self.layer_chain(chains[-1]) if chains else []

    def top_layer(self, image_id: str) -> Layer | None:
        chains = chain_ids(self._diff_ids(image_id))
        return self.get_layer(chains[-1]) if chains else None

    def image_size(self, image_id: str) -> int:
        return sum(layer.size for layer in self.image_layers(image_id))

    def delete_image(self, image_id: str) -> list[str]:
        """Delete an image (and any reference left to it); returns the layers removed."""
        with self.locked():
            chains = chain_ids(self._diff_ids(image_id))
            for ref in self.references(image_id):
                self._remove_ref_key(ref)
            path = self._content_path(image_id)
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
            shutil.rmtree(self._metadata_dir(image_id), ignore_errors=True)
            return self.release_layer(chains[-1]) if chains else []

    def children(self, image_id: str) -> list[str]:
        """Images whose recorded parent is ``image_id`` (built or committed on top of it)."""
        return [i for i in self.list_images() if self.get_parent(i) == image_id]

    # --- image metadata (imagedb/metadata/sha256/<hex>/...) ---

    def _set_metadata(self, image_id: str, key: str, data: bytes) -> None:
        if not self.image_exists(image_id):
            raise ImageNotFound(f"No such image: {image_id}")
        d = self._metadata_dir(image_id)
        os.makedirs(d, 0o700, exist_ok=True)
        atomic_write(os.path.join(d, key), data, 0o600)

    def _get_metadata(self, image_id: str, key: str) -> bytes | None:
        try:
            with open(os.path.join(self._metadata_dir(image_id), key), "rb") as f:
                return f.read(4096)
        except FileNotFoundError:
            return None

    def set_last_updated(self, image_id: str, when: str | None = None) -> None:
        self._set_metadata(image_id, "lastUpdated", (when or rfc3339nano()).encode())

    def get_last_updated(self, image_id: str) -> str | None:
        raw = self._get_metadata(image_id, "lastUpdated")
        return raw.decode().strip() if raw else None

    def set_parent(self, image_id: str, parent_id: str) -> None:
        validate_digest(parent_id)
        self._set_metadata(image_id, "parent", parent_id.encode())

    def get_parent(self, image_id: str) -> str | None:
        raw = self._get_metadata(image_id, "parent")
        if not raw:
            return None
        value = raw.decode().strip()
        return value if is_digest(value) else None

    def set_built_locally(self, image_id: str) -> None:
        self._set_metadata(image_id, "builtLocally", b"\x01")

    def is_built_locally(self, image_id: str) -> bool:
        return self._get_metadata(image_id, "builtLocally") == b"\x01"

    # ==== references (repositories.json) =================================================

    def _load_refs(self) -> dict[str, dict[str, str]]:
        try:
            with open(self.refs_file, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise StorageError(f"parse {self.refs_file}: {e}") from e
        repos = data.get("Repositories") if isinstance(data, dict) else None
        if not isinstance(repos, dict):
            return {}
        return {
            str(repo): {str(k): str(v) for k, v in refs.items()}
            for repo, refs in repos.items()
            if isinstance(refs, dict)
        }

    def _save_refs(self, repos: dict[str, dict[str, str]]) -> None:
        self._ensure_dirs()
        body = json.dumps({"Repositories": repos}, sort_keys=True, separators=(",", ":"))
        atomic_write(self.refs_file, body, 0o600)

    def add_reference(self, ref: Reference, image_id: str) -> None:
        """Point ``ref`` (tagged or digested) at ``image_id``, replacing what it pointed to."""
        validate_digest(image_id)
        with self.locked():
            if not self.image_exists(image_id):
                raise ImageNotFound(f"No such image: {image_id}")
            repos = self._load_refs()
            repos.setdefault(ref.familiar_name, {})[ref.familiar()] = image_id
            self._save_refs(repos)

    def add_tag(self, ref: str | Reference, image_id: str) -> Reference:
        """``docker tag``: store ``ref`` (default tag latest) and stamp lastUpdated."""
        parsed = parse_tagged(ref) if isinstance(ref, str) else ref.with_default_tag()
        if parsed.digest is not None:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {parsed}")
        with self.locked():
            self.add_reference(parsed, image_id)
            self.set_last_updated(image_id)
        return parsed

    def _remove_ref_key(self, familiar_ref: str) -> bool:
        ref = parse_reference(familiar_ref)
        repos = self._load_refs()
        refs = repos.get(ref.familiar_name)
        if not refs or ref.familiar() not in refs:
            return False
        del refs[ref.familiar()]
        if not refs:
            del repos[ref.familiar_name]
        self._save_refs(repos)
        return True

    def remove_tag(self, ref: str | Reference) -> bool:
        """Remove a tag or digest reference (default tag latest); False if it was absent."""
        parsed = parse_reference(ref) if isinstance(ref, str) else ref
        with self.locked():
            return self._remove_ref_key(parsed.with_default_tag().familiar())

    def lookup_reference(self, ref: Reference) -> str | None:
        ref = ref.with_default_tag()
        image_id = self._load_refs().get(ref.familiar_name, {}).get(ref.familiar())
        return image_id if image_id and is_digest(image_id) else None

    def references(self, image_id: str) -> list[str]:
        """Familiar references (tags and digests) pointing at ``image_id``, sorted."""
        return sorted(
            ref
            for refs in self._load_refs().values()
            for ref, target in refs.items()
            if target == image_id
        )

    def tags_of(self, image_id: str) -> list[str]:
        return [r for r in self.references(image_id) if "@" not in r]

    def digests_of(self, image_id: str) -> list[str]:
        return [r for r in self.references(image_id) if "@" in r]

    def resolve(self, value: str) -> str:
        """An image id from a tag, digest reference, full id, ``sha256:`` id or id prefix.

        Order as Docker: a full id; then a reference in repositories.json; then a unique
        id prefix. Anything else is ImageNotFound (an invalid reference: InvalidArgument).
        """
        if is_identifier(value):
            value = "sha256:" + value
        if is_digest(value):
            if self.image_exists(value):
                return value
            raise ImageNotFound(f"No such image: {value}")
        try:
            ref: Reference | None = parse_reference(value)
        except InvalidArgument:
            if not is_id_prefix(value):
                raise
            ref = None
        if ref is not None:
            found = self.lookup_reference(ref)
            if found is not None and self.image_exists(found):
                return found
        if is_id_prefix(value):
            prefix = value.removeprefix("sha256:")
            matches = [i for i in self.list_images() if i[len("sha256:"):].startswith(prefix)]
            if len(matches) == 1:
                return matches[0]
        raise ImageNotFound(f"No such image: {value}")
