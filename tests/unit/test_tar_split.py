"""tar-split: apply a layer while recording, rebuild the tar from the record + diff/, compare.

The rebuilt stream must equal the original byte for byte (so its sha256, the DiffID, too) for
every tar shape a layer can have: USTAR, GNU long names, PAX headers, hard and symbolic links,
whiteouts, big files across the reader's 1 MiB chunks, data after the end blocks, compression.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from minidock.errors import LayerError
from minidock.image.export import assemble_tar_split, tar_directory
from minidock.image.layer import CHUNK, apply_layer

UID, GID = os.getuid(), os.getgid()


def build(fmt: int, entries: list[tuple[str, bytes, str, bytes]], **kw: object) -> bytes:
    """A tar of (name, type, linkname, data) entries in ``fmt``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:  # type: ignore[call-overload]
        for name, kind, link, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.uid, info.gid = UID, GID
            info.mtime = 1_600_000_000
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def roundtrip(tmp_path: Path, data: bytes, source: bytes | None = None) -> tuple[bytes, list[dict]]:
    """Apply ``source`` (default ``data``) with a tar-split; return the rebuilt tar and the
    record's entries."""
    dest = tmp_path / f"layer-{len(list(tmp_path.iterdir()))}"
    dest.mkdir()
    split = io.BytesIO()
    applied = apply_layer(io.BytesIO(source if source is not None else data), str(dest),
                          tar_split=split)
    assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    raw = gzip.decompress(split.getvalue())
    entries = [json.loads(line) for line in raw.splitlines()]
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    try:
        out = b"".join(assemble_tar_split(io.BytesIO(raw), fd))
    finally:
        os.close(fd)
    return out, entries


REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
LONG = "/".join(["d" * 60] * 4) + "/file-with-a-long-name.txt"
BASIC = [
    ("etc", DIR, "", b""),
    ("etc/passwd", REG, "", b"root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/empty", REG, "", b""),
    ("etc/block", REG, "", b"x" * 512),
    ("etc/link", SYM, "passwd", b""),
    ("etc/hard", LNK, "etc/passwd", b""),
    ("bin", DIR, "", b""),
    ("bin/sh", REG, "", os.urandom(70_000)),
]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_formats_round_trip(tmp_path: Path, fmt: int) -> None:
    entries = list(BASIC)
    if fmt != tarfile.USTAR_FORMAT:
        entries += [("d" * 60, DIR, "", b"")] + [
            ("/".join(["d" * 60] * i), DIR, "", b"") for i in range(2, 5)] + [
            (LONG, REG, "", b"long"), ("etc/long-link", SYM, "../" + LONG, b"")]
    data = build(fmt, entries)
    out, split = roundtrip(tmp_path, data)
    assert out == data
    files = [e for e in split if e["type"] == 1]
    assert len(files) == len(entries)  # one file entry per header, as Docker's
    sized = {e["name"]: e["size"] for e in files if e.get("size")}
    assert sized == {n: len(d) for n, k, _, d in entries if k == REG and d}


def test_pax_non_ascii_and_xattr_round_trip(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, pax in [("café/naïve.txt", {}), ("caps", {"SCHILY.xattr.user.x": "1"}),
                          ("mtime", {"mtime": "1600000000.123456789"})]:
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.size = UID, GID, 3
            info.pax_headers = pax
            tf.addfile(info, io.BytesIO(b"abc"))
    data = buf.getvalue()
    out, split = roundtrip(tmp_path, data)
    assert out == data
    assert any(e.get("name") == "café/naïve.txt" for e in split)


def test_non_utf8_name_is_name_raw(tmp_path: Path) -> None:
    info = tarfile.TarInfo(b"bad-\xff-name".decode("utf-8", "surrogateescape"))
    info.uid, info.gid, info.size = UID, GID, 2
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT,
                      errors="surrogateescape") as tf:
        tf.addfile(info, io.BytesIO(b"hi"))
    out, split = roundtrip(tmp_path, buf.getvalue())
    assert out == buf.getvalue()
    assert any(e.get("name_raw") for e in split if e["type"] == 1)


def test_chunk_boundaries_and_big_files(tmp_path: Path) -> None:
    # Small files across the 1 MiB chunks of the reader, then files bigger than a chunk.
    entries = [(f"small/{i:05d}", REG, "", os.urandom(i % 1500)) for i in range(2500)]
    entries += [("big1", REG, "", os.urandom(CHUNK * 2 + 123)), ("big2", REG, "", b"\0" * CHUNK)]
    data = build(tarfile.PAX_FORMAT, [("small", DIR, "", b""), *entries])
    out, _ = roundtrip(tmp_path, data)
    assert out == data


@pytest.mark.parametrize("tail", [b"", b"\0" * 10240, b"\0" * 1024 + b"trailing junk" * 1000,
                                  os.urandom(3 * CHUNK)])
def test_trailing_data_round_trips(tmp_path: Path, tail: bytes) -> None:
    data = build(tarfile.USTAR_FORMAT, BASIC) + tail
    out, _ = roundtrip(tmp_path, data)
    assert out == data


def test_no_end_blocks(tmp_path: Path) -> None:
    data = build(tarfile.USTAR_FORMAT, BASIC)
    data = data[: len(data) - 1024].rstrip(b"\0")
    data += b"\0" * (-len(data) % 512)
    out, _ = roundtrip(tmp_path, data)
    assert out == data


def test_compressed_input_rebuilds_the_uncompressed_tar(tmp_path: Path) -> None:
    data = build(tarfile.GNU_FORMAT, BASIC)
    out, _ = roundtrip(tmp_path, data, source=gzip.compress(data))
    assert out == data


def test_empty_stream(tmp_path: Path) -> None:
    out, split = roundtrip(tmp_path, b"")
    assert out == b"" and split == []


def test_whiteout_devices_come_back_as_written(tmp_path: Path) -> None:
    # A whiteout is a 0/0 character device, which Linux >= 5.8 lets anyone create (no
    # CAP_MKNOD); the opaque marker's trusted.* xattr needs root:
    # tests/integration/test_tar_split_whiteouts.py has both.
    entries = [("a", DIR, "", b""), ("a/.wh.gone", REG, "", b""), (".wh.top", REG, "", b""),
               ("a/kept", REG, "", b"kept")]
    data = build(tarfile.PAX_FORMAT, entries)
    out, split = roundtrip(tmp_path, data)
    assert out == data
    st = os.lstat(tmp_path / "layer-0" / "a" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    # The markers' bytes are segments: their file entries have no size, nothing is read back.
    assert all(not e.get("size") for e in split if ".wh." in e.get("name", ""))


def _apply(tmp_path: Path, data: bytes) -> tuple[Path, bytes]:
    dest = tmp_path / "layer"
    dest.mkdir()
    split = io.BytesIO()
    apply_layer(io.BytesIO(data), str(dest), tar_split=split)
    return dest, gzip.decompress(split.getvalue())


def _rebuild(dest: Path, raw: bytes) -> bytes:
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    try:
        return b"".join(assemble_tar_split(io.BytesIO(raw), fd))
    finally:
        os.close(fd)


@pytest.mark.parametrize("change", [
    lambda d: (d / "etc/passwd").write_bytes(b"changed"),
    lambda d: (d / "etc/passwd").unlink(),
    lambda d: ((d / "etc/passwd").unlink(), (d / "etc/passwd").symlink_to("/etc/shadow")),
])
def test_changed_diff_is_an_error(tmp_path: Path, change: Callable[[Path], object]) -> None:
    dest, raw = _apply(tmp_path, build(tarfile.USTAR_FORMAT, BASIC))
    change(dest)
    with pytest.raises(LayerError, match="etc/passwd"):
        _rebuild(dest, raw)


def test_invalid_record_is_an_error(tmp_path: Path) -> None:
    dest, _ = _apply(tmp_path, build(tarfile.USTAR_FORMAT, BASIC))
    with pytest.raises(LayerError, match="line 1"):
        _rebuild(dest, b'{"type":7,"position":0}\n')
    with pytest.raises(LayerError, match="invalid file name"):
        _rebuild(dest, b'{"type":1,"name":"../../etc/passwd","size":3,"position":0}\n')


def test_tar_directory_is_deterministic_and_reapplies(tmp_path: Path) -> None:
    dest, _ = _apply(tmp_path, build(tarfile.PAX_FORMAT, BASIC))
    first = b"".join(tar_directory(str(dest), overlay_whiteouts=True))
    assert first == b"".join(tar_directory(str(dest), overlay_whiteouts=True))
    with tarfile.open(fileobj=io.BytesIO(first)) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["etc/hard"].islnk() or members["etc/passwd"].islnk()
    assert members["etc/link"].linkname == "passwd"
    assert members["bin/sh"].size == 70_000
    again = tmp_path / "again"
    again.mkdir()
    apply_layer(io.BytesIO(first), str(again))
    assert (again / "bin/sh").read_bytes() == (dest / "bin/sh").read_bytes()
