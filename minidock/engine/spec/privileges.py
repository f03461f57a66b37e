"""``--cap-add``, ``--cap-drop`` and ``--privileged``: Docker's rules for the capability sets,
and what a privileged container gets besides (messages and HostConfig recorded from docker
20.10 here).

    capabilities(add, drop, privileged)
        privileged          every capability (below)
        ALL in add          every capability but those dropped
        ALL in drop         only those added
        else                Docker's default set, minus the dropped, plus the added

"Every capability" is every one this process may still grant: its own bounding set (what a
parent kept, e.g. no CAP_SYS_RESOURCE on some VMs), as podman does. Docker asks for all the
kernel knows and fails there ("unable to apply caps: operation not permitted").

``with_privileged()`` is the rest of ``--privileged``: the host's devices in /dev and a device
cgroup that allows them all, /sys and the cgroup mount writable, nothing masked or read-only
under /proc, and no seccomp filter.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from minidock.engine.spec.generate import DEFAULT_DEVICES, SpecOption
from minidock.errors import InvalidArgument
from minidock.oci.runtime import CAP_NUMBERS, DEFAULT_CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def normalize(names: Sequence[str] | None, field: str) -> list[str] | None:
    """Capability names as HostConfig keeps them ("net_admin" -> "CAP_NET_ADMIN", "all" ->
    "ALL"); an unknown one is refused as Docker's daemon does. None when none given."""
    if not names:
        return None
    out = []
    for name in names:
        up = name.strip().upper()
        if up == "ALL":
            out.append(up)
            continue
        if not up.startswith("CAP_"):
            up = "CAP_" + up
        if up not in CAP_NUMBERS:
            raise InvalidArgument(f'invalid {field}: unknown capability: "{up}"')
        out.append(up)
    return out


def grantable() -> list[str]:
    """Every capability this process's bounding set still holds, in kernel order."""
    try:
        with open("/proc/self/status") as f:
            bounding = next(int(line.split()[1], 16) for line in f
                            if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        bounding = (1 << (max(CAP_NUMBERS.values()) + 1)) - 1
    return [name for name, n in sorted(CAP_NUMBERS.items(), key=lambda kv: kv[1])
            if bounding >> n & 1]


def capabilities(add: Sequence[str] | None, drop: Sequence[str] | None,
                 privileged: bool) -> list[str]:
    """The container's capabilities (bounding, effective and permitted alike)."""
    if privileged:
        return grantable()
    add, drop = list(add or []), list(drop or [])
    if not add and not drop:
        return list(DEFAULT_CAPABILITIES)
    if "ALL" in add:
        return [c for c in grantable() if c not in drop]
    if "ALL" in drop:
        return [c for c in add if c != "ALL"]
    caps = [c for c in DEFAULT_CAPABILITIES if c not in drop]
    return caps + [c for c in add if c not in caps]


def with_capabilities(caps: list[str]) -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        spec["process"]["capabilities"] = {"bounding": list(caps), "effective": list(caps),
                                           "permitted": list(caps)}
    return apply


# /dev's directories a privileged container does not get (Docker's HostDevices skips them)
_SKIP_DIRS = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}


def host_devices(top: str = "/dev") -> list[dict[str, Any]]:
    """The host's device nodes as OCI linux.devices entries (what --privileged adds)."""
    defaults = {path for path, _, _ in DEFAULT_DEVICES}
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if path in defaults or path in ("/dev/console", "/dev/ptmx"):
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                            "gid": st.st_gid})
    return out


def with_privileged() -> SpecOption:
    def apply(spec: dict[str, Any]) -> None:
        linux = spec["linux"]
        linux["devices"] = [*linux.get("devices", []), *host_devices()]
        linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        linux.pop("seccomp", None)
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"]
    return apply


# --- --device and --device-cgroup-rule ----------------------------------------------------

_RULE_RE = r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$"


def parse_device_flag(value: str) -> dict[str, str]:
    """``--device HOST[:CONTAINER][:PERMISSIONS]`` as HostConfig.Devices keeps it (Docker's
    CLI rules: a permission word is rwm letters, the container path absolute)."""
    parts = value.split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1] and set(parts[-1]) <= set("rwm") \
            and not parts[-1].startswith("/"):
        perms = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise InvalidArgument(f"invalid argument \"{value}\" for \"--device\" flag: bad "
                              f"format: {value}")
    host, ctr = parts[0], parts[1] if len(parts) == 2 else parts[0]
    if len(set(perms)) != len(perms):
        raise InvalidArgument(f"invalid argument \"{value}\" for \"--device\" flag: bad "
                              f"mode specified: {perms}")
    if not ctr.startswith("/"):
        raise InvalidArgument(f"invalid argument \"{value}\" for \"--device\" flag: bad "
                              f"format for path: {ctr}")
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def parse_cgroup_rule(value: str) -> str:
    """``--device-cgroup-rule 'c 1:11 r'``, checked as Docker's daemon does."""
    import re

    if not re.match(_RULE_RE, value.strip()):
        raise InvalidArgument(f"invalid device cgroup format '{value}'")
    return value.strip()


def _rule_of(text: str) -> dict[str, Any]:
    kind, numbers, access = text.split()
    major, minor = numbers.split(":")
    return {"allow": True, "type": kind, "major": None if major == "*" else int(major),
            "minor": None if minor == "*" else int(minor), "access": access}


def _nodes(host: str) -> list[tuple[str, os.stat_result]]:
    """The device node at ``host``, or every one under it when it is a directory."""
    try:
        st = os.stat(host)
    except OSError as e:
        raise InvalidArgument(f"error gathering device information while adding custom "
                              f"device \"{host}\": {(e.strerror or '').lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        out = []
        for dirpath, _, files in os.walk(host):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                sub = os.stat(path)
                if stat.S_ISCHR(sub.st_mode) or stat.S_ISBLK(sub.st_mode):
                    out.append((path, sub))
        return out
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidArgument(f"error gathering device information while adding custom "
                              f"device \"{host}\": not a device node")
    return [(host, st)]


def with_devices(devices: Sequence[dict[str, str]], rules: Sequence[str]) -> SpecOption:
    """--device nodes in the container's /dev with a cgroup rule allowing each, and the
    --device-cgroup-rule rules, after Docker's default rules."""
    entries, allows = [], [_rule_of(r) for r in rules]
    for d in devices:
        host, ctr = d["PathOnHost"], d["PathInContainer"]
        for path, st in _nodes(host):
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
            target = ctr + path[len(host):] if path != host else ctr
            entries.append({"path": target, "type": kind, "major": os.major(st.st_rdev),
                            "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                            "uid": st.st_uid, "gid": st.st_gid})
            allows.append({"allow": True, "type": kind, "major": os.major(st.st_rdev),
                           "minor": os.minor(st.st_rdev), "access": d["CgroupPermissions"]})

    def apply(spec: dict[str, Any]) -> None:
        linux = spec["linux"]
        taken = {e["path"] for e in entries}
        linux["devices"] = [*(e for e in linux.get("devices", []) if e["path"] not in taken),
                            *entries]
        res = linux.setdefault("resources", {})
        res["devices"] = [*res.get("devices", []), *allows]
    return apply
