"""cgroup v1 (and hybrid) manager: one directory per hierarchy.

On v1 every controller (or group of co-mounted controllers) is its own tree, so a container's
cgroup ``/minidock/<id>`` is really one directory per hierarchy::

    /sys/fs/cgroup/memory/minidock/<id>      /sys/fs/cgroup/pids/minidock/<id>
    /sys/fs/cgroup/cpu/minidock/<id>         /sys/fs/cgroup/systemd/minidock/<id>  (name=systemd)
    ...                                      /sys/fs/cgroup/unified/minidock/<id>  (hybrid only)

and a process joins the container's cgroup by being written to cgroup.procs in each of them.
The named hierarchies (name=systemd) have no controller, but systemd tools read them to tell
which unit a process belongs to. The cgroup2 mount of a hybrid host holds no controllers; the
directory there is best effort (created and joined when possible, never an error).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack

from minidock.cgroups import _fs
from minidock.cgroups.base import Manager, Stats
from minidock.cgroups.mountinfo import CgroupMount, Layout
from minidock.cgroups.v1 import blkio, cpu, cpuacct, cpuset, devices, freezer, memory
from minidock.cgroups.v1 import pids as pidsctl
from minidock.errors import ContainerRuntimeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

    from minidock.oci.runtime import Resources

# Where pids() reads cgroup.procs: any hierarchy would do; these exist on every v1 host.
_PRIMARY = ("pids", "freezer", "memory", "devices", "cpu", "name=systemd")


class V1Manager(Manager):
    version = 1

    def __init__(self, layout: Layout, path: str) -> None:
        self.path = path
        self.layout = layout
        self._rel = path.lstrip("/")
        self._hierarchies: list[tuple[CgroupMount, str]] = [
            (m, os.path.join(m.mount_point, self._rel)) for m in layout.hierarchies
        ]
        self._unified = os.path.join(layout.unified, self._rel) if layout.unified else None

    # --- where things are ---

    @property
    def paths(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for mount, d in self._hierarchies:
            for controller in sorted(mount.controllers) or [mount.name]:
                out[controller] = d
        if self._unified:
            out[""] = self._unified
        return out

    def _dir_of(self, controller: str) -> str | None:
        for mount, d in self._hierarchies:
            if controller in mount.controllers:
                return d
        return None

    def _primary(self) -> str:
        for controller in _PRIMARY:
            d = self._dir_of(controller)
            if d:
                return d
        return self._hierarchies[0][1]

    def _all_dirs(self) -> list[str]:
        dirs = [d for _, d in self._hierarchies]
        if self._unified:
            dirs.append(self._unified)
        return dirs

    # --- lifecycle ---

    def create(self) -> None:
        created: list[str] = []
        try:
            with ExitStack() as undo:
                undo.callback(self._rollback, created)  # what _mkdirs made, however far it got
                for mount, _leaf in self._hierarchies:
                    self._mkdirs(mount, created)
                undo.pop_all()
        except OSError as e:
            raise _fs.runtime_error("create cgroup", e) from e
        if self._unified:
            try:
                self._mkdirs(None, created)
            except OSError:
                pass  # optional: only for systemd-style tools on hybrid hosts

    def _mkdirs(self, mount: CgroupMount | None, created: list[str]) -> bool:
        """mkdir each missing level of the path in one hierarchy; True if the leaf is new."""
        top = mount.mount_point if mount else self.layout.unified
        assert top is not None
        label = mount.name if mount else "unified (cgroup2, no controllers)"
        is_cpuset = mount is not None and "cpuset" in mount.controllers
        parent = top
        new = False
        for part in self._rel.split("/"):
            d = os.path.join(parent, part)
            new = _fs.mkdir(d, why=f"a cgroup for the container in the {label} hierarchy")
            if new:
                created.append(d)
            if is_cpuset:
                cpuset.inherit(parent, d)
            parent = d
        return new

    def _rollback(self, created: list[str]) -> None:
        for d in reversed(created):
            try:
                _fs.rmdir(d, why="undo a partly created cgroup")
            except OSError:
                pass

    def add_process(self, pid: int) -> None:
        for mount, d in self._hierarchies:
            try:
                _fs.write(
                    os.path.join(d, "cgroup.procs"),
                    str(pid),
                    why=f"move the process into the container's cgroup ({mount.name})",
                )
            except OSError as e:
                raise _fs.runtime_error(f"add process {pid} to cgroup", e, d) from e
        if self._unified and os.path.isdir(self._unified):
            try:
                _fs.write(
                    os.path.join(self._unified, "cgroup.procs"),
                    str(pid),
                    why="same in the controller-less cgroup2 tree (systemd tracks processes there)",
                )
            except OSError:
                pass

    def pids(self) -> list[int]:
        return _fs.procs(self._primary())

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._all_dirs())

    def freeze(self) -> None:
        d = self._freezer_dir("freeze")
        try:
            freezer.freeze(d)
        except OSError as e:
            raise _fs.runtime_error("freeze cgroup", e, d) from e

    def thaw(self) -> None:
        d = self._freezer_dir("thaw")
        try:
            freezer.thaw(d)
        except OSError as e:
            raise _fs.runtime_error("thaw cgroup", e, d) from e

    def freezer_state(self) -> str:
        """THAWED, FREEZING or FROZEN."""
        return freezer.state(self._freezer_dir("read freezer state of"))

    def _freezer_dir(self, action: str) -> str:
        d = self._dir_of("freezer")
        if d is None:
            raise ContainerRuntimeError(
                f"{action} cgroup {self.path}: the v1 freezer controller is not mounted"
            )
        return d

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        primary = self._primary()
        d = self._dir_of("freezer")
        try:
            if d is not None and os.path.isdir(d):
                _fs.kill_frozen(
                    lambda: freezer.freeze(d), lambda: freezer.thaw(d), self.pids, sig
                )
            else:
                _fs.signal_pids(self.pids(), sig)
        except OSError as e:
            raise _fs.runtime_error(f"kill processes (signal {sig}) in cgroup", e, primary) from e
        if sig == signal.SIGKILL and not _fs.wait_until(lambda: not self.pids()):
            raise ContainerRuntimeError(
                f"kill processes in cgroup {primary}: {len(self.pids())} still running "
                "after SIGKILL (stuck in the kernel?)"
            )

    def destroy(self) -> None:
        if not self.exists():
            return
        failure: ContainerRuntimeError | None = None
        if os.path.isdir(self._primary()) and self.pids():  # an empty cgroup needs no freeze
            try:
                self.kill_all(signal.SIGKILL)
            except ContainerRuntimeError as e:
                failure = e  # still try to remove what can be removed
        for d in self._all_dirs():
            try:
                _fs.remove_tree(d, why="the container is gone: remove its cgroup")
            except OSError as e:
                failure = failure or _fs.runtime_error("remove cgroup", e)
        if failure:
            raise failure

    # --- controllers ---

    def apply_device_rules(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """Write the rules to devices.allow/devices.deny (not enforced if devices is unmounted)."""
        d = self._dir_of("devices")
        if d is None:
            return
        try:
            devices.apply(d, rules)
        except OSError as e:
            raise _fs.runtime_error("set device rules of cgroup", e, d) from e

    def _limit_setter(self, kind: str) -> tuple[str, Callable[[str, Resources], None]]:
        controller, setter = {
            "memory": ("memory", memory.set_limits), "cpu": ("cpu", cpu.set_limits),
            "cpuset": ("cpuset", cpuset.set_limits), "pids": ("pids", pidsctl.set_limits),
            "io": ("blkio", blkio.set_limits)}[kind]
        d = self._dir_of(controller)
        if d is None:
            raise ContainerRuntimeError(
                f"set {controller} limits of cgroup {self.path}: the v1 {controller} "
                "controller is not mounted")
        return d, setter

    def oom_kills(self) -> int:
        d = self._dir_of("memory")
        return memory.oom_kills(d) if d else 0

    def stats(self) -> Stats:
        mem, pid = self._dir_of("memory"), self._dir_of("pids")
        cpu, blk = self._dir_of("cpuacct"), self._dir_of("blkio")
        io = blkio.io_bytes(blk) if blk else None
        return Stats(
            memory_usage_bytes=memory.usage(mem) if mem else None,
            pids_current=pidsctl.current(pid) if pid else None,
            memory_limit_bytes=memory.limit(mem) if mem else None,
            memory_inactive_file=memory.inactive_file(mem) if mem else None,
            cpu_usage_ns=cpuacct.usage_ns(cpu) if cpu else None,
            io_read_bytes=io[0] if io else None,
            io_write_bytes=io[1] if io else None,
        )
