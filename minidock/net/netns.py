"""A running container's network namespace, visible to ``ip netns``.

    /run/netns/md-<12 hex>    a bind mount of /proc/<init pid>/ns/net, made when the
                              container goes on a network and removed when its run ends,
                              so ``ip netns exec md-<id> ip addr`` looks inside (the
                              container's SandboxKey in inspect)

The mount keeps the namespace alive on its own: ``release`` takes it away first, and
``system check`` finds one that a killed run left. No mount is made on /run/netns itself
(``ip netns add`` makes it a shared mount point); entries are plain file bind mounts.
"""

from __future__ import annotations

import os

from minidock import linux

RUN_NETNS = "/run/netns"
PREFIX = "md-"


def name_of(cid: str) -> str:
    return PREFIX + cid[:12]


def path_of(cid: str) -> str:
    return os.path.join(RUN_NETNS, name_of(cid))


def publish(cid: str, pid: int) -> str:
    """Bind the netns of ``pid`` to /run/netns/md-<id>; the path."""
    os.makedirs(RUN_NETNS, mode=0o755, exist_ok=True)
    path = path_of(cid)
    unpublish(cid)  # a previous run's, if a kill left it
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        linux.mount(f"/proc/{pid}/ns/net", path, None, linux.MS_BIND,
                    why="the container's netns for `ip netns` (its SandboxKey)")
    except OSError:
        os.unlink(path)
        raise
    return path


def unpublish(cid: str) -> bool:
    """Remove the entry (the namespace may go once nothing else holds it); whether there
    was one."""
    path = path_of(cid)
    if not os.path.lexists(path):
        return False
    try:
        linux.umount2(path, linux.MNT_DETACH, why="the run ended: its netns may go")
    except OSError:
        pass  # not mounted (a kill between the file and the mount)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return True


def entries() -> list[str]:
    """The container ids (12 hex) that have an entry."""
    try:
        names = os.listdir(RUN_NETNS)
    except OSError:
        return []
    return sorted(n[len(PREFIX):] for n in names if n.startswith(PREFIX))
