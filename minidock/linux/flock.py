"""flock(2) locks on files: the one home of every lock minidock takes.

The kernel drops an flock when its holder dies, even by SIGKILL, which is what a daemonless
engine needs: a crashed CLI never leaves a lock behind. A lock belongs to an open file
description, so it survives exec (the monitor keeps the one it took before exec'ing) and is
released when the last descriptor of it is closed.

    locked(path)          hold while the block runs (exclusive, or shared=True)
    HeldLock(path)        hold until release() or death; blocking=False raises BlockingIOError
    try_lock(path)        the lock if it is free now, else None (the file must exist)
    wait_free(path, t)    wait until nobody holds it (True), or t seconds pass (False)
    is_held(path)         does some live process hold it exclusively?
    ReentrantLock         one exclusive lock per path that a process may take again inside
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


def _open(path: str, create: bool = True) -> int:
    if create:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def _open_locked(path: str, flags: int, create: bool = True) -> int:
    """An fd of ``path`` holding flock(``flags``); closed again if the flock fails."""
    with ExitStack() as undo:
        fd = _open(path, create)
        undo.callback(os.close, fd)
        fcntl.flock(fd, flags)
        undo.pop_all()
    return fd


@contextmanager
def locked(path: str, shared: bool = False) -> Iterator[None]:
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class HeldLock:
    """A lock held until :meth:`release` (or the process's death)."""

    def __init__(self, path: str, blocking: bool = True, shared: bool = False) -> None:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        self.fd = _open_locked(path, flags)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def try_lock(path: str) -> HeldLock | None:
    """Take the exclusive lock of an existing file if nobody holds it; None if someone does.
    A missing file raises FileNotFoundError (nothing to lock: its owner never made it)."""
    try:
        fd = _open_locked(path, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
    except BlockingIOError:
        return None
    lock = HeldLock.__new__(HeldLock)
    lock.fd = fd
    return lock


def wait_free(path: str, timeout: float | None = None) -> bool:
    """Wait until nobody holds ``path`` (a missing file is free); False if ``timeout``
    seconds passed first."""
    try:
        fd = _open(path, create=False)
    except FileNotFoundError:
        return True
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
    finally:
        os.close(fd)


def is_held(path: str) -> bool:
    """True if some live process holds ``path`` exclusively."""
    try:
        lock = try_lock(path)
    except FileNotFoundError:
        return False
    if lock is None:
        return True
    lock.release()
    return False


class ReentrantLock:
    """An exclusive flock that the process holding it may take again (nested store calls).
    One object per lock-file path; a forked child starts out not holding its parent's."""

    _registry: dict[str, ReentrantLock] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._depth = 0
        self._pid = 0

    @classmethod
    def for_path(cls, path: str) -> ReentrantLock:
        lock = cls._registry.get(path)
        if lock is None:
            lock = cls._registry[path] = cls(path)
        return lock

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._pid != os.getpid():
            self._fd, self._depth, self._pid = -1, 0, os.getpid()
        if self._depth == 0:
            self._fd = _open_locked(self.path, fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                os.close(self._fd)  # closing the only descriptor releases the flock
                self._fd = -1
