"""Which cgroup layout is this host using?  Pure functions over /proc/self/mountinfo text.

The file itself is read and split by :mod:`minidock.linux.mountinfo`; this module keeps the
cgroup and cgroup2 mounts of it and tells the layout from them.

Three layouts exist in the wild:

    v2       one cgroup2 filesystem mounted at /sys/fs/cgroup; all controllers live in it
             (Fedora 31+, Debian 11+, Ubuntu 21.10+, every systemd host booted with
             systemd.unified_cgroup_hierarchy=1)
    v1       one cgroup (v1) filesystem per hierarchy: /sys/fs/cgroup/memory,
             /sys/fs/cgroup/cpu,cpuacct, ..., plus systemd's named hierarchy
             /sys/fs/cgroup/systemd (name=systemd)  (CentOS 7, old Docker hosts)
    hybrid   v1 as above for the controllers, plus a cgroup2 mount holding no controllers
             (usually /sys/fs/cgroup/unified) that systemd uses to track processes
             (Ubuntu 18.04-21.04, Debian 10)

A mountinfo line looks like this (proc(5)); the fields after " - " are the filesystem type,
the source and the *super* options, which for cgroup v1 name the controllers of that
hierarchy::

    35 24 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
    ^  ^  ^    ^ ^                          ^         ^           ^      ^      ^
    id |  dev  | mount point                mount     optional    type   source super options
       parent  root of the mount in its filesystem (a sub-cgroup when bind-mounted)

Detection reads mounts, not guessed paths: a v1 hierarchy may be mounted anywhere, under
any name (``cpu,cpuacct`` or ``cpu`` and ``cpuacct`` separately, as on this project's CI host).
"""

from __future__ import annotations

import os

from minidock.errors import ContainerRuntimeError
from minidock.linux.mountinfo import SELF, read_text
from minidock.linux.mountinfo import parse as parse_mounts
from minidock.records import field, record

#: Super options of a cgroup v1 mount that are not controllers.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {
        "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode",
        "favordynmods", "nofavordynmods", "none", "all",
    }
)
_V1_NON_CONTROLLER_PREFIXES = ("release_agent=",)


@record(frozen=True)
class CgroupMount:
    """One mounted cgroup filesystem."""

    mount_point: str
    #: The cgroup of the hierarchy that is mounted here ("/" unless bind-mounted or seen
    #: from inside a cgroup namespace).
    root: str
    #: "cgroup" (v1) or "cgroup2"
    fstype: str
    #: "major:minor" of the superblock: two mounts of one hierarchy share it.
    device: str
    #: v1: the controllers of the hierarchy, with named hierarchies as "name=systemd";
    #: cgroup2: empty (its controllers are listed in cgroup.controllers, not in mount options).
    controllers: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_v2(self) -> bool:
        return self.fstype == "cgroup2"

    @property
    def name(self) -> str:
        """A stable, human label: ``cpu,cpuacct``, ``name=systemd``; ``unified`` for cgroup2."""
        if self.is_v2:
            return "unified"
        return ",".join(sorted(self.controllers)) or os.path.basename(self.mount_point)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts in a /proc/<pid>/mountinfo text, in mount order."""
    mounts: list[CgroupMount] = []
    for m in parse_mounts(text):
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        controllers: frozenset[str] = frozenset()
        if m.fstype == "cgroup":
            controllers = frozenset(
                opt
                for opt in m.super_options.split(",")
                if opt
                and opt not in _V1_NON_CONTROLLER_OPTIONS
                and not opt.startswith(_V1_NON_CONTROLLER_PREFIXES)
            )
        mounts.append(
            CgroupMount(
                mount_point=m.mount_point,
                root=m.root,
                fstype=m.fstype,
                device=m.device,
                controllers=controllers,
            )
        )
    return mounts


def _is_under(path: str, root: str) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


@record(frozen=True)
class Layout:
    """The host's cgroup layout as :func:`detect_layout` saw it."""

    #: "v1", "v2" or "hybrid"
    mode: str
    #: Where the cgroup filesystems are expected (normally /sys/fs/cgroup).
    root: str
    #: The cgroup2 mount: ``root`` itself on v2, e.g. /sys/fs/cgroup/unified in hybrid,
    #: None on pure v1.
    unified: str | None = None
    #: v1 only: one mount per hierarchy (duplicate mounts of a hierarchy dropped).
    hierarchies: tuple[CgroupMount, ...] = ()

    @property
    def version(self) -> int:
        """2 on a pure cgroup v2 host; 1 on v1 and hybrid (controllers are v1 there)."""
        return 2 if self.mode == "v2" else 1

    def hierarchy_of(self, controller: str) -> CgroupMount | None:
        """The v1 mount holding ``controller`` (e.g. "memory", "name=systemd"), if any."""
        for mount in self.hierarchies:
            if controller in mount.controllers:
                return mount
        return None


def detect_layout(mounts: list[CgroupMount], root: str = "/sys/fs/cgroup") -> Layout:
    """Decide v1, v2 or hybrid from the parsed mounts.

    - cgroup2 mounted exactly at ``root``: v2 (any v1 mount elsewhere is ignored)
    - v1 hierarchies plus a cgroup2 mount at or under ``root``: hybrid
    - v1 hierarchies only: v1
    """
    root = os.path.normpath(root)
    for m in mounts:
        if m.is_v2 and os.path.normpath(m.mount_point) == root:
            return Layout(mode="v2", root=root, unified=root)

    # One mount per hierarchy, preferring the one under root when a hierarchy is mounted twice.
    ordered = sorted(
        (m for m in mounts if not m.is_v2),
        key=lambda m: not _is_under(m.mount_point, root),
    )
    seen: set[str] = set()
    hierarchies: list[CgroupMount] = []
    for m in ordered:
        if m.device in seen:
            continue
        seen.add(m.device)
        hierarchies.append(m)
    unified = next(
        (m.mount_point for m in mounts if m.is_v2 and _is_under(m.mount_point, root)), None
    )
    if not hierarchies:
        if unified is not None:
            # cgroup2 only, but not at root: use it as a v2 host rooted there.
            return Layout(mode="v2", root=unified, unified=unified)
        raise ContainerRuntimeError(
            f"detect cgroups: no cgroup filesystem is mounted at {root}",
            hint=f"mount one: mount -t cgroup2 none {root}",
        )
    return Layout(
        mode="hybrid" if unified else "v1",
        root=root,
        unified=unified,
        hierarchies=tuple(hierarchies),
    )


def read_layout(root: str = "/sys/fs/cgroup", mountinfo: str = SELF) -> Layout:
    """:func:`detect_layout` for this process's mounts."""
    try:
        text = read_text(mountinfo)
    except OSError as e:
        raise ContainerRuntimeError(
            f"detect cgroups: read {mountinfo}: {(e.strerror or str(e)).lower()}"
        ) from e
    return detect_layout(parse_mountinfo(text), root)
