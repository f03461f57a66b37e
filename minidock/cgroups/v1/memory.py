"""v1 memory controller (limits come in a later issue)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def usage(cgroup_dir: str) -> int | None:
    """Bytes charged to the cgroup, page cache included (memory.usage_in_bytes)."""
    return _fs.read_int(os.path.join(cgroup_dir, "memory.usage_in_bytes"))


#: v1 says "no limit" with the largest page-aligned long (9223372036854771712 on x86-64).
UNLIMITED_FROM = 1 << 62


def limit(cgroup_dir: str) -> int | None:
    """memory.limit_in_bytes, None when unlimited."""
    value = _fs.read_int(os.path.join(cgroup_dir, "memory.limit_in_bytes"))
    return None if value is None or value >= UNLIMITED_FROM else value


def inactive_file(cgroup_dir: str) -> int | None:
    """Page cache the kernel can drop at once (memory.stat total_inactive_file): what
    ``docker stats`` subtracts from the usage."""
    try:
        stat = _fs.read_keyed(os.path.join(cgroup_dir, "memory.stat"))
    except FileNotFoundError:
        return None
    value = stat.get("total_inactive_file", "")
    return int(value) if value.isdigit() else None
