"""v1 memory controller: usage, the limits (memory.limit_in_bytes, memory.memsw.limit_in_bytes,
memory.soft_limit_in_bytes, memory.swappiness, memory.oom_control) and OOM kills."""

from __future__ import annotations

import os

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


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


def set_limits(cgroup_dir: str, res: Resources) -> None:
    """Write the memory limits. memory+swap may never be below memory: of the two, the one
    that keeps that true is written first (raising: memsw first; lowering: memory first)."""
    def put(name: str, value: int, why: str) -> None:
        _fs.write(os.path.join(cgroup_dir, name), str(value), why=why)

    memory, swap = res.memory_limit, res.memory_swap
    mem_why = "--memory: the most the container may use; past it, reclaim, then the OOM killer"
    swap_why = "--memory-swap: memory plus swap (-1: no swap limit)"
    if memory and swap:
        current = _fs.read_int(os.path.join(cgroup_dir, "memory.limit_in_bytes")) or 0
        if swap == -1 or current < swap:
            put("memory.memsw.limit_in_bytes", swap, swap_why)
            put("memory.limit_in_bytes", memory, mem_why)
        else:
            put("memory.limit_in_bytes", memory, mem_why)
            put("memory.memsw.limit_in_bytes", swap, swap_why)
    elif memory:
        put("memory.limit_in_bytes", memory, mem_why)
    elif swap:
        put("memory.memsw.limit_in_bytes", swap, swap_why)
    if res.memory_reservation:
        put("memory.soft_limit_in_bytes", res.memory_reservation,
            "--memory-reservation: what reclaim leaves it when the host runs short")
    if res.memory_swappiness is not None and res.memory_swappiness >= 0:
        put("memory.swappiness", res.memory_swappiness, "--memory-swappiness")
    if res.disable_oom_killer:
        put("memory.oom_control", 1,
            "--oom-kill-disable: at the limit, tasks wait instead of being killed")


def oom_kills(cgroup_dir: str) -> int:
    """How many processes the OOM killer killed in the cgroup (memory.oom_control's
    oom_kill, Linux 4.13+); 0 when it does not say."""
    return _fs.keyed_int(os.path.join(cgroup_dir, "memory.oom_control"), "oom_kill")
