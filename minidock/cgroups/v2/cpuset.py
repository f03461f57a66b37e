"""v2 cpuset controller: the CPUs and memory nodes a container may use (cpuset.cpus,
cpuset.mems; empty means the parent's)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


def set_limits(cgroup_dir: str, res: Resources) -> None:
    if res.cpuset_cpus:
        _fs.write(os.path.join(cgroup_dir, "cpuset.cpus"), res.cpuset_cpus,
                  why="--cpuset-cpus: the CPUs its tasks may run on")
    if res.cpuset_mems:
        _fs.write(os.path.join(cgroup_dir, "cpuset.mems"), res.cpuset_mems,
                  why="--cpuset-mems: the memory nodes it may allocate from")
