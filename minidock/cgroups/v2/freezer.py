"""v2 freezer: cgroup.freeze (Linux 5.2+); cgroup.events says when the freeze is complete."""

from __future__ import annotations

import errno
import os

from minidock.cgroups import _fs


def supported(cgroup_dir: str) -> bool:
    return os.path.exists(os.path.join(cgroup_dir, "cgroup.freeze"))


def frozen(cgroup_dir: str) -> bool:
    return _fs.read_keyed(os.path.join(cgroup_dir, "cgroup.events")).get("frozen") == "1"


def _set(cgroup_dir: str, value: bool, why: str, timeout: float) -> None:
    path = os.path.join(cgroup_dir, "cgroup.freeze")
    if not os.path.exists(path):
        raise OSError(errno.ENOTSUP, "cgroup.freeze is missing (needs Linux 5.2)", path)
    _fs.write(path, "1" if value else "0", why=why)
    if not _fs.wait_until(lambda: frozen(cgroup_dir) == value, timeout=timeout):
        raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT), path)


def freeze(cgroup_dir: str, timeout: float = _fs.SETTLE_TIMEOUT) -> None:
    """Freeze and wait for ``frozen 1`` in cgroup.events (thawing again on timeout)."""
    try:
        _set(cgroup_dir, True, "stop every process of the container (cgroup v2 freezer)", timeout)
    except OSError as e:
        if e.errno == errno.ETIMEDOUT:
            thaw(cgroup_dir)
        raise


def thaw(cgroup_dir: str, timeout: float = _fs.SETTLE_TIMEOUT) -> None:
    _set(cgroup_dir, False, "let the container's processes run again", timeout)
