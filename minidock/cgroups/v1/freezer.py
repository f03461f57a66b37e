"""v1 freezer controller: freezer.state is THAWED, FREEZING or FROZEN."""

from __future__ import annotations

import errno
import os
import time

from minidock.cgroups import _fs


def state(cgroup_dir: str) -> str:
    return _fs.read(os.path.join(cgroup_dir, "freezer.state")).strip()


def freeze(cgroup_dir: str, timeout: float = _fs.SETTLE_TIMEOUT) -> None:
    """Write FROZEN and wait for the kernel to say FROZEN (it says FREEZING meanwhile).

    A task that is busy in the kernel can leave the cgroup FREEZING; writing FROZEN again
    retries the tasks that did not stop yet. On timeout the cgroup is thawed again so no
    half-frozen container is left behind.
    """
    path = os.path.join(cgroup_dir, "freezer.state")
    deadline = time.monotonic() + timeout
    while True:
        _fs.write(path, "FROZEN", why="stop every process of the container (v1 freezer)")
        if _fs.wait_until(lambda: state(cgroup_dir) == "FROZEN", timeout=0.5):
            return
        if time.monotonic() >= deadline:
            thaw(cgroup_dir)
            raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT), path)


def thaw(cgroup_dir: str, timeout: float = _fs.SETTLE_TIMEOUT) -> None:
    path = os.path.join(cgroup_dir, "freezer.state")
    _fs.write(path, "THAWED", why="let the container's processes run again (v1 freezer)")
    if not _fs.wait_until(lambda: state(cgroup_dir) == "THAWED", timeout=timeout):
        raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT), path)
