"""v1 memory controller (limits come in a later issue)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def usage(cgroup_dir: str) -> int | None:
    """Bytes charged to the cgroup, page cache included (memory.usage_in_bytes)."""
    return _fs.read_int(os.path.join(cgroup_dir, "memory.usage_in_bytes"))
