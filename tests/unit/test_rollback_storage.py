"""A failed step of storage and locking leaves nothing behind: no temp file, no half-made
layer, no l/ link, no merged/ dir, no open descriptor. No root needed: the step that fails
is made to fail (``Interrupted`` stands for a KeyboardInterrupt, which is undone too)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from rollback_helpers import Interrupted, open_fds, raising

from minidock.errors import StorageError, quietly
from minidock.linux import flock
from minidock.storage import atomic, overlay2
from minidock.storage.overlay2 import Overlay2Driver


def test_quietly_drops_only_the_named_errors() -> None:
    quietly(raising(FileNotFoundError()), "x")  # OSError by default
    quietly(raising(ValueError()), ignore=(ValueError, OSError))
    with pytest.raises(ValueError):
        quietly(raising(ValueError()))


# --- atomic_write ------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "full"), Interrupted()])
def test_atomic_write_failing_write_leaves_only_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"old")
    monkeypatch.setattr(atomic, "_write_all", raising(exc))
    with pytest.raises(type(exc)):
        atomic.atomic_write(str(target), b"new")
    assert os.listdir(tmp_path) == ["config.json"]  # the .tmp- file is gone
    assert target.read_bytes() == b"old"


def test_atomic_write_failing_rename_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sub"
    target.mkdir()  # renaming a file over a directory fails
    with pytest.raises(IsADirectoryError):
        atomic.atomic_write(str(target), b"new")
    assert os.listdir(tmp_path) == ["sub"]


# --- overlay2 ----------------------------------------------------------------------------


def _driver_with_base(tmp_path: Path) -> Overlay2Driver:
    d = Overlay2Driver(str(tmp_path / "overlay2"))
    d.create("base")
    return d


def _links(d: Overlay2Driver) -> set[str]:
    return set(os.listdir(os.path.join(d.home, "l")))


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "i/o"), Interrupted()])
def test_overlay2_create_failing_late_removes_the_layer_and_its_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    d = _driver_with_base(tmp_path)
    links = _links(d)
    real_write = overlay2.atomic_write

    def write(path: str, data: bytes | str, mode: int = 0o644) -> None:
        if path.endswith("/lower"):  # the last step of a child layer
            raise exc
        real_write(path, data, mode)

    monkeypatch.setattr(overlay2, "atomic_write", write)
    with pytest.raises(StorageError if isinstance(exc, OSError) else Interrupted) as info:
        d.create("child", parent="base")
    if isinstance(exc, OSError):
        assert str(info.value) == f"create layer {d.dir('child')}: input/output error"
    assert not os.path.lexists(d.dir("child"))
    assert _links(d) == links
    assert d.exists("base")


def test_overlay2_get_failing_mount_removes_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _driver_with_base(tmp_path)
    d.create("child", parent="base")
    monkeypatch.setattr(overlay2.linux, "mount", raising(OSError(errno.EPERM, "no")))
    with pytest.raises(StorageError, match="operation not permitted"):
        d.get("child")
    assert not os.path.lexists(d.merged_path("child"))
    monkeypatch.setattr(overlay2.linux, "mount", raising(Interrupted()))
    with pytest.raises(Interrupted):
        d.get("child")
    assert not os.path.lexists(d.merged_path("child"))


def test_overlay2_get_retries_without_volatile_after_removing_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _driver_with_base(tmp_path)
    d.create("child", parent="base")
    seen: list[tuple[str, bool]] = []

    def mount(source: str, target: str, fstype: str, flags: int, data: str, why: str) -> None:
        seen.append((data, os.path.isdir(target)))
        if "volatile" in data:
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(overlay2.linux, "mount", mount)
    assert d.get("child", volatile=True) == d.merged_path("child")
    assert ["volatile" in data for data, _ in seen] == [True, False]
    assert all(existed for _, existed in seen)  # merged/ made again for the second try


# --- flock -------------------------------------------------------------------------------


def _failing_fcntl(exc: BaseException) -> SimpleNamespace:
    import fcntl

    return SimpleNamespace(LOCK_EX=fcntl.LOCK_EX, LOCK_SH=fcntl.LOCK_SH, LOCK_NB=fcntl.LOCK_NB,
                           flock=raising(exc))


@pytest.mark.parametrize("exc", [OSError(errno.ENOLCK, "no locks"), Interrupted()])
def test_locks_close_their_fd_when_flock_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    path = str(tmp_path / "x.lock")
    open(path, "w").close()
    before = open_fds()
    monkeypatch.setattr(flock, "fcntl", _failing_fcntl(exc))
    with pytest.raises(type(exc)):
        flock.HeldLock(path)
    with pytest.raises(type(exc)):
        flock.try_lock(path)
    lock = flock.ReentrantLock(path)
    with pytest.raises(type(exc)), lock.held():
        pass
    assert open_fds() == before
    monkeypatch.undo()
    with lock.held():  # a failed take left no depth behind: it is taken for real now
        assert flock.is_held(path)
    assert not flock.is_held(path)


def test_try_lock_of_a_held_lock_is_none_and_keeps_no_fd(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    held = flock.HeldLock(path)
    before = open_fds()
    assert flock.try_lock(path) is None
    assert open_fds() == before
    held.release()
    lock = flock.try_lock(path)
    assert lock is not None
    lock.release()
