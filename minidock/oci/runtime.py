"""The OCI runtime-spec ``config.json``, converted once into validated records.

The engine writes config.json; the runtime reads it with :func:`load` and from then on works
only with these types, never with the raw dict. Only the fields minidock implements are
modelled; unknown fields are ignored as the spec allows, but a field that we model and that
has the wrong type is an error, so a hand-edited bundle fails early and clearly.
Spec: https://github.com/opencontainers/runtime-spec/blob/main/config.md
"""

from __future__ import annotations

import json

from minidock.errors import InvalidArgument
from minidock.records import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.0.2"

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")

# Docker's default capability set: CapEff 00000000a80425fb.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


# Every capability by its kernel number (include/uapi/linux/capability.h).
CAP_NUMBERS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def _bad(where: str, expected: str) -> InvalidArgument:
    return InvalidArgument(f"invalid OCI config: {where} must be {expected}")


def _str(d: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise _bad(f"{where}.{key}", "a string")
    return v


def _strlist(d: dict[str, Any], key: str, where: str) -> list[str]:
    v = d.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(f"{where}.{key}", "a list of strings")
    return list(v)


def _int(d: dict[str, Any], key: str, where: str, default: int = 0) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"{where}.{key}", "an integer")
    return v


@record
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)


@record
class Capabilities:
    bounding: list[str] = field(default_factory=list)
    effective: list[str] = field(default_factory=list)
    permitted: list[str] = field(default_factory=list)
    inheritable: list[str] = field(default_factory=list)
    ambient: list[str] = field(default_factory=list)


@record
class Rlimit:
    """One ``process.rlimits`` entry: RLIMIT_NOFILE and friends, soft and hard."""

    type: str
    soft: int
    hard: int


@record
class Process:
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    terminal: bool = False
    user: User = field(default_factory=User)
    capabilities: Capabilities | None = None
    no_new_privileges: bool = False
    console_size: tuple[int, int] | None = None  # (height, width)
    rlimits: list[Rlimit] = field(default_factory=list)


@record
class IDMapping:
    """One ``linux.uidMappings`` / ``gidMappings`` range (a uid_map line), or a mount's."""

    container_id: int
    host_id: int
    size: int


@record
class Mount:
    destination: str
    type: str | None = None
    source: str | None = None
    options: list[str] = field(default_factory=list)
    #: OCI 1.1 idmapped bind mounts: the source seen through this mapping
    uid_mappings: list[IDMapping] = field(default_factory=list)
    gid_mappings: list[IDMapping] = field(default_factory=list)


@record
class Namespace:
    type: str
    path: str | None = None


@record
class DeviceRule:
    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def to_dict(self) -> dict[str, Any]:
        return {"allow": self.allow, "type": self.type, "major": self.major,
                "minor": self.minor, "access": self.access}


@record
class Device:
    path: str
    type: str
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


SECCOMP_ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)
SECCOMP_OPS = (
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)


@record
class SeccompArg:
    """One argument condition: ``args[index] <op> value`` (MASKED_EQ: ``& value == valueTwo``)."""

    index: int
    value: int
    op: str
    value_two: int = 0


@record
class SeccompSyscall:
    names: list[str]
    action: str
    errno_ret: int | None = None
    args: list[SeccompArg] = field(default_factory=list)


@record
class Seccomp:
    """``linux.seccomp``: what the runtime compiles into a BPF filter (runtime/seccomp.py)."""

    default_action: str
    default_errno_ret: int | None = None
    architectures: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    syscalls: list[SeccompSyscall] = field(default_factory=list)


@record
class ThrottleDevice:
    """One ``blockIO.throttle{Read,Write}BpsDevice`` entry: bytes per second on a device."""

    major: int
    minor: int
    rate: int


@record
class Resources:
    """``linux.resources`` beyond the device rules: the limits the cgroup manager writes.
    None (or "") leaves the kernel's default. ``memory_swap`` is memory plus swap, as OCI
    and cgroup v1 count it (-1: unlimited); cgroup v2 takes swap alone (the v2 manager
    converts)."""

    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    disable_oom_killer: bool = False
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None
    blkio_weight: int | None = None
    throttle_read_bps: list[ThrottleDevice] = field(default_factory=list)
    throttle_write_bps: list[ThrottleDevice] = field(default_factory=list)

    def empty(self) -> bool:
        return self == Resources()


@record
class Linux:
    namespaces: list[Namespace] = field(default_factory=list)
    cgroups_path: str | None = None
    masked_paths: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    device_rules: list[DeviceRule] = field(default_factory=list)
    rootfs_propagation: str = ""
    seccomp: Seccomp | None = None
    resources: Resources = field(default_factory=Resources)
    sysctl: dict[str, str] = field(default_factory=dict)
    uid_mappings: list[IDMapping] = field(default_factory=list)
    gid_mappings: list[IDMapping] = field(default_factory=list)

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


@record
class Spec:
    process: Process
    root_path: str
    root_readonly: bool = False
    hostname: str = ""
    mounts: list[Mount] = field(default_factory=list)
    linux: Linux = field(default_factory=Linux)
    annotations: dict[str, str] = field(default_factory=dict)
    oci_version: str = OCI_VERSION


def parse(doc: Any) -> Spec:
    """Validate a decoded config.json and convert it to a :class:`Spec`."""
    if not isinstance(doc, dict):
        raise _bad("config", "a JSON object")
    p = doc.get("process")
    if not isinstance(p, dict):
        raise _bad("process", "an object")
    args = _strlist(p, "args", "process")
    if not args:
        raise InvalidArgument("invalid OCI config: process.args must not be empty")
    u = p.get("user") or {}
    if not isinstance(u, dict):
        raise _bad("process.user", "an object")
    gids = u.get("additionalGids") or []
    if not isinstance(gids, list) or not all(isinstance(g, int) for g in gids):
        raise _bad("process.user.additionalGids", "a list of integers")
    caps = None
    if isinstance(p.get("capabilities"), dict):
        c = p["capabilities"]
        caps = Capabilities(*(_strlist(c, k, "process.capabilities") for k in
                              ("bounding", "effective", "permitted", "inheritable", "ambient")))
    size = p.get("consoleSize")
    console_size = None
    if isinstance(size, dict):
        console_size = (_int(size, "height", "process.consoleSize"),
                        _int(size, "width", "process.consoleSize"))
    cwd = _str(p, "cwd", "process", "/")
    if not cwd.startswith("/"):
        raise InvalidArgument(f"invalid OCI config: process.cwd {cwd!r} must be absolute")
    process = Process(
        args=args,
        env=_strlist(p, "env", "process"),
        cwd=cwd,
        terminal=bool(p.get("terminal", False)),
        user=User(_int(u, "uid", "process.user"), _int(u, "gid", "process.user"), list(gids)),
        capabilities=caps,
        no_new_privileges=bool(p.get("noNewPrivileges", False)),
        console_size=console_size,
        rlimits=[Rlimit(_str(r, "type", "process.rlimits"), _u64(r, "soft", "process.rlimits"),
                        _u64(r, "hard", "process.rlimits"))
                 for r in p.get("rlimits") or []],
    )
    root = doc.get("root")
    if not isinstance(root, dict):
        raise _bad("root", "an object")
    mounts = []
    for i, m in enumerate(doc.get("mounts") or []):
        if not isinstance(m, dict):
            raise _bad(f"mounts[{i}]", "an object")
        dest = _str(m, "destination", f"mounts[{i}]")
        if not dest.startswith("/"):
            raise InvalidArgument(
                f"invalid OCI config: mount destination {dest!r} must be absolute")
        mounts.append(Mount(dest, m.get("type"), m.get("source"),
                            _strlist(m, "options", f"mounts[{i}]"),
                            _mappings(m, "uidMappings", f"mounts[{i}]"),
                            _mappings(m, "gidMappings", f"mounts[{i}]")))
    lx = doc.get("linux") or {}
    if not isinstance(lx, dict):
        raise _bad("linux", "an object")
    namespaces = []
    for i, ns in enumerate(lx.get("namespaces") or []):
        kind = _str(ns, "type", f"linux.namespaces[{i}]")
        if kind not in NAMESPACE_TYPES:
            raise InvalidArgument(f"invalid OCI config: unknown namespace type {kind!r}")
        namespaces.append(Namespace(kind, ns.get("path") or None))
    devices = [
        Device(_str(d, "path", "linux.devices"), _str(d, "type", "linux.devices"),
               _int(d, "major", "linux.devices"), _int(d, "minor", "linux.devices"),
               _int(d, "fileMode", "linux.devices", 0o666), _int(d, "uid", "linux.devices"),
               _int(d, "gid", "linux.devices"))
        for d in lx.get("devices") or []
    ]
    res = lx.get("resources") or {}
    rules = [
        DeviceRule(bool(r.get("allow")), r.get("type") or "a", r.get("major"), r.get("minor"),
                   r.get("access") or "rwm")
        for r in res.get("devices") or []
    ]
    linux = Linux(
        namespaces=namespaces,
        cgroups_path=lx.get("cgroupsPath") or None,
        masked_paths=_strlist(lx, "maskedPaths", "linux"),
        readonly_paths=_strlist(lx, "readonlyPaths", "linux"),
        devices=devices,
        device_rules=rules,
        rootfs_propagation=lx.get("rootfsPropagation") or "",
        seccomp=_seccomp(lx["seccomp"]) if lx.get("seccomp") is not None else None,
        resources=_resources(res),
        sysctl=_sysctl(lx.get("sysctl")),
        uid_mappings=_mappings(lx, "uidMappings", "linux"),
        gid_mappings=_mappings(lx, "gidMappings", "linux"),
    )
    if bool(linux.uid_mappings) != bool(linux.gid_mappings):
        raise InvalidArgument("invalid OCI config: linux.uidMappings and linux.gidMappings "
                              "go together")
    userns = linux.namespace("user")
    if linux.uid_mappings and (userns is None or userns.path):
        raise InvalidArgument("invalid OCI config: linux.uidMappings need a new user "
                              "namespace (a \"user\" entry without a path)")
    annotations = doc.get("annotations") or {}
    return Spec(
        process=process,
        root_path=_str(root, "path", "root"),
        root_readonly=bool(root.get("readonly", False)),
        hostname=doc.get("hostname") or "",
        mounts=mounts,
        linux=linux,
        annotations=dict(annotations),
        oci_version=doc.get("ociVersion") or OCI_VERSION,
    )


def _mappings(d: dict[str, Any], key: str, where: str) -> list[IDMapping]:
    raw = d.get(key) or []
    if not isinstance(raw, list):
        raise _bad(f"{where}.{key}", "a list")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise _bad(f"{where}.{key}", "a list of objects")
        one = IDMapping(_u32(m, "containerID", f"{where}.{key}"),
                        _u32(m, "hostID", f"{where}.{key}"), _u32(m, "size", f"{where}.{key}"))
        if one.size == 0:
            raise _bad(f"{where}.{key}", "ranges of at least one id")
        out.append(one)
    return out


def _u32(d: dict[str, Any], key: str, where: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 32:
        raise _bad(f"{where}.{key}", "an integer from 0 to 4294967295")
    return v


def _sysctl(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise _bad("linux.sysctl", "an object of strings")
    return dict(value)


def parse_resources(res: dict[str, Any]) -> Resources:
    """A ``linux.resources`` object (its memory, cpu, pids and blockIO) as a record."""
    if not isinstance(res, dict):
        raise _bad("linux.resources", "an object")
    return _resources(res)


def _resources(res: dict[str, Any]) -> Resources:
    def section(key: str) -> dict[str, Any]:
        v = res.get(key) or {}
        if not isinstance(v, dict):
            raise _bad(f"linux.resources.{key}", "an object")
        return v

    def num(d: dict[str, Any], key: str, where: str) -> int | None:
        return None if d.get(key) is None else _int(d, key, f"linux.resources.{where}")

    def throttle(key: str) -> list[ThrottleDevice]:
        where = f"linux.resources.blockIO.{key}"
        return [ThrottleDevice(_int(t, "major", where), _int(t, "minor", where),
                               _u64(t, "rate", where))
                for t in block.get(key) or []]

    memory, cpu, pids, block = (section(k) for k in ("memory", "cpu", "pids", "blockIO"))
    return Resources(
        memory_limit=num(memory, "limit", "memory"),
        memory_reservation=num(memory, "reservation", "memory"),
        memory_swap=num(memory, "swap", "memory"),
        memory_swappiness=num(memory, "swappiness", "memory"),
        disable_oom_killer=bool(memory.get("disableOOMKiller", False)),
        cpu_shares=num(cpu, "shares", "cpu"), cpu_quota=num(cpu, "quota", "cpu"),
        cpu_period=num(cpu, "period", "cpu"),
        cpuset_cpus=_str(cpu, "cpus", "linux.resources.cpu", ""),
        cpuset_mems=_str(cpu, "mems", "linux.resources.cpu", ""),
        pids_limit=num(pids, "limit", "pids"),
        blkio_weight=num(block, "weight", "blockIO"),
        throttle_read_bps=throttle("throttleReadBpsDevice"),
        throttle_write_bps=throttle("throttleWriteBpsDevice"),
    )


def _u64(d: dict[str, Any], key: str, where: str, default: int = 0) -> int:
    v = _int(d, key, where, default)
    if not 0 <= v < 1 << 64:
        raise _bad(f"{where}.{key}", "an unsigned 64-bit integer")
    return v


def _errno(d: dict[str, Any], key: str, where: str) -> int | None:
    if d.get(key) is None:
        return None
    v = _int(d, key, where)
    if not 0 <= v <= 0xFFFF:
        raise _bad(f"{where}.{key}", "an errno between 0 and 65535")
    return v


def _choice(d: dict[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> str:
    v = _str(d, key, where, "")
    if v not in allowed:
        raise InvalidArgument(f"invalid OCI config: {where}.{key}: unknown value {v!r}")
    return v


def _seccomp(sc: Any) -> Seccomp:
    where = "linux.seccomp"
    if not isinstance(sc, dict):
        raise _bad(where, "an object")
    arches = _strlist(sc, "architectures", where)
    for arch in arches:
        if not arch.startswith("SCMP_ARCH_"):
            raise InvalidArgument(f"invalid OCI config: {where}: unknown architecture {arch!r}")
    syscalls = []
    raw_calls = sc.get("syscalls") or []
    if not isinstance(raw_calls, list):
        raise _bad(f"{where}.syscalls", "a list")
    for i, call in enumerate(raw_calls):
        w = f"{where}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise _bad(w, "an object")
        args = []
        raw_args = call.get("args") or []
        if not isinstance(raw_args, list):
            raise _bad(f"{w}.args", "a list")
        for j, arg in enumerate(raw_args):
            wa = f"{w}.args[{j}]"
            if not isinstance(arg, dict):
                raise _bad(wa, "an object")
            index = _int(arg, "index", wa)
            if not 0 <= index <= 5:
                raise _bad(f"{wa}.index", "between 0 and 5")
            args.append(SeccompArg(index, _u64(arg, "value", wa),
                                   _choice(arg, "op", wa, SECCOMP_OPS),
                                   _u64(arg, "valueTwo", wa)))
        syscalls.append(SeccompSyscall(_strlist(call, "names", w),
                                       _choice(call, "action", w, SECCOMP_ACTIONS),
                                       _errno(call, "errnoRet", w), args))
    return Seccomp(
        default_action=_choice(sc, "defaultAction", where, SECCOMP_ACTIONS),
        default_errno_ret=_errno(sc, "defaultErrnoRet", where),
        architectures=arches,
        flags=_strlist(sc, "flags", where),
        syscalls=syscalls,
    )


def loads(text: str | bytes) -> Spec:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid OCI config: {e}") from None
    return parse(doc)
