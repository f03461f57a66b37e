"""v1 cpuset controller.

A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and the kernel refuses
to move a process into it (ENOSPC) until both are set. Each level we create copies its
parent's values (what cgroup.clone_children would do, without changing the parent's flag).
"""

from __future__ import annotations

import os

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


def inherit(parent_dir: str, cgroup_dir: str) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        path = os.path.join(cgroup_dir, name)
        if _fs.read(path).strip():
            continue
        value = _fs.read(os.path.join(parent_dir, name)).strip()
        _fs.write(path, value, why=f"a new v1 cpuset is empty: copy {name} from its parent")


def set_limits(cgroup_dir: str, res: Resources) -> None:
    _fs.write_cpuset(cgroup_dir, res.cpuset_cpus, res.cpuset_mems)
