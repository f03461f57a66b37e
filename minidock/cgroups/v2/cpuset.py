"""v2 cpuset controller: the CPUs and memory nodes a container may use (cpuset.cpus,
cpuset.mems; empty means the parent's)."""

from __future__ import annotations

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


def set_limits(cgroup_dir: str, res: Resources) -> None:
    _fs.write_cpuset(cgroup_dir, res.cpuset_cpus, res.cpuset_mems)
