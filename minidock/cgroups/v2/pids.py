"""v2 pids controller (pids.max comes in a later issue)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def current(cgroup_dir: str) -> int | None:
    """Tasks (threads included) in the cgroup and its descendants (pids.current)."""
    return _fs.read_int(os.path.join(cgroup_dir, "pids.current"))
