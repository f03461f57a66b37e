"""v2 cpu controller: the weight and the CFS quota (cpu.weight, cpu.max); cpu.stat has the CPU
time even when the controller is not enabled."""

from __future__ import annotations

import os

from minidock.cgroups import _fs, convert

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


def usage_ns(cgroup_dir: str) -> int | None:
    """Nanoseconds of CPU time of the cgroup and below (cpu.stat usage_usec, always there)."""
    try:
        stat = _fs.read_keyed(os.path.join(cgroup_dir, "cpu.stat"))
    except FileNotFoundError:
        return None
    value = stat.get("usage_usec", "")
    return int(value) * 1000 if value.isdigit() else None


def set_limits(cgroup_dir: str, res: Resources) -> None:
    if res.cpu_shares:
        _fs.write(os.path.join(cgroup_dir, "cpu.weight"), str(convert.cpu_weight(res.cpu_shares)),
                  why=f"--cpu-shares {res.cpu_shares} as a v2 weight (1..10000, 100 is the "
                  "default)")
    value = convert.cpu_max(res.cpu_quota, res.cpu_period)
    if value is not None:
        _fs.write(os.path.join(cgroup_dir, "cpu.max"), value,
                  why="--cpus / --cpu-quota / --cpu-period: CPU time allowed per period")
