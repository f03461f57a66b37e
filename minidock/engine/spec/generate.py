"""The OCI config.json a container gets: from its image config and ``run`` options.

Pure functions: no I/O. Each ``with_*`` option edits one aspect of the spec, so the
defaults read as a list of Docker's choices and a later flag adds one more
small function instead of a branch in a big one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from minidock.engine.spec import seccomp
from minidock.engine.spec.user import ExecUser
from minidock.errors import InvalidArgument
from minidock.oci.runtime import DEFAULT_CAPABILITIES, OCI_VERSION
from minidock.records import field, record

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# (path, major, minor): the nodes every container gets (Docker's default /dev)
DEFAULT_DEVICES = [
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
]
# the device cgroup: deny everything, then allow the nodes above, ptys and mknod
DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
      for ma, mi in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)]),
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
]


@record
class ProcessOptions:
    """What ``run``/``create`` flags say about the process (None: take the image's)."""

    cmd: list[str] | None = None
    entrypoint: list[str] | None = None  # [] means --entrypoint ""
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    stdin_open: bool = False
    # Docker's HostConfig.SecurityOpt strings; a seccomp=FILE already inlined by the CLI
    security_opt: list[str] = field(default_factory=list)


def command_line(image_entrypoint: Sequence[str] | None, image_cmd: Sequence[str] | None,
                 opts: ProcessOptions) -> list[str]:
    """ENTRYPOINT + CMD, as in the table of reference.md §5.

    ``--entrypoint`` replaces the image's entrypoint and drops the image's CMD; arguments
    after the image name replace CMD.
    """
    if opts.entrypoint is not None:
        entrypoint = list(opts.entrypoint)
        cmd = list(opts.cmd) if opts.cmd is not None else []
    else:
        entrypoint = list(image_entrypoint or [])
        cmd = list(opts.cmd) if opts.cmd else list(image_cmd or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("No command specified")
    return args


def merge_env(image_env: Sequence[str], extra: Sequence[str], hostname: str, tty: bool,
              home: str) -> list[str]:
    """Docker's order: PATH default, HOSTNAME, TERM (with -t), the image's Env, then -e;
    a later KEY replaces an earlier one in place. HOME comes from passwd if unset."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        env["TERM"] = "xterm"
    for item in [*image_env, *extra]:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable: {item!r}")
        env[key] = value if sep else env.get(key, "")
    env.setdefault("HOME", home or "/")
    return [f"{k}={v}" for k, v in env.items()]


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

    SpecOption = Callable[[dict[str, Any]], None]
else:
    SpecOption = Callable  # what type checkers read is above


def base_spec(rootfs: str, args: list[str], env: list[str], cwd: str, user: ExecUser,
              hostname: str, tty: bool) -> dict[str, Any]:
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "devices": [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666,
                         "uid": 0, "gid": 0} for p, ma, mi in DEFAULT_DEVICES],
            "resources": {"devices": DEVICE_RULES},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def with_bind(source: str, destination: str, readonly: bool = False) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        opts = ["rbind", "rprivate"] + (["ro"] if readonly else [])
        spec["mounts"].append({"destination": destination, "type": "bind", "source": source,
                               "options": opts})
    return apply


def with_host_network() -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        ns = spec["linux"]["namespaces"]
        spec["linux"]["namespaces"] = [n for n in ns if n["type"] != "network"]
    return apply


def with_network_namespace(path: str) -> SpecOption:
    """Join an existing network namespace (--network container:X) instead of a new one."""
    def apply(spec: dict[str, Any]) -> None:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = path
    return apply


def with_cgroup_namespace() -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"].append({"type": "cgroup"})
    return apply


def with_cgroups_path(path: str) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["linux"]["cgroupsPath"] = path
    return apply


def with_mounts(mounts: list[dict[str, Any]]) -> SpecOption:
    """The container's volumes, binds and tmpfs mounts: all the mounts in order of depth,
    parents before children (a volume at /etc goes before the /etc/hosts bind), the order
    among equals kept (/dev before /dev/pts)."""
    def apply(spec: dict[str, Any]) -> None:
        spec["mounts"] = sorted([*spec["mounts"], *mounts], key=lambda m: len(
            [p for p in m["destination"].split("/") if p]))
    return apply


def with_root_propagation(value: str) -> SpecOption:
    """linux.rootfsPropagation: how the container's mounts stay tied to the host's
    ("shared" for an rshared volume, "rslave" for an rslave one)."""
    def apply(spec: dict[str, Any]) -> None:
        spec["linux"]["rootfsPropagation"] = value
    return apply


INIT_PATH = "/sbin/docker-init"  # where Docker puts its init (tini) in a container


def with_init(binary: str) -> SpecOption:
    """--init: minidock's init (native/init.c) bound read-only at /sbin/docker-init as the
    container's PID 1, the command its child: signals passed on, zombies reaped."""
    def apply(spec: dict[str, Any]) -> None:
        spec["mounts"].append({"destination": INIT_PATH, "type": "bind", "source": binary,
                               "options": ["rbind", "rprivate", "ro"]})
        spec["process"]["args"] = [INIT_PATH, "--", *spec["process"]["args"]]
    return apply


def with_readonly_rootfs() -> SpecOption:
    """--read-only: the root filesystem mounted read-only (mounts on it stay as they are)."""
    def apply(spec: dict[str, Any]) -> None:
        spec["root"]["readonly"] = True
    return apply


def with_resources(resources: dict[str, Any]) -> SpecOption:
    """The limits of linux.resources (memory, cpu, pids, blockIO) beside the device rules."""
    def apply(spec: dict[str, Any]) -> None:
        spec["linux"].setdefault("resources", {}).update(resources)
    return apply


def with_console_size(height: int, width: int) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["process"]["consoleSize"] = {"height": height, "width": width}
    return apply


def with_annotations(annotations: dict[str, str]) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec.setdefault("annotations", {}).update(annotations)
    return apply


def with_no_new_privileges() -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["process"]["noNewPrivileges"] = True
    return apply


def with_seccomp(profile: dict[str, Any] | None,
                 host: tuple[str, str, tuple[int, int]] | None = None) -> SpecOption:
    """Confine the process with a Docker-format seccomp profile (None: unconfined).

    Apply it after every option that changes capabilities: the profile's capability-gated
    rules are resolved against the bounding set already in the spec (with CAP_SYS_ADMIN
    the namespace and mount syscalls are allowed, without it they fail with EPERM)."""
    def apply(spec: dict[str, Any]) -> None:
        if profile is None:
            spec["linux"].pop("seccomp", None)
            return
        scmp_arch, goarch, kernel = host or seccomp.host()
        bounding = (spec["process"].get("capabilities") or {}).get("bounding") or []
        spec["linux"]["seccomp"] = seccomp.resolve(profile, bounding, scmp_arch, goarch,
                                                   kernel)
    return apply


def with_security_opts(opts: Sequence[str] | None) -> SpecOption:
    """``--security-opt``: Docker's default seccomp profile unless ``seccomp=unconfined``
    or ``seccomp=<profile>``; ``no-new-privileges``."""
    profile, no_new_privs = seccomp.parse_security_opts(list(opts or []))

    def apply(spec: dict[str, Any]) -> None:
        if no_new_privs:
            with_no_new_privileges()(spec)
        with_seccomp(profile)(spec)
    return apply


def build(spec: dict[str, Any], *options: SpecOption) -> dict[str, Any]:
    for option in options:
        option(spec)
    return spec
