"""apply_layer without privileges: entries, metadata, Docker's replace rules, DiffID, formats.

Every entry is owned by the running user, so nothing here needs root; ownership by other
users, devices, whiteouts and the attack classes are in tests/integration/test_layer_attacks.py,
sparse files (which only GNU tar writes here) in tests/integration/test_layer_gnu_tar.py.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import sys
import tarfile
import threading
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from tarbuild import (
    MTIME,
    Entry,
    d,
    entry,
    hard,
    make_tar,
    resolver,  # noqa: F401  (the autouse fixture: both resolvers)
    sym,
)

from minidock.errors import LayerError
from minidock.image.layer import CHUNK, AppliedLayer, apply_layer

UID, GID = os.getuid(), os.getgid()


def f(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Entry:
    return entry(name, tarfile.REGTYPE, data=data, mode=mode, **kw)  # type: ignore[arg-type]


def apply(tmp_path: Path, raw: bytes) -> tuple[AppliedLayer, Path]:
    """Apply ``raw`` into a fresh, empty directory under tmp_path."""
    n = 0
    while (tmp_path / f"diff{n}").exists():
        n += 1
    dest = tmp_path / f"diff{n}"
    dest.mkdir()
    return apply_layer(io.BytesIO(raw), str(dest)), dest


def sha(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# --- entries and metadata ---


def test_entries_and_metadata(tmp_path: Path) -> None:
    raw = make_tar(
        d("bin", mode=0o755, mtime=1000),
        f("bin/tool", b"#!/bin/sh\n", mode=0o4755, mtime=2000),
        f("bin/sgid", b"x", mode=0o2750),
        d("tmp", mode=0o1777),
        d("private", mode=0o700),
        f("private/key", b"secret", mode=0o600),
        sym("bin/sh", "tool"),
        sym("abs", "/bin/tool"),
        hard("bin/tool2", "bin/tool"),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o640, mtime=3000),
    )
    layer, dest = apply(tmp_path, raw)
    assert (dest / "bin/tool").read_bytes() == b"#!/bin/sh\n"
    st = os.stat(dest / "bin/tool")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_mtime == 2000
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert stat.S_IMODE(os.stat(dest / "bin/sgid").st_mode) == 0o2750
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(dest / "private").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "private/key").st_mode) == 0o600
    # Directory times are set after their children were created.
    assert os.stat(dest / "bin").st_mtime == 1000
    assert os.readlink(dest / "bin/sh") == "tool"
    assert os.lstat(dest / "bin/sh").st_mtime == MTIME
    assert os.readlink(dest / "abs") == "/bin/tool"
    assert os.stat(dest / "bin/tool2").st_ino == st.st_ino
    assert st.st_nlink == 2
    fifo = os.lstat(dest / "run/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o640
    assert fifo.st_mtime == 3000
    # A parent the tar does not list is created 0755.
    assert stat.S_IMODE(os.stat(dest / "run").st_mode) == 0o755
    # Docker's size: regular files and symlink targets, hardlinks once.
    assert layer.size == len(b"#!/bin/sh\n") + 1 + len(b"secret") + len("tool") + len("/bin/tool")
    assert layer.diff_id == sha(raw)


def test_root_entry_and_cleaned_names(tmp_path: Path) -> None:
    raw = make_tar(
        d("./", mode=0o700, mtime=5),
        f("./a//b/./c", b"c"),
        f("/abs/file", b"abs"),
        f("x/../y", b"y"),
    )
    _, dest = apply(tmp_path, raw)
    # The layer root keeps the mode and time the store gave it (Docker skips ".").
    assert stat.S_IMODE(os.stat(dest).st_mode) != 0o700 or os.stat(dest).st_mtime != 5
    assert (dest / "a/b/c").read_bytes() == b"c"
    assert (dest / "abs/file").read_bytes() == b"abs"
    assert (dest / "y").read_bytes() == b"y"
    assert not (dest / "x").exists()


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/../x", "./../x", "a/b/../../../x"])
def test_names_that_climb_out_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(LayerError, match=r'apply layer: refusing ".*": path escapes the layer'):
        apply(tmp_path, make_tar(f(name, b"evil")))
    assert not (tmp_path / "x").exists()


def test_refusing_the_root_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="layer root"):
        apply(tmp_path, make_tar(f("./", b"x")))


def test_large_file_spans_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 12345)
    raw = make_tar(f("small", b"s"), f("big", data), f("after", b"a"))
    layer, dest = apply(tmp_path, raw)
    assert (dest / "big").read_bytes() == data
    assert (dest / "after").read_bytes() == b"a"
    assert layer.size == len(data) + 2


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_formats_and_long_names(tmp_path: Path, fmt: int) -> None:
    long_dir = "/".join(["d" * 60] * 3)
    entries = [f(f"{long_dir}/file", b"deep")]
    if fmt != tarfile.USTAR_FORMAT:  # ustar cannot store a 50-char link target + long name
        entries.append(sym("l" * 120, "t" * 150))
    raw = make_tar(*entries, fmt=fmt)
    _, dest = apply(tmp_path, raw)
    assert (dest / long_dir / "file").read_bytes() == b"deep"
    if fmt != tarfile.USTAR_FORMAT:
        assert os.readlink(dest / ("l" * 120)) == "t" * 150


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    name = b"caf\xe9-\xff".decode("utf-8", "surrogateescape")
    info, data = f(name, b"bytes")
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tf:
        tf.addfile(info, io.BytesIO(data))
    _, dest = apply(tmp_path, buf.getvalue())
    assert os.listdir(os.fsencode(dest)) == [b"caf\xe9-\xff"]


def test_only_security_capability_xattr_is_kept(tmp_path: Path) -> None:
    raw = make_tar(
        f("file", b"x", pax={"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.x": "y"})
    )
    _, dest = apply(tmp_path, raw)
    # (An LSM may add its own security.* label; only the tar's must be missing.)
    assert not {"user.note", "trusted.x"} & set(os.listxattr(dest / "file"))


# --- Docker's replace rules ---


def test_dir_over_dir_merges_metadata(tmp_path: Path) -> None:
    raw = make_tar(
        d("dir", mode=0o700, mtime=100),
        f("dir/kept", b"kept"),
        d("dir", mode=0o751, mtime=200),
        f("dir/new", b"new"),
    )
    _, dest = apply(tmp_path, raw)
    assert sorted(os.listdir(dest / "dir")) == ["kept", "new"]
    st = os.stat(dest / "dir")
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert st.st_mtime == 200


def test_file_replaces_dir_and_dir_replaces_file(tmp_path: Path) -> None:
    raw = make_tar(
        d("a", mtime=100),
        d("a/sub"),
        f("a/sub/deep", b"12345"),
        f("a", b"now a file", mode=0o640, mtime=300),
        f("b", b"was a file"),
        d("b", mode=0o711),
        f("b/inner", b"i"),
    )
    layer, dest = apply(tmp_path, raw)
    assert (dest / "a").read_bytes() == b"now a file"
    assert stat.S_IMODE(os.stat(dest / "a").st_mode) == 0o640
    assert os.stat(dest / "a").st_mtime == 300  # the old directory's time is not applied
    assert stat.S_IMODE(os.stat(dest / "b").st_mode) == 0o711
    assert (dest / "b/inner").read_bytes() == b"i"
    # The size counts what is left, as Docker measures the directory.
    assert layer.size == len(b"now a file") + 1


def test_later_entry_replaces_earlier_one(tmp_path: Path) -> None:
    raw = make_tar(
        f("f", b"first"),
        f("f", b"second!"),
        sym("s", "f"),
        f("s", b"file over symlink"),
        f("t", b"target"),
        sym("u", "t"),
        sym("u", "f"),
    )
    layer, dest = apply(tmp_path, raw)
    assert (dest / "f").read_bytes() == b"second!"
    assert not os.path.islink(dest / "s")
    assert (dest / "s").read_bytes() == b"file over symlink"
    assert (dest / "t").read_bytes() == b"target"  # the file was not written through "s"
    assert os.readlink(dest / "u") == "f"
    assert layer.size == len(b"second!") + len(b"file over symlink") + len(b"target") + 1


def test_directory_cache_follows_replacements(tmp_path: Path) -> None:
    raw = make_tar(
        d("a"),
        f("a/one", b"1"),
        d("b"),
        sym("a", "b"),  # "a" was a cached directory; now a symlink to b
        f("a/two", b"2"),
        d("y"),
        sym("x", "y"),
        f("x/three", b"3"),  # caches "x" -> the directory y
        f("y", b"y is a file now"),
        d("y"),  # a new, different directory y
        f("x/four", b"4"),  # must land in the new y
    )
    _, dest = apply(tmp_path, raw)
    assert os.readlink(dest / "a") == "b"
    assert (dest / "b/two").read_bytes() == b"2"
    assert sorted(os.listdir(dest / "y")) == ["four"]


def test_many_directories_exceed_the_cache(tmp_path: Path) -> None:
    entries = [d(f"dir{i}") for i in range(150)]
    # Revisit them out of order so cached fds are evicted and reopened.
    entries += [f(f"dir{(i * 37) % 150}/file{i}", str(i).encode()) for i in range(300)]
    _, dest = apply(tmp_path, make_tar(*entries))
    for i in range(300):
        assert (dest / f"dir{(i * 37) % 150}" / f"file{i}").read_bytes() == str(i).encode()


def test_symlinked_parent_is_resolved_inside_the_layer(tmp_path: Path) -> None:
    raw = make_tar(
        d("real"),
        sym("abs", "/real"),
        sym("up", "../../../.."),  # refused: climbs out from where it is
    )
    with pytest.raises(LayerError, match="target escapes the layer"):
        apply(tmp_path, raw)
    raw = make_tar(d("real"), sym("abs", "/real"), f("abs/file", b"in"))
    _, dest = apply(tmp_path, raw)
    assert (dest / "real/file").read_bytes() == b"in"


def test_hardlink_errors(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match=r'create hardlink "h": No such file'):
        apply(tmp_path, make_tar(hard("h", "missing")))
    with pytest.raises(LayerError, match="target is outside the layer"):
        apply(tmp_path, make_tar(hard("h", "../x")))
    with pytest.raises(LayerError, match="create hardlink"):
        apply(tmp_path, make_tar(d("dir"), hard("h", "dir")))


def test_unsupported_entry_type(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="unsupported tar entry type"):
        apply(tmp_path, make_tar(entry("weird", b"Z")))


# --- the stream: DiffID, compression, damage ---


def test_diff_id_covers_the_whole_uncompressed_stream(tmp_path: Path) -> None:
    raw = make_tar(f("a", b"hello"), d("b"))
    assert raw.endswith(b"\0" * 1024)  # tarfile pads with zero blocks to a full record
    layer, _ = apply(tmp_path, raw)
    assert layer.diff_id == sha(raw)
    # Bytes after the end-of-archive blocks are part of the stream, hence of the DiffID.
    padded = raw + b"\0" * 4096 + b"trailing"
    layer2, _ = apply(tmp_path, padded)
    assert layer2.diff_id == sha(padded)


@pytest.mark.parametrize(
    "compress",
    [
        pytest.param(gzip.compress, id="gzip"),
        pytest.param(bz2.compress, id="bzip2"),
        pytest.param(lzma.compress, id="xz"),
        pytest.param(
            lambda b: gzip.compress(b[:700]) + gzip.compress(b[700:]), id="gzip-2-members"
        ),
    ],
)
def test_compressed_layers(tmp_path: Path, compress: object) -> None:
    raw = make_tar(d("etc"), f("etc/os-release", b"ID=test\n" * 200), sym("os", "etc/os-release"))
    packed = compress(raw)  # type: ignore[operator]
    layer, dest = apply(tmp_path, packed)
    assert layer.diff_id == sha(raw)
    assert layer.diff_id != sha(packed)
    assert (dest / "etc/os-release").read_bytes() == b"ID=test\n" * 200


def test_gzip_members_padding_and_garbage(tmp_path: Path) -> None:
    raw = make_tar(f("a", b"A" * 5000), f("b", b"B" * 5000))
    # Several members (as pigz writes), an empty one, and NUL padding between and after.
    packed = (
        gzip.compress(raw[:3000])
        + gzip.compress(b"")
        + b"\0" * 100
        + gzip.compress(raw[3000:])
        + b"\0" * 10
    )
    layer, dest = apply(tmp_path, packed)
    assert layer.diff_id == sha(raw)
    assert (dest / "b").read_bytes() == b"B" * 5000
    with pytest.raises(LayerError, match="read gzip stream"):
        apply(tmp_path, gzip.compress(raw) + b"trailing garbage")
    corrupt = bytearray(gzip.compress(raw))
    corrupt[-6] ^= 0xFF  # the CRC-32 in the trailer
    with pytest.raises(LayerError, match="read gzip stream"):
        apply(tmp_path, bytes(corrupt))


def test_decompression_is_streamed(tmp_path: Path) -> None:
    # 64 MiB of zeros compress to ~64 KiB: memory must stay bounded by the chunk queue.
    raw = make_tar(f("zeros", bytes(64 * CHUNK)))
    packed = gzip.compress(raw, compresslevel=1)
    del raw
    tracemalloc.start()
    try:
        layer, dest = apply(tmp_path, packed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (dest / "zeros").stat().st_size == 64 * CHUNK
    assert layer.size == 64 * CHUNK
    assert peak < 24 * CHUNK


def test_zstd_layer(tmp_path: Path) -> None:
    raw = make_tar(f("z", b"zstd data" * 100))
    layer, dest = apply(tmp_path, zstandard.ZstdCompressor().compress(raw))
    assert layer.diff_id == sha(raw)
    assert (dest / "z").read_bytes() == b"zstd data" * 100


def test_zstd_without_the_module_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # makes "import zstandard" fail
    with pytest.raises(LayerError, match="zstandard module is not installed"):
        apply(tmp_path, b"\x28\xb5\x2f\xfd" + b"\0" * 64)


def test_empty_stream_is_an_empty_layer(tmp_path: Path) -> None:
    layer, dest = apply(tmp_path, b"")
    assert layer == AppliedLayer(diff_id=sha(b""), size=0)
    assert os.listdir(dest) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: b"not a tar at all" * 100, "invalid tar header"),
        (lambda raw: raw[:700], "unexpected end of data"),  # cut inside the first file's data
        # header 1 at 0, its data at 512..1536 (padded), header 2 at 1536
        (lambda raw: raw[: 1536 + 100], "invalid tar header: truncated"),
        (lambda raw: raw[:1536] + b"\x01" * 512 + raw[2048:], "invalid tar header"),
        (lambda raw: gzip.compress(raw)[:-20], "read gzip stream"),
        (lambda raw: b"\x1f\x8b" + b"garbage" * 20, "read gzip stream"),
    ],
    ids=["garbage", "cut-in-data", "cut-in-header", "bad-checksum", "cut-gzip", "bad-gzip"],
)
def test_damaged_streams_are_errors(tmp_path: Path, damage: object, message: str) -> None:
    raw = make_tar(f("first", b"1" * 600), f("second", b"2" * 600), fmt=tarfile.USTAR_FORMAT)
    with pytest.raises(LayerError, match=message):
        apply(tmp_path, damage(raw))  # type: ignore[operator]


def test_error_names_the_action_and_entry(tmp_path: Path) -> None:
    raw = make_tar(f("file", b"x"), f("file/child", b"y"))
    with pytest.raises(LayerError) as info:
        apply(tmp_path, raw)
    assert str(info.value) == 'apply layer: write file "file/child": Not a directory'


def test_stream_read_errors_become_layer_errors(tmp_path: Path) -> None:
    class Broken(io.BytesIO):
        """A network stream that dies after its first bytes."""

        def read(self, size: int | None = -1, /) -> bytes:
            if self.tell() < 6:
                return super().read(6)
            raise ConnectionResetError(104, "Connection reset by peer")

    class Dead(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            raise ConnectionResetError(104, "Connection reset by peer")

    dest = tmp_path / "broken"
    dest.mkdir()
    with pytest.raises(LayerError, match=r"read tar stream: .*Connection reset by peer"):
        apply_layer(Broken(bytes(4096)), str(dest))
    with pytest.raises(LayerError, match=r"read layer stream: .*Connection reset by peer"):
        apply_layer(Dead(), str(dest))


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "minidock-layer-read"]


def test_reader_thread_ends_with_the_apply(tmp_path: Path) -> None:
    big = make_tar(f("x", os.urandom(4 * CHUNK)))
    apply(tmp_path, big)
    assert _reader_threads() == []
    # Failing on the first entry while the reader thread is blocked on a full queue, well
    # before the end of the stream: it must be stopped and joined, not left reading.
    data = [f(f"f{i}", os.urandom(CHUNK)) for i in range(30)]
    with pytest.raises(LayerError, match="path escapes"):
        apply(tmp_path, make_tar(f("../first", b"x"), *data))
    assert _reader_threads() == []
