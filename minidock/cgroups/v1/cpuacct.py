"""v1 cpuacct controller: CPU time the cgroup's tasks used."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def usage_ns(cgroup_dir: str) -> int | None:
    """Nanoseconds of CPU time, user and system, of the cgroup and below (cpuacct.usage)."""
    return _fs.read_int(os.path.join(cgroup_dir, "cpuacct.usage"))
