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
