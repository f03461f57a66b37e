"""v2 cpu controller: cpu.stat has the CPU time even when the controller is not enabled."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def usage_ns(cgroup_dir: str) -> int | None:
    """Nanoseconds of CPU time of the cgroup and below (cpu.stat usage_usec, always there)."""
    try:
        stat = _fs.read_keyed(os.path.join(cgroup_dir, "cpu.stat"))
    except FileNotFoundError:
        return None
    value = stat.get("usage_usec", "")
    return int(value) * 1000 if value.isdigit() else None
