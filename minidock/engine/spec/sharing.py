"""What a container shares with the host or another container, and its process limits:
``--pid``, ``--ipc``, ``--uts``, ``--cgroupns``, ``--shm-size``, ``--ulimit``, ``--sysctl``,
``--group-add`` (Docker's words for refusals, its HostConfig fields).

    parse_*             the flags as Docker's CLI reads them
    check_sysctls       Docker's rule: only sysctls the kernel namespaces (IPC's kernel.msg*,
                        kernel.sem, kernel.shm*, fs.mqueue.*; net.* in a network namespace
                        of its own); not an IPC one with --ipc=host, nor net.* with host
                        networking
    with_namespace      host: no namespace of its own; a path: join that one
"""

from __future__ import annotations

from minidock.engine.spec.generate import SpecOption
from minidock.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _flag(flag: str, value: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {why}')


def parse_ulimit(value: str) -> dict[str, Any]:
    """``nofile=1024[:2048]`` -> {"Name": "nofile", "Hard": 2048, "Soft": 1024}."""
    name, eq, limits = value.partition("=")
    if not eq:
        raise _flag("--ulimit", value, f"invalid ulimit argument: {value}")
    if name not in ULIMITS:
        raise _flag("--ulimit", value, f"invalid ulimit type: {name}")
    soft_text, _, hard_text = limits.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise _flag("--ulimit", value, f"invalid ulimit argument: {value}") from None
    if soft > hard:
        raise _flag("--ulimit", value, f"ulimit soft limit must be less than or equal to "
                    f"hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def parse_sysctl(value: str) -> tuple[str, str]:
    key, eq, v = value.partition("=")
    if not eq or not key:
        raise _flag("--sysctl", value, f"sysctl '{value}' is not whitelisted")
    if key not in _IPC_SYSCTLS and not key.startswith(("fs.mqueue.", "net.")):
        raise _flag("--sysctl", value, f"sysctl '{value}' is not whitelisted")
    return key, v


def check_sysctls(sysctls: dict[str, str], ipc_mode: str, network_mode: str) -> None:
    """Docker's daemon: an IPC sysctl needs an IPC namespace of its own, a net.* one a
    network namespace of its own."""
    for key in sysctls:
        ipc = key in _IPC_SYSCTLS or key.startswith("fs.mqueue.")
        if ipc and (ipc_mode == "host" or ipc_mode.startswith("container:")):
            raise InvalidArgument(f'sysctl "{key}" not allowed in host IPC namespace')
        if key.startswith("net.") and (network_mode == "host"
                                       or network_mode.startswith("container:")):
            raise InvalidArgument(f'sysctl "{key}" not allowed in host network namespace')


def check_mode(flag: str, what: str, value: str, allowed: tuple[str, ...]) -> str:
    """--pid host|container:X, --ipc ..., --uts host, --cgroupns host|private."""
    if value in allowed or (value.startswith("container:") and "container:" in allowed
                            and value != "container:"):
        return value
    raise InvalidArgument(f"--{flag}: invalid {what} mode")


def with_namespace(kind: str, path: str | None) -> SpecOption:
    """The container uses the host's ``kind`` namespace (None) or joins ``path``."""
    def apply(spec: dict[str, Any]) -> None:
        spaces = spec["linux"]["namespaces"]
        if path is None:
            spec["linux"]["namespaces"] = [n for n in spaces if n["type"] != kind]
        else:
            for ns in spaces:
                if ns["type"] == kind:
                    ns["path"] = path
    return apply


def with_shm(size: int, host: bool) -> SpecOption:
    """/dev/shm: a tmpfs of ``size`` bytes (--shm-size), or the host's (--ipc=host)."""
    def apply(spec: dict[str, Any]) -> None:
        for m in spec["mounts"]:
            if m["destination"] != "/dev/shm":
                continue
            if host:
                m.update({"type": "bind", "source": "/dev/shm",
                          "options": ["rbind", "rprivate"]})
            else:
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [
                    f"size={size // 1024}k"]
    return apply


def with_shm_from(source: str) -> SpecOption:
    """/dev/shm bound from a tmpfs on the host (--ipc shareable, or a donor's for
    --ipc container:X), as Docker binds containers/<id>/mounts/shm."""
    def apply(spec: dict[str, Any]) -> None:
        for m in spec["mounts"]:
            if m["destination"] == "/dev/shm":
                m.update({"type": "bind", "source": source, "options": ["rbind", "rprivate"]})
    return apply


def without_shm() -> SpecOption:
    """--ipc none: no /dev/shm mount (the image's directory, if any, stays as it is)."""
    def apply(spec: dict[str, Any]) -> None:
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/shm"]
    return apply


def with_rlimits(ulimits: list[dict[str, Any]]) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["process"]["rlimits"] = [{"type": f"RLIMIT_{u['Name'].upper()}",
                                       "hard": u["Hard"], "soft": u["Soft"]}
                                      for u in ulimits]
    return apply


def with_sysctls(sysctls: dict[str, str]) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["linux"]["sysctl"] = dict(sysctls)
    return apply


def group_ids(groups: list[str], group_file: str | None) -> list[int]:
    """--group-add: numbers as they are, names from the container's /etc/group."""
    out = []
    table: dict[str, int] = {}
    for line in (group_file or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            table.setdefault(fields[0], int(fields[2]))
    for g in groups:
        if g.isdigit():
            out.append(int(g))
        elif g in table:
            out.append(table[g])
        else:
            raise InvalidArgument(f"Unable to find group {g}: no matching entries in group "
                                  "file")
    return out
