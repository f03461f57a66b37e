"""What this host's cgroups can limit: Docker's sysinfo, the part its daemon checks a
container's resource flags against (a value the host cannot enforce is dropped with a
warning, as Docker does).

    v1 / hybrid   read from each hierarchy's root: memory.memsw.limit_in_bytes (swap),
                  memory.swappiness, memory.oom_control, blkio.weight or blkio.bfq.weight,
                  cpuset.effective_cpus / cpuset.effective_mems
    v2            the root's cgroup.controllers (memory, io), memory.swap.max in a child
                  that has the memory controller, cpuset.cpus.effective; v2 has neither
                  swappiness nor a switch for the OOM killer
"""

from __future__ import annotations

import os

from minidock.cgroups import _fs
from minidock.cgroups.mountinfo import read_layout
from minidock.records import record


@record(frozen=True)
class Features:
    swap: bool
    swappiness: bool
    oom_kill_disable: bool
    blkio_weight: bool
    #: the CPUs and memory nodes a cpuset may name ("0-1", "0")
    cpus: str
    mems: str
    #: what --cpus may ask for at most (the CPUs this process may run on, as Go's NumCPU)
    cpu_count: int


def _first(*paths: str) -> str:
    for path in paths:
        try:
            value = _fs.read(path).strip()
        except OSError:
            continue
        if value:
            return value
    return ""


def features(root: str = "/sys/fs/cgroup") -> Features:
    layout = read_layout(root)
    count = len(os.sched_getaffinity(0))
    every_cpu = f"0-{count - 1}" if count > 1 else "0"
    if layout.version == 2:
        top = layout.unified or root
        try:
            controllers = _fs.read(os.path.join(top, "cgroup.controllers")).split()
        except OSError:
            controllers = []
        swap = False
        if "memory" in controllers:
            for entry in os.scandir(top):
                if entry.is_dir() and os.path.exists(os.path.join(entry.path, "memory.max")):
                    swap = os.path.exists(os.path.join(entry.path, "memory.swap.max"))
                    break
        return Features(
            swap=swap, swappiness=False, oom_kill_disable=False,
            blkio_weight="io" in controllers,
            cpus=_first(os.path.join(top, "cpuset.cpus.effective")) or every_cpu,
            mems=_first(os.path.join(top, "cpuset.mems.effective")) or "0",
            cpu_count=count)

    def top_of(controller: str) -> str:
        mount = layout.hierarchy_of(controller)
        return mount.mount_point if mount else "/nonexistent"

    memory, blkio, cpuset = top_of("memory"), top_of("blkio"), top_of("cpuset")
    return Features(
        swap=os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")),
        swappiness=os.path.exists(os.path.join(memory, "memory.swappiness")),
        oom_kill_disable=os.path.exists(os.path.join(memory, "memory.oom_control")),
        blkio_weight=any(os.path.exists(os.path.join(blkio, f))
                         for f in ("blkio.weight", "blkio.bfq.weight")),
        cpus=_first(os.path.join(cpuset, "cpuset.effective_cpus"),
                    os.path.join(cpuset, "cpuset.cpus")) or every_cpu,
        mems=_first(os.path.join(cpuset, "cpuset.effective_mems"),
                    os.path.join(cpuset, "cpuset.mems")) or "0",
        cpu_count=count)
