"""v2 memory controller (limits come in a later issue)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def usage(cgroup_dir: str) -> int | None:
    """Bytes charged to the cgroup and its descendants (memory.current)."""
    return _fs.read_int(os.path.join(cgroup_dir, "memory.current"))


def limit(cgroup_dir: str) -> int | None:
    """memory.max, None when it says "max"."""
    return _fs.read_int(os.path.join(cgroup_dir, "memory.max"))


def inactive_file(cgroup_dir: str) -> int | None:
    """memory.stat inactive_file: what ``docker stats`` subtracts from the usage."""
    try:
        stat = _fs.read_keyed(os.path.join(cgroup_dir, "memory.stat"))
    except FileNotFoundError:
        return None
    value = stat.get("inactive_file", "")
    return int(value) if value.isdigit() else None
