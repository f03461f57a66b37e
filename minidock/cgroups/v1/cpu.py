"""v1 cpu controller: shares and the CFS quota (cpu.shares, cpu.cfs_period_us,
cpu.cfs_quota_us), and cpu.stat's throttling counters."""

from __future__ import annotations

import os

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


def set_limits(cgroup_dir: str, res: Resources) -> None:
    def put(name: str, value: int, why: str) -> None:
        _fs.write(os.path.join(cgroup_dir, name), str(value), why=why)

    if res.cpu_shares:
        put("cpu.shares", res.cpu_shares, "--cpu-shares: the relative weight under contention")
    # the period first: a quota is checked against the period in place
    if res.cpu_period:
        put("cpu.cfs_period_us", res.cpu_period, "--cpu-period / --cpus: the CFS period")
    if res.cpu_quota:
        put("cpu.cfs_quota_us", res.cpu_quota,
            "--cpu-quota / --cpus: CPU time allowed per period (-1: no limit)")
