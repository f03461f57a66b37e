"""Control groups: one interface, one factory, a v1 and a v2 manager.

    mgr = new_manager("/minidock/<id>")   # the OCI spec's linux.cgroupsPath
    mgr.create()                          # mkdir in every hierarchy (v1) or in the tree (v2)
    mgr.add_process(pid)                  # cgroup.procs, everywhere
    mgr.apply_resources(res)              # the limits (oci.runtime.Resources), at create and
                                          # for `update`
    mgr.freeze(); mgr.thaw()              # pause / unpause
    mgr.oom_kills()                       # what the OOM killer took (State.OOMKilled)
    mgr.destroy()                         # kill what is left, rmdir (/minidock stays)

The factory reads /proc/self/mountinfo (:mod:`minidock.cgroups.mountinfo`) to pick:

    layout   cgroup2 at /sys/fs/cgroup?   manager      version   mode()
    v2       yes                          V2Manager    2         "v2"
    hybrid   no, at .../unified           V1Manager    1         "hybrid"  (cgroup2 dir too)
    v1       no                           V1Manager    1         "v1"

Controller-specific steps live in one small module per controller under ``v1/`` and ``v2/``
(freezer, devices, cpu, cpuset, memory, pids, blkio/io): each writes its limits and reads its
counters. ``features()`` says what this host can limit (Docker's sysinfo); ``convert`` holds
runc's v1 -> v2 value conversions.

Driver: minidock writes cgroupfs directly ("cgroupfs" driver); it does not ask systemd to
create scopes, so systemd-form paths (``slice:prefix:name``) are refused.
"""

from __future__ import annotations

import os

from minidock.cgroups.base import (
    DEFAULT_DEVICE_RULES,
    PARENT,
    DeviceRule,
    Manager,
    Stats,
    default_cgroups_path,
    device_rule_line,
    normalize_cgroups_path,
)
from minidock.cgroups.mountinfo import (
    CgroupMount,
    Layout,
    detect_layout,
    parse_mountinfo,
    read_layout,
)

__all__ = [
    "DEFAULT_DEVICE_RULES",
    "DEFAULT_ROOT",
    "DRIVER",
    "PARENT",
    "CgroupMount",
    "DeviceRule",
    "Layout",
    "Manager",
    "Stats",
    "cgroupns_supported",
    "default_cgroups_path",
    "detect_layout",
    "detect_version",
    "device_rule_line",
    "features",
    "mode",
    "new_manager",
    "normalize_cgroups_path",
    "parse_mountinfo",
    "read_layout",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.cgroups.features import Features

DEFAULT_ROOT = "/sys/fs/cgroup"
#: What ``minidock info`` shows as "Cgroup Driver".
DRIVER = "cgroupfs"


def new_manager(cgroups_path: str, root: str = DEFAULT_ROOT) -> Manager:
    """The manager for this host's layout, for the cgroup ``cgroups_path`` (``/minidock/<id>``).

    Raises InvalidArgument for a malformed path, ContainerRuntimeError when no cgroup
    filesystem is mounted. Touches nothing: call ``create()``.
    """
    path = normalize_cgroups_path(cgroups_path)
    layout = read_layout(root)
    if layout.version == 2:
        from minidock.cgroups.v2 import V2Manager

        return V2Manager(layout, path)
    from minidock.cgroups.v1 import V1Manager

    return V1Manager(layout, path)


def features(root: str = DEFAULT_ROOT) -> Features:
    """What this host's cgroups can limit (Docker's sysinfo): cgroups.features."""
    from minidock.cgroups.features import features as read_features

    return read_features(root)


def detect_version(root: str = DEFAULT_ROOT) -> int:
    """2 when cgroup2 is mounted at ``root`` (pure v2); 1 on v1 and hybrid hosts."""
    return read_layout(root).version


def mode(root: str = DEFAULT_ROOT) -> str:
    """ "v1", "v2" or "hybrid"."""
    return read_layout(root).mode


def cgroupns_supported() -> bool:
    """Whether the kernel has cgroup namespaces (4.6+), so a container can get its own."""
    return os.path.exists("/proc/self/ns/cgroup")
