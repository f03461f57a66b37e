"""v1 pids controller: pids.current and the limit, pids.max."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def current(cgroup_dir: str) -> int | None:
    """Tasks (threads included) in the cgroup and its descendants."""
    return _fs.read_int(os.path.join(cgroup_dir, "pids.current"))


def set_limit(cgroup_dir: str, limit: int) -> None:
    """pids.max: ``limit`` tasks (threads count), "max" for 0 or less."""
    _fs.write(os.path.join(cgroup_dir, "pids.max"), str(limit) if limit > 0 else "max",
              why="--pids-limit: fork() fails with EAGAIN past this many tasks")
