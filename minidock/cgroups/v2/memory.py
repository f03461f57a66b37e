"""v2 memory controller: usage, the limits (memory.max, memory.low, memory.swap.max) and OOM
kills (memory.events)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs, convert

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


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


def set_limits(cgroup_dir: str, res: Resources) -> None:
    """memory.max, memory.swap.max (v2 counts swap alone), memory.low. v2 has no swappiness
    and no way to turn the OOM killer off: the engine refuses those before (as Docker)."""
    def put(name: str, value: str, why: str) -> None:
        _fs.write(os.path.join(cgroup_dir, name), value, why=why)

    swap = convert.swap_max(res.memory_swap, res.memory_limit)
    # memory first when raising, swap first when lowering does not matter on v2: the two
    # are separate limits
    if res.memory_limit:
        put("memory.max", str(res.memory_limit) if res.memory_limit > 0 else "max",
            "--memory: the most the container may use; past it, reclaim, then the OOM killer")
    if swap is not None and os.path.exists(os.path.join(cgroup_dir, "memory.swap.max")):
        put("memory.swap.max", swap, "--memory-swap minus --memory: the swap it may use")
    if res.memory_reservation:
        put("memory.low", str(res.memory_reservation),
            "--memory-reservation: memory reclaim leaves it (best effort)")


def oom_kills(cgroup_dir: str) -> int:
    """How many processes the OOM killer killed in the cgroup (memory.events oom_kill)."""
    return _fs.keyed_int(os.path.join(cgroup_dir, "memory.events"), "oom_kill")
