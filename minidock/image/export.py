"""Layers back to tar streams: the original bytes from tar-split, or a tar of a directory.

A stored layer is an extracted ``diff/`` directory; its identity (the DiffID in image configs)
is the sha256 of the tar it was extracted from. ``save`` and ``push`` must hand out exactly
that tar, so :func:`minidock.image.layer.apply_layer` records a tar-split while it extracts
(format in that module) and this module reassembles it::

    tar-split.json.gz  --segments (headers, padding, end blocks)--------+
                       --file entries: name, size --> diff/<name> ------+--> the original tar
                                                                         (sha256 == DiffID)

Every byte is hashed on the way out and the DiffID is checked at the end: a diff/ changed
after the fact (or a layer whose tar had duplicate paths, which tar-split cannot describe)
fails with a clear error instead of producing a tar that does not match its digest.

Files are opened component by component from the layer root with ``O_NOFOLLOW`` (a symlink
on the way is an error), so a symlink in the layer can never make an export read a host
file; only regular files of the recorded size are accepted.

Without a tar-split (layers stored before recording existed), :func:`tar_directory` writes a
deterministic tar of diff/ with Docker's overlay conventions (0/0 devices -> ``.wh.<name>``,
opaque directories -> ``.wh..wh..opq``). That tar almost never has the DiffID the image config
names, so exporting such a layer for save or push is refused with an explanation, after a
first pass that finds out, before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from minidock.errors import LayerError
from minidock.image.layer import clean_name
from minidock.records import record

if TYPE_CHECKING:
    from minidock.image.store import ImageStore

__all__ = [
    "LayerBlob",
    "assemble_tar_split",
    "diff_tar_stream",
    "export_layer_digest",
    "iter_layer_tar",
    "layer_tar_size",
    "layer_tar_stream",
    "tar_directory",
    "tar_entry",
    "tar_split_size",
    "write_layer_blob",
]

CHUNK = 1 << 20

_SEGMENT = 2
_FILE = 1
_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_KEPT_XATTR = "security.capability"
_MAX_LINE = 64 << 20  # one JSON line: a segment is at most 1 MiB (4/3 in base64) when we wrote it


# --- tar-split: reading -------------------------------------------------------------------


@record(frozen=True)
class _Entry:
    kind: int
    name: bytes  # file entries: the entry name as raw bytes
    size: int
    payload: bytes  # segment entries: the raw bytes


def _entries(split: IO[bytes], where: str) -> Iterator[_Entry]:
    """Parse tar-split JSON lines (already decompressed) into entries."""
    for lineno, line in enumerate(split, 1):
        if len(line) > _MAX_LINE:
            raise LayerError(f"read tar-split {where}: line {lineno} is too long")
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            kind = int(doc["type"])
            if kind == _SEGMENT:
                yield _Entry(_SEGMENT, b"", 0, base64.b64decode(doc.get("payload") or ""))
            elif kind == _FILE:
                raw = doc.get("name_raw")
                name = base64.b64decode(raw) if raw else str(doc.get("name", "")).encode(
                    "utf-8", "surrogateescape")
                size = int(doc.get("size") or 0)
                if size < 0:
                    raise ValueError("negative size")
                yield _Entry(_FILE, name, size, b"")
            else:
                raise ValueError(f"unknown entry type {kind}")
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise LayerError(f"read tar-split {where}: line {lineno}: {e}") from e


@contextlib.contextmanager
def _open_split(path: str) -> Iterator[IO[bytes]]:
    try:
        f = gzip.open(path, "rb")  # noqa: SIM115 (closed below; errors wrapped around yield)
    except OSError as e:
        raise LayerError(f"open tar-split {path}: {os.strerror(e.errno or errno.EIO)}") from e
    try:
        yield cast(IO[bytes], f)  # a GzipFile reads bytes; its stub is not an IO[bytes]
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, LayerError):
            raise
        raise LayerError(f"read tar-split {path}: {e}") from e
    finally:
        f.close()


def tar_split_size(split_path: str) -> int:
    """Size of the tar the tar-split at ``split_path`` describes (without reading diff/)."""
    total = 0
    with _open_split(split_path) as f:
        for e in _entries(f, split_path):
            total += len(e.payload) if e.kind == _SEGMENT else e.size
    return total


class _DirCache:
    """Opens files of a layer by name without following any symlink, caching the last dir.

    Every component is opened with ``O_NOFOLLOW`` relative to the previous one, so nothing
    outside the layer root can be reached (a symlink on the way is an error: in a diff/ a
    recorded file's path never goes through one unless the layer changed). Names are bytes,
    so names that are not UTF-8 work too. Tar writers emit a directory's files together, so
    caching the last directory saves most of the walk.
    """

    def __init__(self, root_fd: int) -> None:
        self._root = root_fd
        self._path: bytes | None = None
        self._fd = -1

    def open(self, path: bytes) -> int:
        head, _, base = path.rpartition(b"/")
        if head != self._path:
            self.close()
            fd = os.dup(self._root)
            for part in head.split(b"/") if head else []:
                try:
                    nfd = os.open(part, _OPEN_DIR, dir_fd=fd)
                finally:
                    os.close(fd)  # hand over hand: one directory held at a time
                fd = nfd
            self._path, self._fd = head, fd
        return os.open(base, _READ_FILE, dir_fd=self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._path, self._fd = None, -1


def _read_exactly(dirs: _DirCache, name: bytes, size: int) -> Iterator[bytes]:
    """Yield the ``size`` bytes of regular file ``name`` of the layer."""
    shown = json.dumps(name.decode("utf-8", "backslashreplace"))
    path = clean_name(os.fsdecode(name))
    if not path:
        raise LayerError(f"export layer: invalid file name {shown} in tar-split")
    try:
        fd = dirs.open(os.fsencode(path))
    except OSError as e:
        why = ("a symlink is in the way" if e.errno in (errno.ELOOP, errno.ENOTDIR)
               else os.strerror(e.errno or errno.EIO))
        raise LayerError(f"export layer: open {shown}: {why}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LayerError(f"export layer: {shown} is no longer a regular file")
        if st.st_size != size:
            raise LayerError(f"export layer: {shown} has {st.st_size} bytes, the "
                             f"layer recorded {size}: the layer's files were changed")
        yield from _read_fd(fd, size, f"export layer: {shown}")
    finally:
        os.close(fd)


def assemble_tar_split(split: IO[bytes], root_fd: int, where: str = "tar-split") -> Iterator[bytes]:
    """The tar stream rebuilt from decompressed tar-split JSON lines and the dir ``root_fd``.

    Small pieces (headers, small files) are gathered into chunks of about 1 MiB so a consumer
    writes in large blocks.
    """
    dirs = _DirCache(root_fd)
    try:
        yield from _assemble(split, dirs, where)
    finally:
        dirs.close()


def _assemble(split: IO[bytes], dirs: _DirCache, where: str) -> Iterator[bytes]:
    pending: list[bytes] = []
    pending_size = 0
    for e in _entries(split, where):
        if e.kind == _SEGMENT:
            if e.payload:
                pending.append(e.payload)
                pending_size += len(e.payload)
        elif e.size:
            for data in _read_exactly(dirs, e.name, e.size):
                if len(data) >= CHUNK and not pending:
                    yield data
                    continue
                pending.append(data)
                pending_size += len(data)
                if pending_size >= CHUNK:
                    yield b"".join(pending)
                    pending.clear()
                    pending_size = 0
            continue
        if pending_size >= CHUNK:
            yield b"".join(pending)
            pending.clear()
            pending_size = 0
    if pending:
        yield b"".join(pending)


# --- a deterministic tar of a directory ---------------------------------------------------


def _header(info: tarfile.TarInfo) -> bytes:
    # PAX only when a field needs it (long or non-ASCII names, big numbers, xattrs), as Go's
    # archive/tar chooses USTAR first.
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def tar_directory(root: str, *, overlay_whiteouts: bool,
                  ids: Callable[[int, int], tuple[int, int]] | None = None) -> Iterator[bytes]:
    """A tar of the tree at ``root`` (not its root entry), sorted by name, never following links.

    ``overlay_whiteouts``: write overlayfs whiteouts (0/0 character devices) as ``.wh.<name>``
    files and an opaque directory's xattr as a ``.wh..wh..opq`` entry, as Docker exports a
    layer's diff. Without it (a container's merged view, which shows no whiteouts) devices are
    written as devices. Hard links after the first become link entries. ``ids``: the owners
    as the tar should say them (a container's upper dir shifted into a user namespace's
    range while it runs, storage/shifted.py).
    """
    root_fd = os.open(root, _OPEN_DIR)
    try:
        out = _Chunker()
        seen: dict[tuple[int, int], str] = {}
        yield from out.feed(_walk(root_fd, "", overlay_whiteouts, seen, ids))
        yield from out.feed([b"\0" * (2 * tarfile.BLOCKSIZE)])
        yield from out.flush()
    finally:
        os.close(root_fd)


class _Chunker:
    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._parts.append(piece)
            self._size += len(piece)
            if self._size >= CHUNK:
                yield from self.flush()

    def flush(self) -> Iterator[bytes]:
        if self._parts:
            yield b"".join(self._parts)
            self._parts.clear()
            self._size = 0


def tar_entry(dfd: int, name: str, arcname: str,
              ids: Callable[[int, int], tuple[int, int]] | None = None) -> Iterator[bytes]:
    """A tar of the entry ``name`` of the directory fd ``dfd`` (a directory with everything
    below it), named ``arcname`` in the tar, never following links (``docker cp ... -``);
    ``ids`` as tar_directory's."""
    out = _Chunker()
    yield from out.feed(_entry(dfd, name, arcname, False, {}, ids))
    yield from out.feed([b"\0" * (2 * tarfile.BLOCKSIZE)])
    yield from out.flush()


def _walk(dfd: int, prefix: str, whiteouts: bool, seen: dict[tuple[int, int], str],
          ids: Callable[[int, int], tuple[int, int]] | None = None) -> Iterator[bytes]:
    for name in sorted(os.listdir(dfd), key=os.fsencode):
        yield from _entry(dfd, name, prefix + name, whiteouts, seen, ids)


def _entry(dfd: int, name: str, path: str, whiteouts: bool,
           seen: dict[tuple[int, int], str],
           ids: Callable[[int, int], tuple[int, int]] | None = None) -> Iterator[bytes]:
    """The entry ``name`` of ``dfd`` as ``path`` in the tar, and what is below it."""
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    info = tarfile.TarInfo(path)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = ids(st.st_uid, st.st_gid) if ids else (st.st_uid, st.st_gid)
    info.mtime = int(st.st_mtime)
    mode = st.st_mode
    if stat.S_ISCHR(mode) and whiteouts and st.st_rdev == 0:
        info.name = path[:len(path) - len(name)] + _WHITEOUT + name
        info.mode = 0o600  # an empty regular file, 0600, as Docker writes a whiteout
        yield _header(info)
        return
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        info.name = path + "/"
        cfd = os.open(name, _OPEN_DIR, dir_fd=dfd)
        try:
            _add_xattr(info, cfd)
            yield _header(info)
            if whiteouts and _is_opaque(cfd):
                marker = tarfile.TarInfo(path + "/" + _OPAQUE)
                marker.mode = info.mode & 0o777
                marker.uid, marker.gid, marker.mtime = info.uid, info.gid, info.mtime
                yield _header(marker)
            yield from _walk(cfd, path + "/", whiteouts, seen, ids)
        finally:
            os.close(cfd)
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dfd)
        yield _header(info)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in seen:
            info.type = tarfile.LNKTYPE
            info.linkname = seen[key]
            # the capability goes on the link entry too, as Docker writes it: Docker's
            # apply chowns the link, which makes the kernel drop the inode's capability,
            # then sets the entry's xattr again
            fd = os.open(name, _READ_FILE, dir_fd=dfd)
            try:
                _add_xattr(info, fd)
            finally:
                os.close(fd)
            yield _header(info)
            return
        if st.st_nlink > 1:
            seen[key] = path
        fd = os.open(name, _READ_FILE, dir_fd=dfd)
        try:
            _add_xattr(info, fd)
            info.size = st.st_size
            yield _header(info)
            yield from _read_fd(fd, st.st_size, f"export: {json.dumps(path)}")
            yield _pad(st.st_size)
        finally:
            os.close(fd)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        info.type = (tarfile.CHRTYPE if stat.S_ISCHR(mode) else
                     tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE)
        if not stat.S_ISFIFO(mode):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        yield _header(info)
    # sockets are skipped, as Docker's archive does


def _read_fd(fd: int, size: int, what: str) -> Iterator[bytes]:
    """``size`` bytes of ``fd`` in chunks; a file that ends sooner was changed under us."""
    left = size
    while left:
        data = os.read(fd, min(left, CHUNK))
        if not data:
            raise LayerError(f"{what} shrank while reading")
        left -= len(data)
        yield data


def _add_xattr(info: tarfile.TarInfo, fd: int) -> None:
    # Only security.capability goes into layer tars (Docker's rule); binary values travel
    # as surrogate-escaped text, which tobuf encodes back to the same bytes.
    try:
        value = os.getxattr(fd, _KEPT_XATTR)
    except OSError:
        return
    info.pax_headers = {"SCHILY.xattr." + _KEPT_XATTR: value.decode("utf-8", "surrogateescape")}


def _is_opaque(fd: int) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(fd, attr) == b"y":
                return True
        except OSError:
            continue
    return False


# --- layers of the store ------------------------------------------------------------------


def _split_path(store: ImageStore, chain_id: str) -> str:
    return store.tar_split_path(chain_id)


def _no_split_error(chain_id: str, diff_id: str, got: str) -> LayerError:
    return LayerError(
        f"export layer {diff_id}: the layer has no tar-split record and a tar regenerated "
        f"from its files has DiffID {got}, not the {diff_id} the image config names",
        hint="the layer was stored before minidock recorded tar-split data; remove the "
             "image and load or pull it again (chain " + chain_id + ")",
    )


def _chunks_for(store: ImageStore, chain_id: str) -> tuple[Callable[[], Iterator[bytes]], str]:
    """A factory of the layer's tar chunks (unverified) and the DiffID they must hash to."""
    layer = store.get_layer(chain_id)
    diff = store.driver.diff_path(layer.cache_id)
    split = _split_path(store, chain_id)

    if os.path.exists(split):
        def from_split() -> Iterator[bytes]:
            root_fd = os.open(diff, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                with _open_split(split) as f:
                    yield from assemble_tar_split(f, root_fd, split)
            finally:
                os.close(root_fd)
        return from_split, layer.diff_id

    def from_dir() -> Iterator[bytes]:
        return tar_directory(diff, overlay_whiteouts=True)
    return from_dir, layer.diff_id


def _verified(chunks: Iterator[bytes], diff_id: str, chain_id: str) -> Iterator[bytes]:
    sha = hashlib.sha256()
    for data in chunks:
        sha.update(data)
        yield data
    got = "sha256:" + sha.hexdigest()
    if got != diff_id:
        raise LayerError(
            f"export layer {diff_id}: the rebuilt tar has digest {got}: the layer's files "
            "changed since it was stored (or its tar had duplicate entries)",
            hint=f"layer chain {chain_id}; remove the image and load or pull it again",
        )


def layer_tar_size(store: ImageStore, chain_id: str) -> int:
    """The size of the layer's tar; for a layer without tar-split, checks its DiffID too.

    Raises LayerError when the layer cannot be exported with the DiffID it is stored under.
    """
    factory, diff_id = _chunks_for(store, chain_id)
    split = _split_path(store, chain_id)
    if os.path.exists(split):
        return tar_split_size(split)
    # No record: a full pass decides, before anything is written, whether the regenerated
    # tar still has the DiffID (only for layers that a deterministic writer produced).
    sha = hashlib.sha256()
    size = 0
    for data in factory():
        sha.update(data)
        size += len(data)
    got = "sha256:" + sha.hexdigest()
    if got != diff_id:
        raise _no_split_error(chain_id, diff_id, got)
    return size


def iter_layer_tar(store: ImageStore, chain_id: str) -> Iterator[bytes]:
    """The layer's original uncompressed tar in chunks; LayerError at the end on a mismatch."""
    factory, diff_id = _chunks_for(store, chain_id)
    return _verified(factory(), diff_id, chain_id)


class _IterReader(io.RawIOBase):
    """A read-only binary file over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def diff_tar_stream(upper: str, ids: Callable[[int, int], tuple[int, int]] | None = None
                    ) -> BinaryIO:
    """A container's changes as a layer tar to read(): the tar of its overlay upper dir with
    whiteouts and opaque directories in the tar conventions (what ``commit`` registers)."""
    chunks = tar_directory(upper, overlay_whiteouts=True, ids=ids)
    return cast(BinaryIO, io.BufferedReader(_IterReader(chunks), CHUNK))


def layer_tar_stream(store: ImageStore, chain_id: str) -> BinaryIO:
    """The layer's original tar as a file to read(); raises LayerError at EOF on mismatch."""
    return cast(BinaryIO, io.BufferedReader(_IterReader(iter_layer_tar(store, chain_id)), CHUNK))


@record(frozen=True)
class LayerBlob:
    """A layer as written for a registry: the blob's digest and size, and its DiffID."""

    digest: str
    size: int
    diff_id: str
    media_type: str


def write_layer_blob(store: ImageStore, chain_id: str, out: BinaryIO, *,
                     compress: bool = True, level: int = 6) -> LayerBlob:
    """Write the layer to ``out`` (gzip by default, as ``docker push``); return its digests.

    The DiffID is verified while writing; on LayerError what was written must be discarded.
    """
    sha = hashlib.sha256()
    size = 0
    comp = zlib.compressobj(level, zlib.DEFLATED, 31) if compress else None
    diff_id = store.get_layer(chain_id).diff_id
    if not os.path.exists(_split_path(store, chain_id)):
        layer_tar_size(store, chain_id)  # refuses early when the DiffID cannot be reproduced

    def emit(data: bytes) -> None:
        nonlocal size
        if data:
            sha.update(data)
            size += len(data)
            out.write(data)

    for chunk in iter_layer_tar(store, chain_id):
        emit(comp.compress(chunk) if comp else chunk)
    if comp:
        emit(comp.flush())
    media = ("application/vnd.oci.image.layer.v1.tar+gzip" if compress
             else "application/vnd.oci.image.layer.v1.tar")
    return LayerBlob("sha256:" + sha.hexdigest(), size, diff_id, media)


def export_layer_digest(store: ImageStore, chain_id: str, *, compress: bool = True) -> LayerBlob:
    """Digest and size of the layer blob :func:`write_layer_blob` would write (one pass, no
    output): what a push HEADs for before uploading."""

    class _Null:
        def write(self, data: bytes) -> int:
            return len(data)

    return write_layer_blob(store, chain_id, _Null(), compress=compress)  # type: ignore[arg-type]
