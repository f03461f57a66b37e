"""--userns remap: the container's ids mapped to an unprivileged host range.

Docker's ``userns-remap`` (here config.json's key of the same name, for every container, or
``run --userns remap`` for one): the container gets a user namespace whose uid 0 is the first
id of a subordinate range of /etc/subuid (gids: /etc/subgid). Root in the container is then
nobody on the host: a process that escapes owns nothing there.

Which range (moby's idtools lookup): ``default`` means the user ``dockremap``, created as
Docker creates it (a system user without a shell, then 65536 ids from the first free range
at or above 100000 in both files); ``USER[:GROUP]`` names an existing user (and group) by
name or number, whose ranges must be there already.

What differs from Docker: Docker gives a remapped daemon a second root
(/var/lib/docker/100000.100000) with every layer unpacked again and chowned. minidock keeps
one store: the container's layers are seen through idmapped mounts (storage/overlay2.py),
so disk keeps the container's own ids and commit, cp and export need no translation. So do
the container's hostname, hosts and resolv.conf and its volumes (idmapped binds). Where
overlayfs takes no idmapped layers (before 5.19), or with ``"userns-remap-layers": "copy"``,
it is Docker's way after all: chowned copies under <root>/<uid>.<gid>/ (storage/shifted.py). A host
directory bound with -v is *not* idmapped: it shows the host's owners shifted, as in Docker.
"""

from __future__ import annotations

import os

from minidock.errors import InvalidArgument, MinidockError
from minidock.storage.overlay2 import IdMap

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

    from minidock.engine.spec.generate import SpecOption

DEFAULT_USER = "dockremap"
RANGE_SIZE = 65536
FIRST_ID = 100000
SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
MODES = ("", "host", "remap")


def check_mode(value: str, privileged: bool, pid: str, cgroupns: str) -> str:
    """--userns: "" (the engine's default), "host" (Docker's), "remap" (minidock's opt-in);
    Docker's refusal of --privileged with a user namespace."""
    if value not in MODES:
        raise InvalidArgument("--userns: invalid USER mode")
    if wanted(value):
        if privileged:
            raise InvalidArgument(
                "privileged mode is incompatible with user namespaces.  You must run the "
                "container in the host namespace when running privileged mode")
        if pid == "host":
            raise InvalidArgument("--pid=host needs --userns=host: the host's /proc cannot "
                                  "be mounted from a user namespace")
        if cgroupns == "host" and _cgroup_v2():
            raise InvalidArgument("--cgroupns=host needs --userns=host: cgroup2 cannot be "
                                  "mounted from a user namespace that does not own the "
                                  "cgroup namespace")
    return value


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def wanted(mode: str, configured: str | None = None) -> bool:
    """Does a container with HostConfig.UsernsMode ``mode`` get a user namespace?
    ``configured``: config.json's userns-remap, read here when not given."""
    if mode != "":
        return mode == "remap"
    if configured is None:
        from minidock.settings import load_engine_config

        configured = load_engine_config().userns_remap
    return bool(configured)


def for_container(host_config: dict[str, Any]) -> tuple[IdMap, bool] | None:
    """The mapping a container starts with, and whether over chowned copies of its layers
    (config.json's ``"userns-remap-layers": "copy"``); None: no user namespace."""
    mode = str(host_config.get("UsernsMode") or "")
    if mode == "host":
        return None
    from minidock.settings import load_engine_config

    cfg = load_engine_config()
    if not wanted(mode, cfg.userns_remap):
        return None
    return mapping(cfg.userns_remap or "default"), cfg.userns_remap_layers == "copy"


def mapping(remap: str) -> IdMap:
    """``default`` or ``USER[:GROUP]`` -> (uid ranges, gid ranges), container id 0 upward."""
    user, _, group = remap.partition(":")
    if user == "default":
        if group:
            raise InvalidArgument("userns-remap: \"default\" takes no group")
        user = group = DEFAULT_USER
        _ensure_default_user()
    import grp
    import pwd

    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise InvalidArgument(f"userns-remap: no such user: {user}") from None
    if group:
        try:
            gr = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except KeyError:
            raise InvalidArgument(f"userns-remap: no such group: {group}") from None
        gname, gid = gr.gr_name, gr.gr_gid
    else:
        gname, gid = pw.pw_name, pw.pw_gid
    uids = _stack(_ranges(SUBUID, pw.pw_name, pw.pw_uid))
    gids = _stack(_ranges(SUBGID, gname, gid))
    if not uids:
        raise InvalidArgument(f"userns-remap: no subordinate uid range for {pw.pw_name} in "
                              f"{SUBUID}")
    if not gids:
        raise InvalidArgument(f"userns-remap: no subordinate gid range for {gname} in "
                              f"{SUBGID}")
    return uids, gids


def _ranges(path: str, name: str, number: int) -> list[tuple[int, int]]:
    """The (start, count) lines of /etc/subuid or /etc/subgid for a name or its number."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(number)):
            continue
        if fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) > 0:
            out.append((int(fields[1]), int(fields[2])))
    return out


def _stack(ranges: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Host ranges one after the other from container id 0 (moby's createIDMap); the
    kernel takes at most 340 lines."""
    out, next_id = [], 0
    for start, count in ranges[:340]:
        out.append((next_id, start, count))
        next_id += count
    return out


def _all_ranges(path: str) -> list[tuple[int, int]]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    out.append((int(fields[1]), int(fields[2])))
    except FileNotFoundError:
        pass
    return out


def free_start() -> int:
    """The first id at or above 100000 where 65536 ids are free in both files (moby's
    createSubordinateRanges)."""
    taken = sorted(_all_ranges(SUBUID) + _all_ranges(SUBGID))
    start = FIRST_ID
    for s, n in taken:
        if s < start + RANGE_SIZE and start < s + n:
            start = s + n
    return start


def _ensure_default_user() -> None:
    """Docker's ``default``: the system user dockremap and its ranges, made if missing."""
    import pwd

    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        _run(["useradd", "-r", "-s", "/bin/false", DEFAULT_USER], "create user")
    if _ranges(SUBUID, DEFAULT_USER, -1) and _ranges(SUBGID, DEFAULT_USER, -1):
        return
    start = free_start()
    span = f"{start}-{start + RANGE_SIZE - 1}"
    _run(["usermod", "--add-subuids", span, "--add-subgids", span, DEFAULT_USER],
         "add subordinate ranges to")


def _run(argv: list[str], what: str) -> None:
    import subprocess  # (only when dockremap is made: subprocess loads threading)

    try:
        r = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise MinidockError(f"userns-remap: {what} {DEFAULT_USER}: {argv[0]} is not "
                            "installed (the passwd package)") from None
    if r.returncode != 0:
        raise MinidockError(f"userns-remap: {what} {DEFAULT_USER}: "
                            f"{(r.stderr or r.stdout).strip()}")


def with_userns(idmap: IdMap, own_dirs: tuple[str, ...], host_network: bool,
                host_ipc: bool) -> SpecOption:
    """The spec's user namespace and its mappings; the engine's own files bound into the
    container (under ``own_dirs``: its hostname, hosts, resolv.conf, volumes) idmapped
    through the same mapping; /sys bound instead of mounted when the network namespace is
    the host's (sysfs needs a network namespace the user namespace owns), /dev/mqueue
    likewise with the host's IPC namespace (left out where the host mounts none)."""
    uids, gids = idmap

    def ranges(m: list[tuple[int, int, int]]) -> list[dict[str, int]]:
        return [{"containerID": c, "hostID": h, "size": n} for c, h, n in m]

    def apply(spec: dict[str, Any]) -> None:
        lx = spec["linux"]
        lx["namespaces"] = [n for n in lx["namespaces"] if n["type"] != "user"] + [
            {"type": "user"}]
        lx["uidMappings"], lx["gidMappings"] = ranges(uids), ranges(gids)
        for m in spec["mounts"]:
            source = str(m.get("source") or "")
            if m.get("type") == "bind" and any(source.startswith(d.rstrip("/") + "/")
                                               for d in own_dirs):
                m["uidMappings"], m["gidMappings"] = ranges(uids), ranges(gids)
            elif m.get("type") == "sysfs" and host_network:
                # (not rbind: the host's cgroup2 under it would refuse the container's own)
                m.update({"type": "bind", "source": "/sys",
                          "options": ["bind", "nosuid", "noexec", "nodev", "ro"]})
            elif m.get("type") == "mqueue" and host_ipc:
                m.update({"type": "bind", "source": "/dev/mqueue",
                          "options": ["rbind", "nosuid", "noexec", "nodev"]})
        if host_ipc and not os.path.ismount("/dev/mqueue"):
            spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/mqueue"]
    return apply
