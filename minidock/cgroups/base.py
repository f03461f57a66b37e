"""The cgroup manager interface shared by the v1 and v2 implementations, and its pure helpers."""

from __future__ import annotations

import abc
import posixpath
import signal
from collections.abc import Callable, Mapping, Sequence

from minidock.errors import InvalidArgument
from minidock.records import record

#: Parent of every container's cgroup: a container gets ``/minidock/<id>``.
PARENT = "/minidock"


def default_cgroups_path(container_id: str) -> str:
    """What the engine puts in the OCI spec's ``linux.cgroupsPath`` for a container."""
    return f"{PARENT}/{container_id}"


def normalize_cgroups_path(cgroups_path: str) -> str:
    """``minidock/abc`` or ``/minidock//abc/`` -> ``/minidock/abc``.

    Paths are taken relative to the root of every hierarchy (never relative to the caller's
    own cgroup). systemd-driver paths (``slice:prefix:name``) and ``..`` are refused.
    """
    if ":" in cgroups_path:
        raise InvalidArgument(
            f"cgroups path {cgroups_path!r}: the systemd form slice:prefix:name is not supported",
            hint="use a cgroupfs path such as /minidock/<container-id>",
        )
    parts = [p for p in cgroups_path.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise InvalidArgument(
            f"cgroups path {cgroups_path!r}: must name a cgroup below the root, without '..'"
        )
    return posixpath.join("/", *parts)


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any, TypedDict

    from minidock.oci.runtime import Resources

    class _DeviceRuleRequired(TypedDict):
        allow: bool

    class DeviceRule(_DeviceRuleRequired, total=False):
        """One OCI ``linux.resources.devices`` entry; a missing major/minor (or -1): any."""

        type: str  # "a" (all), "c" (char), "b" (block)
        major: int | None
        minor: int | None
        access: str  # a subset of "rwm"
else:
    DeviceRule = dict  # at run time a DeviceRule is the plain dict the checker sees above


def _dev(
    type_: str, major: int | None, minor: int | None, access: str = "rwm"
) -> DeviceRule:
    return {"allow": True, "type": type_, "major": major, "minor": minor, "access": access}


#: Docker's default device policy: nothing except the basic character devices, the ptys, and
#: mknod (but no read/write) of anything.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    {"allow": False, "access": "rwm"},  # deny all
    _dev("c", None, None, "m"),  # mknod of any char device
    _dev("b", None, None, "m"),  # mknod of any block device
    _dev("c", 1, 3),  # /dev/null
    _dev("c", 1, 5),  # /dev/zero
    _dev("c", 1, 7),  # /dev/full
    _dev("c", 1, 8),  # /dev/random
    _dev("c", 1, 9),  # /dev/urandom
    _dev("c", 5, 0),  # /dev/tty
    _dev("c", 5, 1),  # /dev/console
    _dev("c", 5, 2),  # /dev/ptmx
    _dev("c", 136, None),  # /dev/pts/*
)


def device_rule_line(rule: Mapping[str, Any]) -> tuple[str, str]:
    """An OCI device rule as the v1 devices cgroup takes it: (file, line).

    ``{"allow": False}`` -> ``("devices.deny", "a")``;
    ``{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}``
    -> ``("devices.allow", "c 1:3 rwm")``. Takes plain dicts (config.json) as well as
    :class:`DeviceRule`, so the fields are checked here.
    """
    type_ = rule.get("type") or "a"
    access = rule.get("access") or "rwm"
    allow = rule.get("allow")
    major, minor = rule.get("major"), rule.get("minor")
    if not isinstance(allow, bool):
        raise InvalidArgument(f"device rule {dict(rule)!r}: allow must be true or false")
    if type_ not in ("a", "b", "c"):
        raise InvalidArgument(f"device rule {dict(rule)!r}: type must be a, b or c")
    if not isinstance(access, str) or set(access) - set("rwm"):
        raise InvalidArgument(f"device rule {dict(rule)!r}: access must be a subset of rwm")
    for v in (major, minor):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise InvalidArgument(f"device rule {dict(rule)!r}: major/minor must be numbers")
    target = "devices.allow" if allow else "devices.deny"

    def num(v: int | None) -> str:
        return "*" if v is None or v < 0 else str(v)

    if type_ == "a" and major in (None, -1) and minor in (None, -1) and access == "rwm":
        return target, "a"
    return target, f"{type_} {num(major)}:{num(minor)} {access}"


def limits_wanted(res: Resources) -> list[str]:
    """Which kinds of limit ``res`` sets: "memory", "cpu", "cpuset", "pids", "io"."""
    wants = {
        "memory": res.memory_limit or res.memory_swap or res.memory_reservation
        or res.memory_swappiness is not None or res.disable_oom_killer,
        "cpu": res.cpu_shares or res.cpu_quota or res.cpu_period,
        "cpuset": res.cpuset_cpus or res.cpuset_mems,
        "pids": res.pids_limit is not None,
        "io": res.blkio_weight or res.throttle_read_bps or res.throttle_write_bps,
    }
    return [kind for kind, wanted in wants.items() if wanted]


@record(frozen=True)
class Stats:
    """One reading of the container's cgroup; None where the controller is not available."""

    memory_usage_bytes: int | None
    pids_current: int | None
    memory_limit_bytes: int | None = None  # None: no limit
    memory_inactive_file: int | None = None
    cpu_usage_ns: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None


class Manager(abc.ABC):
    """One container's cgroup, in every hierarchy the host has.

    Get one from :func:`minidock.cgroups.new_manager`. Every method raises
    ContainerRuntimeError naming the action and the path (with the OSError chained).
    """

    #: 1 (v1 or hybrid host) or 2 (pure cgroup v2 host)
    version: int
    #: The container's cgroup relative to each hierarchy root, e.g. ``/minidock/<id>``.
    path: str

    @property
    @abc.abstractmethod
    def paths(self) -> dict[str, str]:
        """Directory of the cgroup per hierarchy, keyed by controller (``""``: cgroup2)."""

    @abc.abstractmethod
    def create(self) -> None:
        """Create the cgroup (and missing parents) wherever needed. Idempotent.

        A failure removes what this call created.
        """

    @abc.abstractmethod
    def add_process(self, pid: int) -> None:
        """Move ``pid`` into the cgroup in every hierarchy."""

    def birth_dir(self) -> str | None:
        """The directory a new process can be created in (clone3 with CLONE_INTO_CGROUP) to
        be in this cgroup everywhere at once, or None when it must be moved with
        :meth:`add_process` (a v1 hierarchy cannot take a process at birth)."""
        return None

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """The processes in the cgroup and its sub-cgroups, sorted."""

    @abc.abstractmethod
    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process; for SIGKILL, return once the cgroup is empty."""

    @abc.abstractmethod
    def freeze(self) -> None:
        """Freeze every process and return once the kernel reports the cgroup frozen."""

    @abc.abstractmethod
    def thaw(self) -> None:
        """Undo :meth:`freeze`."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Kill what is left and remove the cgroup everywhere. Idempotent.

        The parent (``/minidock``) stays, as Docker's ``/docker`` does: removing it when
        empty raced with a container being created under it at that moment (the kernel
        answers such a mkdir with ENODEV, not ENOENT).
        """

    @abc.abstractmethod
    def exists(self) -> bool:
        """True while the cgroup directory exists in any hierarchy."""

    @abc.abstractmethod
    def apply_device_rules(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """Apply OCI device rules in order (the first is normally "deny all")."""

    def apply_resources(self, res: Resources) -> None:
        """Write the limits ``res`` sets (None and "" leave a value as it is), at create and
        for ``update``. A value the kernel refuses raises ContainerRuntimeError naming the
        file (e.g. a memory limit below what is in use: device or resource busy)."""
        from minidock.cgroups import _fs

        for kind in limits_wanted(res):
            directory, setter = self._limit_setter(kind)
            try:
                setter(directory, res)
            except OSError as e:
                name = posixpath.basename(e.filename or kind)
                raise _fs.runtime_error(f"set {name} of cgroup", e, directory) from e

    @abc.abstractmethod
    def _limit_setter(self, kind: str) -> tuple[str, Callable[[str, Resources], None]]:
        """(the directory, the function) that write a kind of limit (limits_wanted's
        words); ContainerRuntimeError when the controller is not there for the cgroup."""

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many tasks the OOM killer has killed in the cgroup so far."""

    @abc.abstractmethod
    def stats(self) -> Stats:
        """Memory usage and process count."""
