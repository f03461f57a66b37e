"""OCI (cgroup v1) resource values to what cgroup v2's files take, as runc and crun convert.

    cpu.shares 2..262144        -> cpu.weight 1..10000      1 + (shares - 2) * 9999 / 262142
    blkio.weight 10..1000       -> io.weight 1..10000       1 + (weight - 10) * 9999 / 990
    memory + swap (v1's memsw)  -> memory.swap.max          swap alone: (memory+swap) - memory
    cfs quota and period        -> cpu.max                  "QUOTA PERIOD", "max PERIOD"

Pure functions, unit-tested against the values runc writes.
"""

from __future__ import annotations

from minidock.errors import InvalidArgument

DEFAULT_CFS_PERIOD = 100_000


def cpu_weight(shares: int) -> int:
    """cpu.weight for v1 cpu.shares (0: not set)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(weight: int) -> int:
    """io.weight for v1 blkio.weight (0: not set)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_max(memory_swap: int | None, memory: int | None) -> str | None:
    """memory.swap.max for OCI's memory.swap (memory plus swap; -1 unlimited); None leaves
    it as it is."""
    if memory_swap is None or memory_swap == 0:
        return None
    if memory_swap == -1:
        return "max"
    if not memory or memory < 0:
        raise InvalidArgument("set memory.swap.max: a swap limit needs a memory limit")
    if memory_swap < memory:
        raise InvalidArgument(f"set memory.swap.max: memory+swap ({memory_swap}) is below the "
                              f"memory limit ({memory})")
    return str(memory_swap - memory)


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """cpu.max for a CFS quota and period (microseconds); None leaves it as it is."""
    if not quota and not period:
        return None
    limit = str(quota) if quota and quota > 0 else "max"
    return f"{limit} {period or DEFAULT_CFS_PERIOD}"
