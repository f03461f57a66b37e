"""In-root path resolution (minidock.linux.fs), through openat2 and through the Python walk."""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minidock import linux
from minidock.linux import fs


def _require_openat2(tmp_path: Path) -> None:
    """Fail (not skip) when openat2 is unusable: every kernel minidock supports has it (5.6+),
    and fs would silently fall back to the walk, so the openat2 runs would test nothing."""
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        os.close(linux.openat2(fd, ".", os.O_PATH, 0, linux.RESOLVE_IN_ROOT))
    except OSError as e:
        pytest.fail(f"openat2 does not work here ({e}): the kernel is older than 5.6, "
                    "or a seccomp filter refuses it", pytrace=False)
    finally:
        os.close(fd)


@pytest.fixture(params=["openat2", "walk"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Run the test once per mechanism; the walk run fails if openat2 is called at all."""
    if request.param == "openat2":
        _require_openat2(tmp_path)
        monkeypatch.setattr(fs, "use_openat2", True)
    else:
        monkeypatch.setattr(fs, "use_openat2", False)

        def forbidden(*args: object, **kwargs: object) -> int:
            raise AssertionError("openat2 called in walk mode")

        monkeypatch.setattr(fs.linux, "openat2", forbidden)
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small tree with the symlinks the tests resolve.

    root/
      etc/passwd            "root passwd"
      etc/dir/inner         "inner"
      abs -> /etc           absolute: must mean root/etc
      rel -> etc/passwd
      up -> ../../../..     climbs above the root: clamped
      sub/back -> ../etc
      chain1 -> chain2 -> rel
      loop1 -> loop2 -> loop1
      self -> self
      dangling -> /nowhere/file
      file                  "plain"
    """
    r = tmp_path / "root"
    (r / "etc" / "dir").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root passwd")
    (r / "etc" / "dir" / "inner").write_text("inner")
    (r / "sub").mkdir()
    (r / "file").write_text("plain")
    os.symlink("/etc", r / "abs")
    os.symlink("etc/passwd", r / "rel")
    os.symlink("../../../..", r / "up")
    os.symlink("../etc", r / "sub" / "back")
    os.symlink("chain2", r / "chain1")
    os.symlink("rel", r / "chain2")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("self", r / "self")
    os.symlink("/nowhere/file", r / "dangling")
    return r


@pytest.fixture
def root_fd(root: Path) -> Iterator[int]:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _read(root_fd: int, path: str) -> str:
    fd = fs.open_in_root(root_fd, path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "path",
    [
        "etc/passwd",
        "/etc/passwd",
        "//etc//./passwd",
        "abs/passwd",  # absolute symlink restarts at the root, not at the host's /
        "/abs/passwd",
        "rel",
        "chain1",
        "../etc/passwd",  # ".." at the root stays at the root
        "../../../../../etc/passwd",
        "etc/../../etc/passwd",
        "up/etc/passwd",  # a symlink that climbs out is clamped too
        "up/up/abs/../etc/passwd",
        "sub/back/passwd",
        "sub/back/dir/../passwd",
    ],
)
def test_resolves_inside_the_root(mode: str, root_fd: int, path: str) -> None:
    assert _read(root_fd, path) == "root passwd"


@pytest.mark.parametrize(
    "path, err",
    [
        ("missing", errno.ENOENT),
        ("etc/missing/file", errno.ENOENT),
        ("dangling", errno.ENOENT),  # resolves to root/nowhere/file, which does not exist
        ("file/x", errno.ENOTDIR),
        ("file/", errno.ENOTDIR),
        ("loop1", errno.ELOOP),
        ("self/x", errno.ELOOP),
        ("loop2/etc/passwd", errno.ELOOP),
    ],
)
def test_errors_carry_errno_and_path(mode: str, root_fd: int, path: str, err: int) -> None:
    with pytest.raises(OSError) as info:
        fs.open_in_root(root_fd, path, os.O_RDONLY)
    assert info.value.errno == err
    assert info.value.filename == path


def test_symlink_limit(mode: str, tmp_path: Path) -> None:
    r = tmp_path / "links"
    r.mkdir()
    (r / "target").write_text("end")
    # 30 links in a row resolve; 45 exceed Linux's limit of 40 in both mechanisms.
    for i in range(45):
        os.symlink(f"l{i + 1}" if i < 44 else "target", r / f"l{i}")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    try:
        assert _read(fd, "l15") == "end"
        with pytest.raises(OSError) as info:
            fs.open_in_root(fd, "l0", os.O_RDONLY)
        assert info.value.errno == errno.ELOOP
    finally:
        os.close(fd)


def test_directories_and_trailing_slash(mode: str, root_fd: int, root: Path) -> None:
    for path in ("etc/dir/", "abs/dir", "/abs/dir/.", "", ".", "/", "up/"):
        fd = fs.open_in_root(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        expected = root / "etc" / "dir" if "dir" in path else root
        assert (st.st_dev, st.st_ino) == (expected.stat().st_dev, expected.stat().st_ino)


def test_nofollow_applies_to_the_last_component(mode: str, root_fd: int) -> None:
    with pytest.raises(OSError) as info:
        fs.open_in_root(root_fd, "rel", os.O_RDONLY | os.O_NOFOLLOW)
    assert info.value.errno == errno.ELOOP
    # O_PATH | O_NOFOLLOW opens the link itself, after following the ones before it.
    fd = fs.open_in_root(root_fd, "abs/../rel", os.O_PATH | os.O_NOFOLLOW)
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    fd = fs.open_in_root(root_fd, "rel", os.O_PATH)
    try:
        assert stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def test_fds_are_close_on_exec(mode: str, root_fd: int) -> None:
    fd = fs.open_in_root(root_fd, "etc/passwd", os.O_RDONLY)
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


def test_create_through_dangling_absolute_symlink_stays_inside(mode: str, tmp_path: Path) -> None:
    r = tmp_path / "croot"
    r.mkdir()
    host_name = f"/minidock-test-{uuid.uuid4().hex}"
    os.symlink(host_name, r / "link")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    try:
        wfd = fs.open_in_root(fd, "link", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(wfd, b"inside")
        os.close(wfd)
    finally:
        os.close(fd)
    assert not os.path.lexists(host_name)
    assert (r / host_name.lstrip("/")).read_bytes() == b"inside"


def test_exclusive_create_does_not_follow(mode: str, root_fd: int) -> None:
    with pytest.raises(FileExistsError):
        fs.open_in_root(root_fd, "dangling", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def test_open_parent_in_root(mode: str, root_fd: int, root: Path) -> None:
    fd, name = fs.open_parent_in_root(root_fd, "/abs/dir/inner")
    try:
        assert name == "inner"
        st, want = os.fstat(fd), (root / "etc" / "dir").stat()
        assert (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino)
        inner = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        assert os.read(inner, 10) == b"inner"
        os.close(inner)
    finally:
        os.close(fd)
    # The last component is not resolved: a symlink there is the caller's to handle.
    fd, name = fs.open_parent_in_root(root_fd, "up/rel/")
    try:
        assert name == "rel"
        assert stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["", "/", ".", "a/.", "a/..", "..", "/..", "a/./"])
def test_open_parent_refuses_non_names(mode: str, root_fd: int, path: str) -> None:
    with pytest.raises(OSError) as info:
        fs.open_parent_in_root(root_fd, path)
    assert info.value.errno == errno.EINVAL


def test_read_file_in_root(mode: str, root: Path) -> None:
    assert fs.read_file_in_root(str(root), "/etc/passwd", 100) == b"root passwd"
    assert fs.read_file_in_root(str(root), "abs/passwd", 100) == b"root passwd"
    assert fs.read_file_in_root(str(root), "/etc/group", 100) is None
    assert fs.read_file_in_root(str(root), "/nope/group", 100) is None
    assert fs.read_file_in_root(str(root), "file/group", 100) is None
    assert fs.read_file_in_root(str(root), "dangling", 100) is None
    assert fs.read_file_in_root(str(root), "etc/passwd", 11) == b"root passwd"
    with pytest.raises(OSError) as info:
        fs.read_file_in_root(str(root), "etc/passwd", 10)
    assert info.value.errno == errno.EFBIG


def test_read_file_in_root_refuses_fifo_without_blocking(mode: str, root: Path) -> None:
    os.mkfifo(root / "etc" / "fifo")
    with pytest.raises(OSError) as info:
        fs.read_file_in_root(str(root), "etc/fifo", 100)
    assert info.value.errno == errno.EINVAL


def test_magic_links_never_followed_as_links(mode: str) -> None:
    # /proc/self/root is a "magic link" to this process's root; the kernel refuses it under
    # RESOLVE_NO_MAGICLINKS, and the walk only uses its text ("/"), resolved in-root.
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        if mode == "openat2":
            with pytest.raises(OSError) as info:
                fs.open_in_root(fd, "proc/self/root/etc", os.O_PATH)
            assert info.value.errno == errno.ELOOP
        else:
            got = fs.open_in_root(fd, "proc/self/root/etc", os.O_PATH)
            try:
                assert os.fstat(got).st_ino == os.stat("/etc").st_ino
            finally:
                os.close(got)
    finally:
        os.close(fd)


def test_falls_back_when_openat2_is_missing(monkeypatch: pytest.MonkeyPatch, root_fd: int) -> None:
    calls = []

    def no_openat2(*args: object, **kwargs: object) -> int:
        calls.append(args)
        raise OSError(errno.ENOSYS, "openat2: Function not implemented")

    monkeypatch.setattr(fs, "use_openat2", True)
    monkeypatch.setattr(fs.linux, "openat2", no_openat2)
    assert _read(root_fd, "abs/passwd") == "root passwd"
    assert fs.use_openat2 is False  # remembered: not asked again
    assert _read(root_fd, "up/etc/passwd") == "root passwd"
    assert len(calls) == 1


def test_einval_falls_back_for_one_call_only(monkeypatch: pytest.MonkeyPatch, root_fd: int) -> None:
    def einval(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EINVAL, "openat2: Invalid argument")

    monkeypatch.setattr(fs, "use_openat2", True)
    monkeypatch.setattr(fs.linux, "openat2", einval)
    assert _read(root_fd, "abs/passwd") == "root passwd"
    assert fs.use_openat2 is True


def test_openat2_eagain_is_retried(monkeypatch: pytest.MonkeyPatch, root_fd: int) -> None:
    real = linux.openat2
    attempts = []

    def flaky(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
        attempts.append(path)
        if len(attempts) < 3:
            raise OSError(errno.EAGAIN, "openat2: Resource temporarily unavailable")
        return real(dirfd, path, flags, mode, resolve)

    _require_openat2(Path("/"))
    monkeypatch.setattr(fs, "use_openat2", True)
    monkeypatch.setattr(fs.linux, "openat2", flaky)
    assert _read(root_fd, "etc/passwd") == "root passwd"
    assert len(attempts) == 3


def test_make_dirs_in_root_stays_inside_and_owns_what_it_makes(tmp_path):
    from minidock.linux.fs import make_dirs_in_root

    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "up").symlink_to("../../outside")  # would leave the root if followed by the host
    (root / "abs").symlink_to("/outside")  # absolute: restarts at the root
    uid, gid = os.getuid(), os.getgid()
    make_dirs_in_root(str(root), "/up/a/b", 0o750, uid, gid)
    make_dirs_in_root(str(root), "abs/c", 0o755, uid, gid)
    make_dirs_in_root(str(root), "/work/x", 0o755, uid, gid)
    make_dirs_in_root(str(root), "/work/x", 0o755, uid, gid)  # again: nothing to do
    assert os.listdir(outside) == []
    # both links name /outside of the root: made there, as a chroot would see it
    assert (root / "outside" / "a" / "b").is_dir() and (root / "outside" / "c").is_dir()
    assert (root / "work" / "x").is_dir()
    assert (os.stat(root / "outside" / "a").st_mode & 0o777) == 0o750


def test_goarch_is_one_table_for_machines_and_platforms():
    from minidock.oci.image import goarch

    assert goarch("x86_64") == ("amd64", None)
    assert goarch("aarch64") == ("arm64", "v8") == goarch("arm64")
    assert goarch("armv7l") == ("arm", "v7") == goarch("armhf")
    assert goarch("loongarch64") == ("loong64", None)
    assert goarch("riscv64") == ("riscv64", None)
