"""User namespaces as id mappings: writing a process's uid_map/gid_map, and a namespace made
only to carry a mapping, whose fd idmaps mounts (mount_setattr(MOUNT_ATTR_IDMAP) takes a
user namespace, not a list of ranges).

A mapping is a list of (container id, host id, count) triples, the lines of
/proc/PID/uid_map. Writing one needs CAP_SETUID (CAP_SETGID for gid_map) over the parent
namespace, which the engine and runtime have as root: no setgroups "deny" is needed, so
the container's root can still set its supplementary groups.
"""

from __future__ import annotations

import os
import signal

from minidock import linux
from minidock.linux import trace

Mapping = list[tuple[int, int, int]]


def to_host(mapping: Mapping, cid: int) -> int | None:
    """The host id a container id maps to (None: the mapping lacks it)."""
    for c, h, n in mapping:
        if c <= cid < c + n:
            return h + cid - c
    return None


def to_container(mapping: Mapping, hid: int) -> int | None:
    """The container id a host id stands for (None: outside the mapping)."""
    for c, h, n in mapping:
        if h <= hid < h + n:
            return c + hid - h
    return None


def map_text(mapping: Mapping) -> str:
    return "".join(f"{c} {h} {n}\n" for c, h, n in mapping)


def write_maps(pid: int, uids: Mapping, gids: Mapping, why: str = "") -> None:
    """Give the user namespace ``pid`` lives in its mappings (once: the kernel refuses a
    second write)."""
    for name, mapping in (("uid_map", uids), ("gid_map", gids)):
        path = f"/proc/{pid}/{name}"
        linux.write_file(path, map_text(mapping), why=why or f"the namespace's {name}")


def userns_fd(uids: Mapping, gids: Mapping) -> int:
    """An fd of a new user namespace with these mappings, for idmapped mounts. A child
    unshares it and waits; once the maps are written and the namespace file is open, the
    child goes (the fd keeps the namespace alive). About a millisecond."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # never returns into the caller's stack
        try:
            os.close(ready_r)
            os.close(hold_w)
            linux.unshare(linux.CLONE_NEWUSER, why="a user namespace to carry an id mapping")
            os.write(ready_w, b"1")
            os.read(hold_r, 1)  # until the parent has what it needs (or dies)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(0, "the child making a user namespace failed")
        write_maps(pid, uids, gids, why="the id mapping an idmapped mount will use")
        return trace.step(f'open("/proc/{pid}/ns/user")',
                          lambda: os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC),
                          "the namespace's fd, which keeps it alive")
    finally:
        os.close(ready_r)
        os.close(hold_w)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
