"""Apply one image layer (a tar stream, maybe compressed) to an empty overlay2 ``diff/`` dir.

This is the one place image bytes become files, so it is where a hostile image would try to
write, link or chmod something outside the layer. The rules:

- Entry names are cleaned lexically first: a leading ``/`` is dropped and ``..`` is folded;
  a name whose ``..`` climbs above the root is refused (Docker refuses them too).
- The directory an entry goes into is resolved inside the layer root (the entry's parent
  path through :func:`minidock.linux.fs.open_in_root`, as ``open_parent_in_root`` does, with
  the fds cached per directory path), so a symlink the layer made earlier (``etc -> /etc``,
  ``x -> ../../..``) can only lead to somewhere inside the layer.
- The entry itself is then made with an ``*at`` call on its final name, which never follows a
  symlink: an existing entry is removed first (``unlink``/``rmdir`` do not follow), files are
  created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, ownership and times use the NOFOLLOW
  variants, and mode and xattrs are set through an fd of the object itself.
- A hardlink target is resolved the same way and linked with ``linkat`` without
  ``AT_SYMLINK_FOLLOW``, so it can only name an inode that is already inside the layer.

Docker's overlay2 semantics (moby's archive Unpack with the overlay whiteout converter):

- an existing path is replaced, unless both it and the new entry are directories: then only
  the new entry's metadata is applied (merge);
- ``.wh.<name>`` becomes a 0/0 character device ``<name>`` (overlayfs's whiteout) owned like the
  marker; ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its directory; the markers
  themselves are not written; ``.wh.``, ``.wh..`` and ``.wh...`` are refused;
- the root entry (``./``) is skipped, directory mtimes are set at the end (creating children
  would change them), and only the ``security.capability`` xattr is applied.

The DiffID is the sha256 of the uncompressed tar stream, trailing zero blocks included; it is
computed in the same pass that extracts, by hashing what the tar reader consumes and then
reading the stream to its end.

Given a ``tar_split`` file, the same pass also records how to rebuild that exact stream from
the extracted files (Docker's ``tar-split.json.gz``; see :class:`TarSplitRecorder` and
minidock.image.export), so that save and push reproduce the DiffID byte for byte.
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import json
import lzma
import os
import queue
import stat
import tarfile
import threading
import zlib
from collections import OrderedDict
from contextlib import ExitStack
from typing import BinaryIO, Protocol, cast

from minidock.errors import LayerError
from minidock.linux.fs import open_in_root
from minidock.records import record

__all__ = ["AppliedLayer", "TarSplitRecorder", "apply_layer"]

CHUNK = 1 << 20

# Directory fds kept per apply. Tar writers emit a directory's entries together, so a small
# cache hits almost always; it must stay well below the default limit of 1024 open files.
_DIR_CACHE_SIZE = 64

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_KEPT_XATTR = "security.capability"
_XATTR_PAX = "SCHILY.xattr."

_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_NODE = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

_REGULAR = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE})
_NODES = {
    tarfile.CHRTYPE: stat.S_IFCHR,
    tarfile.BLKTYPE: stat.S_IFBLK,
    tarfile.FIFOTYPE: stat.S_IFIFO,
}
_ACTIONS = {
    tarfile.DIRTYPE: "create directory",
    tarfile.SYMTYPE: "create symlink",
    tarfile.LNKTYPE: "create hardlink",
    tarfile.CHRTYPE: "create device",
    tarfile.BLKTYPE: "create device",
    tarfile.FIFOTYPE: "create fifo",
}


@record(frozen=True)
class AppliedLayer:
    """What applying a layer found out: its DiffID and its size as Docker counts it."""

    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes of regular files and symlinks in the layer, hardlinks counted once


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def apply_layer(stream: BinaryIO, dest: str, tar_split: BinaryIO | None = None) -> AppliedLayer:
    """Extract the layer tar read from ``stream`` into the existing, empty directory ``dest``.

    With ``tar_split``, a tar-split record of the uncompressed stream (gzip-compressed JSON
    lines, Docker's format) is written to that file as the stream goes by, in the same pass.

    ``stream`` may be plain tar or gzip, bzip2, xz or zstd compressed (detected by magic
    number); it is read once, to its end, and never held in memory. A helper thread reads,
    decompresses and hashes ahead of the extraction; it has ended when this returns or raises.

    Raises :class:`LayerError` when the stream is not a valid (compressed) tar, when an entry
    is refused or cannot be applied. ``dest`` is then left half-filled: the caller (the image
    store) owns it and removes the whole directory.
    """
    try:
        root_fd = os.open(dest, _PATH_DIR)
    except OSError as e:
        raise LayerError(f"apply layer: open {dest}: {_why(e)}") from e
    pump = _Pump(stream)
    recorder = TarSplitRecorder(tar_split) if tar_split is not None else None
    tar_stream = _TarStream(pump, recorder)
    applier = _Applier(root_fd, tar_stream)
    try:
        try:
            tf = _open_tar(tar_stream)
        except tarfile.ReadError as e:
            if tar_stream.tell() == 0 and not tar_stream.read(1):
                # An empty stream is an empty layer for Go's archive/tar, so for Docker too.
                if recorder is not None:
                    recorder.close()
                return AppliedLayer(diff_id=pump.digest(), size=0)
            raise LayerError(f"apply layer: not a tar stream: {e}") from e
        with tf:
            while True:
                try:
                    member = tf.next()
                except tarfile.TarError as e:
                    raise LayerError(f"apply layer: invalid tar stream: {e}") from e
                if member is None:
                    break
                if recorder is not None:
                    recorder.member(member, tar_stream)
                applier.apply(tf, member)
                # tarfile keeps every member for random access we never use; memory would
                # grow with the number of entries. (An attribute its stubs do not declare.)
                tf.members.clear()  # type: ignore[attr-defined]
        # Whatever follows the end-of-archive blocks is part of the DiffID too.
        tar_stream.drain()
        applier.finish()
        if recorder is not None:
            recorder.close()
        return AppliedLayer(diff_id=pump.digest(), size=applier.size)
    finally:
        pump.close()
        applier.close()
        os.close(root_fd)


# --- the stream: decompression and hashing ---
#
#   caller's stream --read--> [ _Pump thread: decompress, sha256 ] --queue of 1 MiB chunks-->
#       _TarStream (read / tell / forward seek) --> tarfile headers, and file data written
#       straight from the chunk buffers to the new files
#
# zlib, bz2, lzma, zstd and sha256 release the GIL while they work, so decompression and
# hashing overlap with the (Python) tar parsing and the file system calls. The queue is
# bounded: at most _QUEUE_CHUNKS MiB are ahead of the extraction.

_QUEUE_CHUNKS = 8


def _open_tar(stream: _TarStream) -> tarfile.TarFile:
    # Mode "r:" (not the "r|" stream mode) so tarfile reads through our buffer without its
    # own copying one; it only reads, tells and seeks forward, plus a one-byte step back
    # that _TarStream keeps room for. The cast: tarfile's stub asks for a full file type.
    return tarfile.open(
        fileobj=cast(BinaryIO, stream),
        mode="r:",
        tarinfo=_StrictTarInfo,
        errors="surrogateescape",
    )


class Prefixed:
    """``stream`` with the bytes already read to sniff its compression put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            data = self._head + self._rest.read()
            self._head = b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


def _decompressed(stream: BinaryIO) -> tuple[_Reader, str, tuple[type[BaseException], ...]]:
    """Sniff the compression; return a reader of the tar bytes, its name and its errors."""
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    raw = Prefixed(head, stream)
    # The stdlib decoders report corrupt input as OSError or EOFError (truncated) as well as
    # their own error types; the underlying stream's read errors are OSError too.
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, lzma.LZMAError)
    # The decoders only call read() on their input; the cast says so to the type checker.
    fileobj = cast(BinaryIO, raw)
    if head.startswith(b"\x1f\x8b"):
        return _Gunzip(raw), "gzip", errors
    if head.startswith(b"BZh"):
        return bz2.BZ2File(fileobj), "bzip2", errors
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(fileobj), "xz", errors
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        try:
            import zstandard  # imported here: only zstd layers need it
        except ImportError:
            raise LayerError(
                "apply layer: the layer is zstd-compressed and the zstandard module is not "
                "installed (pip install zstandard)"
            ) from None
        reader = zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=True)
        return reader, "zstd", (*errors, zstandard.ZstdError)
    return raw, "tar", (OSError,)


class _Gunzip:
    """gzip (RFC 1952) decoded with zlib directly; zlib checks each member's CRC and length.

    gzip.GzipFile would do, but it runs Python code for every 8 KiB of input, holding the GIL
    that the extracting thread wants: this takes a third off a typical apply. Members may be
    concatenated (pigz and others write several), with NUL padding between them, as gzip(1)
    accepts.
    """

    _INPUT = 256 * 1024

    def __init__(self, raw: _Reader) -> None:
        self._raw = raw
        self._zlib = zlib.decompressobj(wbits=31)  # 16 + 15: gzip wrapper, 32 KiB window
        self._input = b""
        self._between = False  # True after a member's end, until the next one starts

    def read(self, size: int = -1, /) -> bytes:
        while True:
            if not self._input:
                self._input = self._raw.read(self._INPUT)
                if not self._input:
                    if self._between:
                        return b""
                    raise EOFError("gzip stream ends inside a member")
            if self._between:
                self._input = self._input.lstrip(b"\0")
                if not self._input:
                    continue
                self._zlib = zlib.decompressobj(wbits=31)
                self._between = False
            # max_length bounds the output, whatever the compression ratio (a "zip bomb").
            out = self._zlib.decompress(self._input, size if size > 0 else CHUNK)
            if self._zlib.eof:
                self._input = self._zlib.unused_data
                self._between = True
            else:
                self._input = self._zlib.unconsumed_tail
            if out:
                return out


class _Pump:
    """A thread that turns the caller's stream into hashed chunks of tar bytes.

    Protocol: the thread puts ``bytes`` chunks on the queue, then ``b""`` at the end of the
    stream, or the exception that stopped it. :meth:`close` sets ``_stop`` and empties the
    queue, so a thread blocked on a full queue wakes up, sees the flag and ends; close then
    joins it, so nothing reads the caller's stream after apply_layer is done with it.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="minidock-layer-read")
        self._thread.start()

    def _run(self) -> None:
        try:
            # Sniffing reads the stream too, so it happens here, not in the caller.
            try:
                reader, kind, errors = _decompressed(self._stream)
            except OSError as e:
                raise LayerError(f"apply layer: read layer stream: {e}") from e
            while not self._stop.is_set():
                try:
                    data = reader.read(CHUNK)
                except errors as e:
                    raise LayerError(f"apply layer: read {kind} stream: {e}") from e
                self._sha.update(data)
                self._put(data)
                if not data:
                    return
        except BaseException as e:  # handed to the extracting thread, which raises it
            self._put(e)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_chunk(self) -> bytes:
        """The next chunk of tar bytes; b"" at the end of the stream."""
        if self._done:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
        return item

    def digest(self) -> str:
        # Only meaningful once next_chunk returned b"": the thread has hashed everything.
        return "sha256:" + self._sha.hexdigest()

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)


class _TarStream:
    """The tar bytes with the file interface tarfile's "r:" mode needs: read, tell, seek.

    Seeking goes forward only (the stream cannot go back), except within the last
    ``_BEHIND`` bytes read: tarfile checks for a truncated member by stepping one byte
    back and reading it.
    """

    _BEHIND = tarfile.BLOCKSIZE

    def __init__(self, pump: _Pump, tap: TarSplitRecorder | None = None) -> None:
        self._pump = pump
        self._tap = tap
        self._buf = b""
        self._pos = 0  # read position in _buf
        self._base = 0  # stream offset of _buf[0]

    def _refill(self) -> bool:
        # Called only once _buf is used up (_pos == len(_buf)).
        if self._tap is not None:
            # The whole buffer has been consumed: hand its non-content bytes to the
            # recorder before they are dropped.
            self._tap.passed(self._buf, self._base, len(self._buf))
        data = self._pump.next_chunk()
        if not data:
            return False
        keep = self._buf[max(0, self._pos - self._BEHIND) : self._pos]
        self._base += self._pos - len(keep)
        self._buf = keep + data if keep else data
        self._pos = len(keep)
        return True

    def tell(self) -> int:
        return self._base + self._pos

    def consumed(self) -> tuple[bytes, int, int]:
        """The current buffer, the stream offset of its first byte and how much was read."""
        return self._buf, self._base, self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset < self._base:
            # Only a tarfile that changed how it reads could get here.
            raise LayerError(f"apply layer: tar reader seeks back to {offset}, behind the stream")
        while offset > self._base + len(self._buf):
            self._pos = len(self._buf)
            if not self._refill():
                break
        self._pos = min(offset - self._base, len(self._buf))
        return self.tell()

    def read(self, size: int = -1, /) -> bytes:
        end = self._pos + size
        if size >= 0 and end <= len(self._buf):
            data = self._buf[self._pos : end]
            self._pos = end
            return data
        parts = [self._buf[self._pos :]]
        need = size - len(parts[0]) if size >= 0 else -1
        self._pos = len(self._buf)
        while need != 0 and self._refill():
            take = len(self._buf) - self._pos if need < 0 else min(need, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            if need > 0:
                need -= take
        return b"".join(parts)

    def copy_to(self, fd: int, size: int) -> int:
        """Write the next ``size`` bytes to ``fd`` from the chunk buffers; returns bytes written,
        fewer only if the stream ended."""
        done = 0
        while done < size:
            if self._pos == len(self._buf) and not self._refill():
                break
            take = min(size - done, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos : self._pos + take]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += take
            done += take
        return done

    def drain(self) -> None:
        self._pos = len(self._buf)
        while self._refill():
            self._pos = len(self._buf)


# --- tar-split: recording the stream while it is applied ---
#
# Docker keeps, for every layer, layerdb/sha256/<chain>/tar-split.json.gz: gzip-compressed
# JSON lines (vbatts/tar-split, tar/storage/entry.go), one per entry, in stream order:
#
#   {"type":2,"payload":"<base64 of raw bytes>","position":0}        a segment: headers
#                                                                    (PAX, GNU long names),
#                                                                    padding, end blocks
#   {"type":1,"name":"etc/passwd","size":1234,"payload":null,"position":1}
#                                                                    a file: its content is
#                                                                    read back from diff/
#
# Concatenating the segments and the named files' contents gives the original stream.
# "position" numbers the entries; "size" is omitted when 0 and "name_raw" (base64) replaces
# "name" when the name is not UTF-8, as Go's encoder writes them. Docker puts a crc64 of the
# content in a file entry's payload; Python has no fast crc64, so minidock writes null and
# relies on the size check per file and the sha256 (DiffID) of the whole rebuilt stream.
#
# Only content that apply_layer writes unchanged to a regular file at the entry's name is
# left out of the segments. Everything else stays in segments: a whiteout's data (it becomes
# a 0/0 device), a sparse file's map and data, data a non-regular entry claims. Every header
# gets a file entry, as in Docker; all but those of written files have size 0.
#
# The recorder sees the bytes through _TarStream: it keeps ``_mark``, the stream offset up
# to which every byte is accounted for. When a buffer is about to be dropped (a refill) and
# when a member is announced, the bytes from _mark to what has been read are a segment;
# announcing a written file moves _mark past its content, which is therefore never copied.
# tarfile reads a member's headers before its data, so a file is always announced before
# its first content byte is read.

_SEGMENT_MAX = 1 << 20  # split huge segments (trailing junk, sparse data) into entries
_LINES_MAX = 1 << 16  # characters of JSON buffered before they go to the compressor


class TarSplitRecorder:
    """Writes a tar-split record (gzip-compressed JSON lines) to ``out`` as a stream passes."""

    def __init__(self, out: BinaryIO, level: int = 6) -> None:
        self._out = out
        self._gz = zlib.compressobj(level, zlib.DEFLATED, 31)  # 16 + 15: a gzip wrapper
        self._lines: list[str] = []
        self._line_chars = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._mark = 0
        self._position = 0
        self._closed = False

    def passed(self, buf: bytes, base: int, upto: int) -> None:
        """``buf[:upto]`` (stream offset ``base``) has been read: keep what is not content."""
        end = base + upto
        if self._mark >= end:
            return
        if self._mark < base:
            # Bytes went by unseen: only a change in how _TarStream drops buffers can do it.
            raise LayerError(f"apply layer: tar-split lost stream bytes at offset {self._mark}")
        self._pending.append(buf[self._mark - base : upto])
        self._pending_size += end - self._mark
        self._mark = end
        if self._pending_size >= _SEGMENT_MAX:
            self._flush_segment()

    def member(self, m: tarfile.TarInfo, stream: _TarStream) -> None:
        """Record a member whose headers have just been read (nothing of its data yet)."""
        self.passed(*stream.consumed())
        self._flush_segment()
        path = clean_name(m.name) if "\0" not in m.name else None
        written = (
            path is not None
            and path != ""
            and m.type in _REGULAR
            and not m.issparse()
            and m.size > 0
            and not path.rpartition("/")[2].startswith(_WHITEOUT)
            and stream.tell() == m.offset_data
        )
        size = m.size if written else 0
        self._file_entry(m.name, size)
        if written:
            self._mark = m.offset_data + m.size

    def _file_entry(self, name: str, size: int) -> None:
        raw = name.encode("utf-8", "surrogateescape")
        try:
            raw.decode("utf-8")
            field = '"name":' + json.dumps(name, ensure_ascii=False)
        except UnicodeDecodeError:
            field = '"name_raw":"' + base64.b64encode(raw).decode() + '"'
        sized = f',"size":{size}' if size else ""
        self._line(f'{{"type":1,{field}{sized},"payload":null,"position":{self._position}}}\n')

    def _flush_segment(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._pending_size = 0
        payload = base64.b64encode(data).decode()
        self._line(f'{{"type":2,"payload":"{payload}","position":{self._position}}}\n')

    def _line(self, line: str) -> None:
        self._position += 1
        self._lines.append(line)
        self._line_chars += len(line)
        if self._line_chars >= _LINES_MAX:
            self._flush_lines()

    def _flush_lines(self) -> None:
        if self._lines:
            # Names may hold lone surrogates only via name_raw, so the text is valid UTF-8.
            self._out.write(self._gz.compress("".join(self._lines).encode()))
            self._lines.clear()
            self._line_chars = 0

    def close(self) -> None:
        """Write what is left (the end blocks and anything after them) and end the gzip."""
        if self._closed:
            return
        self._closed = True
        self._flush_segment()
        self._flush_lines()
        self._out.write(self._gz.flush())


# Undocumented (so untyped) but present since Python 3.2. A zero block (EOFHeaderError) and
# a clean end of stream (EmptyHeaderError) are not among them.
_DAMAGED_HEADER: tuple[type[Exception], ...] = (
    tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]
    tarfile.InvalidHeaderError,  # type: ignore[attr-defined]
)


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo that turns a damaged header into an error instead of an end of archive.

    After the first member, tarfile treats a header with a bad checksum or a header cut short
    by the end of the stream as the end of the archive, and would silently apply a truncated
    layer. Go's archive/tar (so Docker) fails on both; only a zero block or a clean end of
    stream at a header boundary ends an archive.
    """

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return super().fromtarfile(tarfile)
        except _DAMAGED_HEADER as e:
            raise LayerError(f"apply layer: invalid tar header: {e}") from e


# --- the filesystem side ---


def clean_name(name: str) -> str | None:
    """Lexically clean an entry name relative to the root; None if ``..`` climbs out."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/".join(parts)


def _q(name: str) -> str:
    """A name quoted for a one-line message (JSON escapes keep control characters out)."""
    return json.dumps(name)


def _why(e: OSError) -> str:
    # The message names the action and entry already; only the kernel's reason is added
    # (OSErrors from minidock.linux carry their own action in strerror).
    return os.strerror(e.errno) if e.errno else str(e)


def _action(member: tarfile.TarInfo) -> str:
    base = member.name.rstrip("/").rpartition("/")[2]
    if base == _OPAQUE:
        return "mark opaque directory"
    if base.startswith(_WHITEOUT):
        return "create whiteout"
    if member.type in _REGULAR:
        return "write file"
    return _ACTIONS.get(member.type, "apply entry")


class _Applier:
    """The state of one apply: the root, a cache of directory fds, deferred directory times."""

    def __init__(self, root_fd: int, stream: _TarStream) -> None:
        self._root = root_fd
        self._stream = stream
        # Cleaned directory path -> fd of that directory, resolved in-root; "" is the root.
        self._dirs: OrderedDict[str, int] = OrderedDict()
        # Fds dropped from the cache are closed only after the current entry, because the
        # entry may still be using one (see _forget_dirs).
        self._retired: list[int] = []
        self._dir_times: dict[str, float] = {}
        self.size = 0

    # -- entries --

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = clean_name(member.name) if "\0" not in member.name else None
        if path is None:
            raise LayerError(f"apply layer: refusing {_q(member.name)}: path escapes the layer")
        try:
            self._apply(tf, member, path)
        except OSError as e:
            raise LayerError(f"apply layer: {_action(member)} {_q(member.name)}: {_why(e)}") from e
        except (ValueError, OverflowError) as e:
            # Out-of-range numbers (mtime, device numbers) that the tar header allowed.
            raise LayerError(f"apply layer: {_action(member)} {_q(member.name)}: {e}") from e
        finally:
            if self._retired:
                for fd in self._retired:
                    os.close(fd)
                self._retired.clear()

    def _apply(self, tf: tarfile.TarFile, m: tarfile.TarInfo, path: str) -> None:
        if not path:
            # The root entry ("./"): the diff dir's own metadata stays as the store made it.
            if m.type == tarfile.DIRTYPE:
                return
            raise LayerError(f"apply layer: refusing {_q(m.name)}: it would replace the layer root")
        head, _, base = path.rpartition("/")
        if base.startswith(_WHITEOUT):
            self._whiteout(m, head, base)
            return
        parent = self._dir(head)
        kind = m.type
        if kind in _REGULAR:
            self._file(tf, m, parent, path, base)
        elif kind == tarfile.DIRTYPE:
            self._mkdir(m, parent, path, base)
        elif kind == tarfile.SYMTYPE:
            self._symlink(m, parent, path, head, base)
        elif kind == tarfile.LNKTYPE:
            self._hardlink(m, parent, path, base)
        elif kind in _NODES:
            self._node(m, parent, path, base)
        else:
            raise LayerError(
                f"apply layer: refusing {_q(m.name)}: unsupported tar entry type {kind!r}"
            )

    def _file(
        self, tf: tarfile.TarFile, m: tarfile.TarInfo, parent: int, path: str, base: str
    ) -> None:
        try:
            fd = os.open(base, _NEW_FILE, 0o600, dir_fd=parent)
        except FileExistsError:
            self._make_room(parent, path, base, keep_dir=False)
            fd = os.open(base, _NEW_FILE, 0o600, dir_fd=parent)
        try:
            if m.size:
                self._copy(tf, m, fd)
            # chown clears setuid/setgid, so the mode goes after it.
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            cap = m.pax_headers.get(_XATTR_PAX + _KEPT_XATTR) if m.pax_headers else None
            if cap is not None:
                # tarfile decoded the binary value with surrogateescape; undo that.
                os.setxattr(fd, _KEPT_XATTR, cap.encode("utf-8", "surrogateescape"))
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        self.size += m.size

    def _copy(self, tf: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> None:
        if not m.issparse() and self._stream.tell() == m.offset_data:
            # The common case: the data follows the header; write it from the chunk buffers.
            written = self._stream.copy_to(fd, m.size)
        else:
            # Sparse files (tarfile rebuilds them from their map), or a position we did not
            # expect: let tarfile's reader do it.
            written = 0
            src = tf.extractfile(m)
            assert src is not None  # a regular member always has a data reader
            try:
                while chunk := src.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    written += len(chunk)
            except tarfile.TarError as e:
                raise LayerError(f"apply layer: write file {_q(m.name)}: {e}") from e
        if written != m.size:
            raise LayerError(f"apply layer: write file {_q(m.name)}: unexpected end of data")

    def _mkdir(self, m: tarfile.TarInfo, parent: int, path: str, base: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=parent)
        except FileExistsError:
            if not self._make_room(parent, path, base, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=parent)
        with ExitStack() as undo:
            fd = os.open(base, _OPEN_DIR, dir_fd=parent)
            undo.callback(os.close, fd)
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            undo.pop_all()
        # The next entries are most likely this directory's children: keep the fd.
        self._cache(path, fd)
        self._dir_times[path] = m.mtime

    def _symlink(self, m: tarfile.TarInfo, parent: int, path: str, head: str, base: str) -> None:
        target = m.linkname
        # Docker refuses a relative target that climbs out of the root from where the link
        # is. Resolution here is in-root either way; refusing keeps the layer the same as
        # Docker's for host-side tools that do not resolve in-root.
        if not target.startswith("/") and clean_name(f"{head}/{target}") is None:
            raise LayerError(
                f"apply layer: refusing symlink {_q(m.name)} -> {_q(target)}: "
                "target escapes the layer"
            )
        try:
            os.symlink(target, base, dir_fd=parent)
        except FileExistsError:
            self._make_room(parent, path, base, keep_dir=False)
            os.symlink(target, base, dir_fd=parent)
        os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
        self.size += len(os.fsencode(target))

    def _hardlink(self, m: tarfile.TarInfo, parent: int, path: str, base: str) -> None:
        target = clean_name(m.linkname) if "\0" not in m.linkname else None
        if not target:
            raise LayerError(
                f"apply layer: refusing hardlink {_q(m.name)} -> {_q(m.linkname)}: "
                "target is outside the layer"
            )
        thead, _, tbase = target.rpartition("/")
        tparent = self._dir(thead, create=False)
        # linkat without AT_SYMLINK_FOLLOW: a symlink target gets linked itself, never
        # followed, so only inodes already inside the layer can be reached. The metadata
        # is the target's, which the tar gave when it stored the target.
        try:
            os.link(tbase, base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            self._make_room(parent, path, base, keep_dir=False)
            os.link(tbase, base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)

    def _node(self, m: tarfile.TarInfo, parent: int, path: str, base: str) -> None:
        kind = _NODES[m.type]
        dev = os.makedev(m.devmajor, m.devminor) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(base, kind | 0o600, dev, dir_fd=parent)
        except FileExistsError:
            self._make_room(parent, path, base, keep_dir=False)
            os.mknod(base, kind | 0o600, dev, dir_fd=parent)
        os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        # Opening a device or FIFO for I/O can block or have side effects, and fchmod does
        # not work on an O_PATH fd; chmod through /proc/self/fd/N of that O_PATH fd reaches
        # exactly the node opened without following a symlink.
        fd = os.open(base, _PATH_NODE, dir_fd=parent)
        try:
            os.chmod(f"/proc/self/fd/{fd}", m.mode & 0o7777)
        finally:
            os.close(fd)
        os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)

    def _whiteout(self, m: tarfile.TarInfo, head: str, base: str) -> None:
        if base == _OPAQUE:
            fd = os.open(".", _OPEN_DIR, dir_fd=self._dir(head))
            try:
                os.setxattr(fd, _OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        name = base[len(_WHITEOUT) :]
        if name in ("", ".", ".."):
            raise LayerError(f"apply layer: refusing {_q(m.name)}: invalid whiteout name")
        parent = self._dir(head)
        # A whiteout hides a lower layer's entry; one for an entry of this same layer is
        # invalid (image-spec), and mknod's EEXIST says so, as in Docker.
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)

    # -- replacing existing entries --

    def _make_room(self, parent: int, path: str, base: str, keep_dir: bool) -> bool:
        """Remove what is at ``base`` so a new entry can take it; True if a dir was kept."""
        st = os.lstat(base, dir_fd=parent)
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self.size -= _remove_tree(parent, base)
            below = path + "/"
            for gone in [p for p in self._dir_times if p == path or p.startswith(below)]:
                del self._dir_times[gone]
            self._forget_dirs()
            return False
        os.unlink(base, dir_fd=parent)
        if stat.S_ISLNK(st.st_mode):
            self.size -= st.st_size
            self._forget_dirs()
        elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            self.size -= st.st_size
        return False

    def _forget_dirs(self) -> None:
        # A cached fd stays bound to its directory inode, so once a directory or a symlink
        # is removed, any cached path that went through it (under whatever alias) may now
        # resolve elsewhere. Replacements are rare: drop the whole cache.
        self._retired.extend(self._dirs.values())
        self._dirs.clear()

    # -- directory fds --

    def _dir(self, path: str, create: bool = True) -> int:
        """An fd of the directory ``path`` (cleaned, relative to the root), resolved in-root.

        Missing directories are created (0755, owned by the applier) as Docker does for
        entries whose parents the tar does not list, unless ``create`` is False.
        """
        if not path:
            return self._root
        fd = self._dirs.get(path)
        if fd is not None:
            self._dirs.move_to_end(path)
            return fd
        try:
            fd = open_in_root(self._root, path, _PATH_DIR)
        except FileNotFoundError:
            if not create:
                raise
            fd = self._create_dir(path)
        self._cache(path, fd)
        return fd

    def _create_dir(self, path: str) -> int:
        head, _, base = path.rpartition("/")
        parent = self._dir(head)
        try:
            os.mkdir(base, 0o700, dir_fd=parent)
        except FileExistsError:
            # Most likely a dangling symlink: resolve it in-root and report what is missing.
            return open_in_root(self._root, path, _PATH_DIR)
        with ExitStack() as undo:
            fd = os.open(base, _OPEN_DIR, dir_fd=parent)
            undo.callback(os.close, fd)
            os.fchmod(fd, 0o755)
            undo.pop_all()
        return fd

    def _cache(self, path: str, fd: int) -> None:
        old = self._dirs.pop(path, None)
        if old is not None:
            self._retired.append(old)
        self._dirs[path] = fd
        if len(self._dirs) > _DIR_CACHE_SIZE:
            self._retired.append(self._dirs.popitem(last=False)[1])

    def finish(self) -> None:
        """Set directory times, now that nothing more is created inside them."""
        for path, mtime in self._dir_times.items():
            head, _, base = path.rpartition("/")
            try:
                parent = self._dir(head, create=False)
                os.utime(base, (mtime, mtime), dir_fd=parent, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue  # replaced by a later entry of the same layer
            except OSError as e:
                raise LayerError(f"apply layer: set times of {_q(path)}: {_why(e)}") from e
            finally:
                for fd in self._retired:
                    os.close(fd)
                self._retired.clear()

    def close(self) -> None:
        for fd in (*self._dirs.values(), *self._retired):
            os.close(fd)
        self._dirs.clear()
        self._retired.clear()


def _remove_tree(parent: int, name: str) -> int:
    """Remove directory ``name`` and everything below it without following symlinks.

    Returns the bytes of regular files and symlinks removed (for the layer size).
    """
    freed = 0
    fd = os.open(name, _OPEN_DIR, dir_fd=parent)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                freed += _remove_tree(fd, entry.name)
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):
                freed += st.st_size
            os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
    return freed
