"""Hostile layers: what must never happen when a layer is applied, plus what needs root to check.

Every test gets a "host" directory next to the layer directory, standing for the host's files:

    tmp_path/
      host/secret                 "original secret", 0640, 0:0, fixed mtime
      host/outside_dir/victim     "victim"
      layer*/                     where each layer is applied (dest)

After each test the host tree must be exactly as it was (content, type, mode, owner, times,
link count, xattrs), nothing new may appear next to the layer, and every refusal must be a
LayerError. An attack that is not refused must have landed inside the layer directory.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tarbuild import (
    Entry,
    d,
    entry,
    hard,
    make_tar,
    resolver,  # noqa: F401  (the autouse fixture: both resolvers)
    sym,
)

from minidock.errors import LayerError
from minidock.image.layer import apply_layer

pytestmark = pytest.mark.root

HOST_MTIME = 1_000_000_000


def f(name: str, data: bytes = b"pwned", **kw: object) -> Entry:
    return entry(name, tarfile.REGTYPE, data=data, **kw)  # type: ignore[arg-type]


# --- the host tree and its snapshot ---


def _snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    seen: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            xattrs = {
                key: os.getxattr(path, key, follow_symlinks=False)
                for key in sorted(os.listxattr(path, follow_symlinks=False))
            }
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = Path(path).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            seen[os.path.relpath(path, top)] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                st.st_mtime_ns, st.st_nlink, st.st_rdev, content, xattrs,
            )  # fmt: skip
    return seen


class Host:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.dir = tmp_path / "host"
        self.secret = self.dir / "secret"
        self.outside_dir = self.dir / "outside_dir"
        self.outside_dir.mkdir(parents=True)
        self.secret.write_bytes(b"original secret")
        (self.outside_dir / "victim").write_bytes(b"victim")
        for path in (self.secret, self.outside_dir / "victim", self.outside_dir, self.dir):
            os.chmod(path, 0o640 if path.is_file() else 0o755)
            os.chown(path, 0, 0)
            os.utime(path, (HOST_MTIME, HOST_MTIME))
        self.before = _snapshot(self.dir)
        self.listing = sorted(os.listdir(tmp_path))
        self.layers = 0

    def rel(self, *parts: str) -> str:
        """A host path as an entry name of a layer (relative to the layer root)."""
        return os.path.join(str(self.dir), *parts).lstrip("/")

    def apply(self, *entries: Entry) -> tuple[LayerError | None, Path]:
        """Apply a layer; return the LayerError it raised (any other error fails the test)."""
        dest = self.tmp / f"layer{self.layers}"
        self.layers += 1
        dest.mkdir()
        self.listing.append(dest.name)
        try:
            apply_layer(io.BytesIO(make_tar(*entries)), str(dest))
        except LayerError as e:
            assert "\n" not in str(e)
            return e, dest
        return None, dest

    def assert_untouched(self) -> None:
        assert _snapshot(self.dir) == self.before
        assert sorted(os.listdir(self.tmp)) == sorted(self.listing)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path)
    yield h
    h.assert_untouched()


# --- path traversal and absolute names ---


@pytest.mark.parametrize(
    "make",
    [
        lambda: f("../host/secret"),
        lambda: f("a/../../host/secret"),
        lambda: f("./../host/secret"),
        lambda: d("../host/outside_dir", mode=0o777),
        lambda: sym("../host/secret", "/etc/shadow"),
        lambda: hard("../host/new", "x"),
        lambda: entry("../host/fifo", tarfile.FIFOTYPE),
        lambda: f("../host/.wh.secret"),
        lambda: f("../host/outside_dir/.wh..wh..opq"),
        lambda: f("a/b/../../../host/secret"),
    ],
    ids=[
        "file",
        "deep",
        "dot",
        "dir",
        "symlink",
        "hardlink",
        "fifo",
        "whiteout",
        "opaque",
        "deeper",
    ],
)
def test_dotdot_traversal_is_refused(host: Host, make: Callable[[], Entry]) -> None:
    err, _ = host.apply(f("first", b"ok"), make())
    assert err is not None and "path escapes the layer" in str(err)


def test_absolute_names_land_inside_the_layer(host: Host) -> None:
    err, dest = host.apply(
        f(str(host.secret), b"pwned", mode=0o777, uid=4242),
        d(str(host.outside_dir), mode=0o777, mtime=1),
        f(str(host.outside_dir / ".wh.victim")),
        f(str(host.dir / ".wh..wh..opq")),
    )
    assert err is None
    inside = dest / host.rel()
    assert (inside / "secret").read_bytes() == b"pwned"
    assert stat.S_ISCHR(os.lstat(inside / "outside_dir" / "victim").st_mode)
    assert os.getxattr(inside, "trusted.overlay.opaque") == b"y"


# --- symlink, then write through it ---


def test_absolute_symlink_then_write(host: Host) -> None:
    err, dest = host.apply(sym("evil", str(host.dir)), f("evil/secret"), f("evil/new"))
    # root/<host dir> does not exist in the layer: refused, nothing written anywhere.
    assert err is not None and 'write file "evil/secret"' in str(err)
    # With that directory present in the layer, the write lands there.
    err, dest = host.apply(
        d(host.rel()), sym("evil", str(host.dir)), f("evil/secret"), f("evil/new")
    )
    assert err is None
    assert (dest / host.rel("secret")).read_bytes() == b"pwned"
    assert (dest / host.rel("new")).read_bytes() == b"pwned"


def test_relative_symlink_that_climbs_out_is_refused(host: Host) -> None:
    err, _ = host.apply(sym("evil", "../host"), f("evil/secret"))
    assert err is not None and "target escapes the layer" in str(err)
    err, _ = host.apply(d("a"), sym("a/evil", "../../host"), f("a/evil/secret"))
    assert err is not None and "target escapes the layer" in str(err)


def test_symlink_chain_climbing_out_is_clamped(host: Host) -> None:
    # Each link passes the lexical check on its own; only resolution could climb out, and
    # in-root resolution clamps ".." at the layer root.
    chain = [d("d"), sym("d/up", ".."), sym("x", "d/up/../host")]
    err, _ = host.apply(*chain, f("x/secret"))
    assert err is not None  # layer/host does not exist
    err, dest = host.apply(d("host"), *chain, f("x/secret"), f("x/outside_dir/victim"))
    assert err is None
    assert (dest / "host" / "secret").read_bytes() == b"pwned"
    assert (dest / "host" / "outside_dir" / "victim").read_bytes() == b"pwned"


def test_symlink_to_outside_directory_then_file_in_it(host: Host) -> None:
    err, _ = host.apply(sym("evil", str(host.outside_dir)), f("evil/victim"), f("evil/x"))
    assert err is not None
    err, dest = host.apply(
        d(host.rel("outside_dir")), sym("evil", str(host.outside_dir)), f("evil/victim")
    )
    assert err is None
    assert (dest / host.rel("outside_dir", "victim")).read_bytes() == b"pwned"


def test_symlink_to_root_then_host_path(host: Host) -> None:
    err, dest = host.apply(sym("a", "/"), f("a/" + host.rel("secret")))
    assert err is None
    assert (dest / host.rel("secret")).read_bytes() == b"pwned"


def test_magic_link_then_write(host: Host) -> None:
    err, _ = host.apply(sym("evil", f"/proc/self/root{host.dir}"), f("evil/secret"))
    assert err is not None


def test_file_over_symlink_replaces_the_link(host: Host) -> None:
    err, dest = host.apply(sym("evil", str(host.secret)), f("evil", b"pwned", mode=0o4777))
    assert err is None
    assert not os.path.islink(dest / "evil")
    assert (dest / "evil").read_bytes() == b"pwned"


# --- hardlinks out ---


def test_hardlink_to_host_file_by_absolute_path(host: Host) -> None:
    err, _ = host.apply(hard("h", str(host.secret)))
    assert err is not None and 'create hardlink "h"' in str(err)


def test_hardlink_to_host_file_by_dotdot(host: Host) -> None:
    err, _ = host.apply(hard("h", "../host/secret"))
    assert err is not None and "target is outside the layer" in str(err)


def test_hardlink_through_symlinked_directory(host: Host) -> None:
    err, _ = host.apply(sym("evil", str(host.dir)), hard("h", "evil/secret"))
    assert err is not None
    err, _ = host.apply(d("d"), sym("d/up", ".."), hard("h", "d/up/../host/secret"))
    assert err is not None


def test_hardlink_to_symlink_links_the_symlink_itself(host: Host) -> None:
    err, dest = host.apply(sym("s", str(host.secret)), hard("h", "s"))
    assert err is None
    assert os.readlink(dest / "h") == str(host.secret)
    assert os.lstat(dest / "h").st_ino == os.lstat(dest / "s").st_ino


# --- metadata through symlinks ---


@pytest.mark.parametrize(
    "make",
    [
        lambda: f("evil", b"x", mode=0o6777, uid=4242, gid=4242, mtime=1),
        lambda: d("evil", mode=0o777, uid=4242, gid=4242, mtime=1),
        lambda: entry("evil", tarfile.FIFOTYPE, mode=0o777, uid=4242, mtime=1),
        lambda: entry("evil", tarfile.CHRTYPE, mode=0o777, uid=4242, dev=(1, 3), mtime=1),
        lambda: sym("evil", "elsewhere", uid=4242, gid=4242, mtime=1),
        lambda: f(
            "evil", b"x", pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\0" * 16}
        ),
    ],
    ids=["file", "dir", "fifo", "chardev", "symlink", "xattr"],
)
@pytest.mark.parametrize("target", ["secret", "outside_dir"])
def test_metadata_never_goes_through_a_symlink(
    host: Host, make: Callable[[], Entry], target: str
) -> None:
    err, dest = host.apply(sym("evil", str(host.dir / target)), make())
    assert err is None
    info, _ = make()
    got = os.lstat(dest / "evil")
    assert stat.S_IFMT(got.st_mode) == {
        tarfile.REGTYPE: stat.S_IFREG, tarfile.DIRTYPE: stat.S_IFDIR,
        tarfile.FIFOTYPE: stat.S_IFIFO, tarfile.CHRTYPE: stat.S_IFCHR,
        tarfile.SYMTYPE: stat.S_IFLNK,
    }[info.type]  # fmt: skip
    if info.type != tarfile.SYMTYPE:
        assert stat.S_IMODE(got.st_mode) == info.mode


def test_symlink_ownership_applies_to_the_link(host: Host) -> None:
    err, dest = host.apply(sym("evil", str(host.secret), uid=4242, gid=4343))
    assert err is None
    st = os.lstat(dest / "evil")
    assert (st.st_uid, st.st_gid) == (4242, 4343)


def test_deferred_directory_time_not_applied_through_replacing_symlink(host: Host) -> None:
    err, dest = host.apply(
        d("dd", mtime=1), f("dd/x"), sym("dd", str(host.outside_dir)), d("ee", mtime=2)
    )
    assert err is None
    assert os.path.islink(dest / "dd")
    assert os.stat(dest / "ee").st_mtime == 2


def test_hardlink_entry_applies_no_metadata(host: Host) -> None:
    link = hard("h", "s")
    link[0].mode, link[0].uid, link[0].mtime = 0o777, 4242, 1
    err, dest = host.apply(sym("s", str(host.secret)), link)
    assert err is None
    assert os.lstat(dest / "h").st_uid == 0


def test_opaque_marker_through_symlink(host: Host) -> None:
    err, _ = host.apply(sym("evil", str(host.outside_dir)), f("evil/.wh..wh..opq", b""))
    assert err is not None
    with pytest.raises(OSError) as info:
        os.getxattr(host.outside_dir, "trusted.overlay.opaque")
    assert info.value.errno == errno.ENODATA


# --- whiteouts ---


def test_whiteout_through_symlink(host: Host) -> None:
    err, _ = host.apply(sym("evil", str(host.outside_dir)), f("evil/.wh.victim", b""))
    assert err is not None
    err, dest = host.apply(
        d(host.rel("outside_dir")),
        sym("evil", str(host.outside_dir)),
        f("evil/.wh.victim", b""),
    )
    assert err is None
    assert stat.S_ISCHR(os.lstat(dest / host.rel("outside_dir", "victim")).st_mode)


def test_whiteout_through_dotdot_symlink_chain(host: Host) -> None:
    err, dest = host.apply(
        d("host"), d("d"), sym("d/up", ".."), sym("x", "d/up/../host"), f("x/.wh.secret", b"")
    )
    assert err is None
    assert stat.S_ISCHR(os.lstat(dest / "host" / "secret").st_mode)


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", "sub/.wh..", "sub/.wh..."])
def test_invalid_whiteout_names_are_refused(host: Host, name: str) -> None:
    err, dest = host.apply(d("sub"), f(name, b""))
    assert err is not None and "invalid whiteout name" in str(err)
    assert os.listdir(dest) == ["sub"]
    assert os.listdir(dest / "sub") == []


def test_whiteouts_and_opaque_dirs(host: Host) -> None:
    err, dest = host.apply(
        f(".wh.gone", b"", uid=1000, gid=1001),
        d("etc"),
        f("etc/.wh.passwd", b""),
        d("opq", mode=0o750),
        f("opq/.wh..wh..opq", b""),
        f("opq/kept", b"k"),
        f("implicit/.wh..wh..opq", b""),
    )
    assert err is None
    for path, owner in ((dest / "gone", (1000, 1001)), (dest / "etc/passwd", (0, 0))):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
        assert (st.st_uid, st.st_gid) == owner
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(dest / "implicit", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE(os.stat(dest / "opq").st_mode) == 0o750
    assert sorted(os.listdir(dest)) == ["etc", "gone", "implicit", "opq"]
    assert os.listdir(dest / "opq") == ["kept"]  # the marker itself is not written
    assert os.listdir(dest / "implicit") == []


def test_whiteout_of_an_entry_of_the_same_layer_is_an_error(host: Host) -> None:
    err, _ = host.apply(f("x"), f(".wh.x", b""))
    assert str(err) == 'apply layer: create whiteout ".wh.x": File exists'


# --- ownership, devices, capabilities ---


def test_ownership_devices_and_capabilities(host: Host) -> None:
    # struct vfs_cap_data, revision 2, effective: cap_net_raw (13) permitted.
    cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    err, dest = host.apply(
        d("home", mode=0o750, uid=1234, gid=5678, mtime=77),
        f("home/suid", b"#!", mode=0o4755, uid=1234, gid=5678),
        f("home/sgid", b"#!", mode=0o2711, uid=1234, gid=5678),
        sym("home/link", "suid", uid=1234, gid=5678),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, uid=7, gid=8, dev=(1, 3)),
        entry("dev/loop0", tarfile.BLKTYPE, mode=0o660, gid=6, dev=(7, 0)),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o620, uid=9, gid=9),
        f(
            "bin/ping",
            b"\x7fELF",
            mode=0o755,
            pax={
                "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.trusted.evil": "x",
                "SCHILY.xattr.user.note": "x",
            },
        ),
    )
    assert err is None

    def owner_mode(name: str) -> tuple[int, int, int]:
        st = os.lstat(dest / name)
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    assert owner_mode("home") == (1234, 5678, 0o750)
    assert os.stat(dest / "home").st_mtime == 77
    # chown clears setuid/setgid: they survive because the mode is set after the owner.
    assert owner_mode("home/suid") == (1234, 5678, 0o4755)
    assert owner_mode("home/sgid") == (1234, 5678, 0o2711)
    assert owner_mode("home/link")[:2] == (1234, 5678)
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert owner_mode("dev/null") == (7, 8, 0o666)
    loop = os.lstat(dest / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert owner_mode("dev/loop0") == (0, 6, 0o660)
    assert owner_mode("run/fifo") == (9, 9, 0o620)
    assert os.getxattr(dest / "bin/ping", "security.capability") == cap
    names = os.listxattr(dest / "bin/ping")
    assert "trusted.evil" not in names and "user.note" not in names
