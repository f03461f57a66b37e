"""cgroup v2 manager: one tree, one directory per container.

    /sys/fs/cgroup                       root: may have processes; enables controllers for /minidock
    `-- minidock                         never has processes; enables controllers for its children
        `-- <container-id>               the container's processes (a leaf)

The container's cgroup hangs off the hierarchy root, not off the caller's own cgroup: the
caller's cgroup (e.g. a systemd scope, or /v2vm.slice/cmd.scope in the test VM) holds the
caller, so by the no-internal-process rule it could not delegate controllers to a child.

Device rules become an eBPF program attached to the container's cgroup (v2 has no
devices.allow): see :mod:`minidock.cgroups.v2.devices`.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Mapping, Sequence

from minidock.cgroups import _fs
from minidock.cgroups.base import Manager, Stats
from minidock.cgroups.mountinfo import Layout
from minidock.cgroups.v2 import controllers, cpu, cpuset, devices, freezer, memory
from minidock.cgroups.v2 import io as iostat
from minidock.cgroups.v2 import pids as pidsctl
from minidock.errors import ContainerRuntimeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

    from minidock.oci.runtime import Resources

_NO_INTERNAL_PROCESS_HINT = (
    "a cgroup with processes of its own cannot delegate controllers to children "
    "(the cgroup v2 no-internal-process rule): move those processes into a leaf cgroup first"
)


class V2Manager(Manager):
    version = 2

    def __init__(self, layout: Layout, path: str) -> None:
        assert layout.unified is not None
        self.path = path
        self.layout = layout
        self._root = layout.unified
        self._rel = path.lstrip("/")
        self._dir = os.path.join(self._root, self._rel)

    @property
    def dir(self) -> str:
        """The container's cgroup directory."""
        return self._dir

    @property
    def paths(self) -> dict[str, str]:
        return {"": self._dir}

    # --- lifecycle ---

    def create(self) -> None:
        created: list[str] = []

        def make() -> None:
            parent = self._root
            for part in self._rel.split("/"):
                self._enable_controllers(parent)
                d = os.path.join(parent, part)
                if _fs.mkdir(d, why="a cgroup for the container (cgroup v2: one tree)"):
                    created.append(d)
                parent = d

        try:
            make()
        except (OSError, ContainerRuntimeError) as e:
            for d in reversed(created):
                try:
                    _fs.rmdir(d, why="undo a partly created cgroup")
                except OSError:
                    pass
            if isinstance(e, OSError):
                raise _fs.runtime_error("create cgroup", e, self._dir) from e
            raise

    def _enable_controllers(self, cgroup_dir: str) -> None:
        try:
            controllers.enable_all(cgroup_dir)
        except OSError as e:
            hint = _NO_INTERNAL_PROCESS_HINT if e.errno == errno.EBUSY else None
            raise _fs.runtime_error("enable controllers in", e, e.filename, hint) from e

    def add_process(self, pid: int) -> None:
        try:
            _fs.write(
                os.path.join(self._dir, "cgroup.procs"),
                str(pid),
                why="move the process into the container's cgroup",
            )
        except OSError as e:
            raise _fs.runtime_error(f"add process {pid} to cgroup", e, self._dir) from e

    def birth_dir(self) -> str | None:
        return self._dir

    def pids(self) -> list[int]:
        return _fs.procs(self._dir)

    def exists(self) -> bool:
        return os.path.isdir(self._dir)

    def populated(self) -> bool:
        """Whether any process is in the cgroup or below (cgroup.events)."""
        try:
            events = _fs.read_keyed(os.path.join(self._dir, "cgroup.events"))
        except FileNotFoundError:
            return False
        return events.get("populated") == "1"

    def freeze(self) -> None:
        try:
            freezer.freeze(self._dir)
        except OSError as e:
            raise _fs.runtime_error("freeze cgroup", e, self._dir) from e

    def thaw(self) -> None:
        try:
            freezer.thaw(self._dir)
        except OSError as e:
            raise _fs.runtime_error("thaw cgroup", e, self._dir) from e

    def frozen(self) -> bool:
        return freezer.frozen(self._dir)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        kill_file = os.path.join(self._dir, "cgroup.kill")
        try:
            if sig == signal.SIGKILL and os.path.exists(kill_file):
                # Linux 5.14+: the kernel kills the whole subtree, forks in flight included.
                _fs.write(kill_file, "1", why="SIGKILL every process in the container's cgroup")
            elif freezer.supported(self._dir):
                _fs.kill_frozen(
                    lambda: freezer.freeze(self._dir),
                    lambda: freezer.thaw(self._dir),
                    self.pids,
                    sig,
                )
            else:
                _fs.signal_pids(self.pids(), sig)
        except OSError as e:
            raise _fs.runtime_error(f"kill processes (signal {sig}) in cgroup", e, self._dir) from e
        if sig == signal.SIGKILL and not _fs.wait_until(lambda: not self.populated()):
            raise ContainerRuntimeError(
                f"kill processes in cgroup {self._dir}: {len(self.pids())} still running "
                "after SIGKILL (stuck in the kernel?)"
            )

    def destroy(self) -> None:
        if not self.exists():
            return
        failure: ContainerRuntimeError | None = None
        try:
            self.kill_all(signal.SIGKILL)
        except ContainerRuntimeError as e:
            failure = e  # still try to remove it
        try:
            _fs.remove_tree(self._dir, why="the container is gone: remove its cgroup")
        except OSError as e:
            raise failure or _fs.runtime_error("remove cgroup", e) from e
        if failure:
            raise failure

    # --- controllers ---

    def apply_device_rules(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """Compile the rules into an eBPF device program attached to the cgroup."""
        try:
            devices.apply(self._dir, rules)
        except OSError as e:
            raise _fs.runtime_error("attach the device filter to cgroup", e, self._dir) from e

    def _limit_setter(self, kind: str) -> tuple[str, Callable[[str, Resources], None]]:
        setter = {"memory": memory.set_limits, "cpu": cpu.set_limits,
                  "cpuset": cpuset.set_limits, "pids": pidsctl.set_limits,
                  "io": iostat.set_limits}[kind]
        if kind not in controllers.enabled(os.path.dirname(self._dir)):
            raise ContainerRuntimeError(
                f"set {kind} limits of cgroup {self._dir}: the {kind} controller is not "
                "enabled for it (cgroup.subtree_control of its parent)")
        return self._dir, setter

    def oom_kills(self) -> int:
        return memory.oom_kills(self._dir)

    def stats(self) -> Stats:
        io_bytes = iostat.io_bytes(self._dir)
        return Stats(
            memory_usage_bytes=memory.usage(self._dir),
            pids_current=pidsctl.current(self._dir),
            memory_limit_bytes=memory.limit(self._dir),
            memory_inactive_file=memory.inactive_file(self._dir),
            cpu_usage_ns=cpu.usage_ns(self._dir),
            io_read_bytes=io_bytes[0] if io_bytes else None,
            io_write_bytes=io_bytes[1] if io_bytes else None,
        )
