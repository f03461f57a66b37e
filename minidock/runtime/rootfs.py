"""Building the container's root filesystem inside its new mount namespace.

Runs in the container's init (pid 1 of the new PID namespace) before pivot_root. Order:

    1. make every mount private        so nothing we mount propagates back to the host
    2. bind the rootfs onto itself     pivot_root needs the new root to be a mount point
    3. the spec's mounts, in order     /proc, /dev, /dev/pts, /sys, ..., bind mounts;
                                       each target resolved *inside* the rootfs at mount
                                       time (symlinks cannot point a mount at the host)
    4. /dev nodes and symlinks         the runtime builds /dev itself, never the image's
    5. pivot_root(".", ".")            then detach the old root stacked underneath
    6. masked and read-only paths      over /proc and /sys, after the switch

In a new user namespace (prepare's ``clones``) step 2 is a clone of the rootfs attached on
top of it (what the namespace inherited is locked), every path is relative to the cwd (the
rootfs: its host path is not walkable by the namespace's root), bind sources arrive as
detached mounts, and device nodes are the host's, bound (step 4).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from minidock import linux
from minidock.linux import trace
from minidock.oci.runtime import Device, Mount, Spec

# mount(8) option words -> (flag, set?) ; everything else is filesystem data
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (linux.MS_RDONLY, True),
    "rw": (linux.MS_RDONLY, False),
    "nosuid": (linux.MS_NOSUID, True),
    "suid": (linux.MS_NOSUID, False),
    "nodev": (linux.MS_NODEV, True),
    "dev": (linux.MS_NODEV, False),
    "noexec": (linux.MS_NOEXEC, True),
    "exec": (linux.MS_NOEXEC, False),
    "sync": (linux.MS_SYNCHRONOUS, True),
    "async": (linux.MS_SYNCHRONOUS, False),
    "dirsync": (linux.MS_DIRSYNC, True),
    "remount": (linux.MS_REMOUNT, True),
    "mand": (linux.MS_MANDLOCK, True),
    "nomand": (linux.MS_MANDLOCK, False),
    "atime": (linux.MS_NOATIME, False),
    "noatime": (linux.MS_NOATIME, True),
    "diratime": (linux.MS_NODIRATIME, False),
    "nodiratime": (linux.MS_NODIRATIME, True),
    "bind": (linux.MS_BIND, True),
    "rbind": (linux.MS_BIND | linux.MS_REC, True),
    "relatime": (linux.MS_RELATIME, True),
    "norelatime": (linux.MS_RELATIME, False),
    "strictatime": (linux.MS_STRICTATIME, True),
    "nostrictatime": (linux.MS_STRICTATIME, False),
}
_PROPAGATION: dict[str, int] = {
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}


def parse_options(options: Iterable[str]) -> tuple[int, int, str]:
    """Split mount options into (flags, propagation flags, data string)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            bit, on = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def secure_join(root: str, path: str) -> str:
    """Resolve ``path`` as if ``root`` were "/" and return the host path, never outside root.

    Symlinks met on the way are followed *within* root (an absolute link restarts at root,
    ``..`` stops at root), like a chroot would. Components that do not exist are kept
    as they are, so the result can be created afterwards.
    """
    if root != ".":  # (".": the cwd is the rootfs, in a user namespace; see prepare)
        root = os.path.realpath(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkdir_all(root: str, host: str) -> None:
    """mkdir -p for a path that secure_join already resolved inside root."""
    rel = os.path.relpath(host, root)
    cur = root
    for part in [] if rel == "." else rel.split("/"):
        cur = os.path.join(cur, part)
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            pass


def _prepare_target(root: str, dest: str, source_is_file: bool) -> str:
    """Create the mount target inside root (a dir, or an empty file for a file bind mount)."""
    host = secure_join(root, dest)
    if not source_is_file:
        _mkdir_all(root, host)
        return host
    _mkdir_all(root, os.path.dirname(host))
    if not os.path.lexists(host):
        os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
    return host


def _mount_in_root(root: str, host_target: str, source: str | None, fstype: str | None,
                   flags: int, data: str | None, why: str) -> None:
    """Mount onto a target opened with O_PATH and checked to be inside root.

    Between resolving the path and mounting, the image's files could in theory be swapped
    for a symlink; mounting through /proc/self/fd/N of an fd opened with O_NOFOLLOW and
    checked against root closes that window.
    """
    fd = _open_target(root, host_target)
    try:
        linux.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data or None,
                    why=why or f"mount on {os.path.relpath(host_target, root)}",
                    shown_target=host_target)
    finally:
        os.close(fd)


def _open_target(root: str, host_target: str) -> int:
    """An O_PATH fd of a mount target, checked to be inside root (see _mount_in_root)."""
    fd = os.open(host_target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    real = os.readlink(f"/proc/self/fd/{fd}")
    top = os.getcwd() if root == "." else root
    if real != top and not real.startswith(top.rstrip("/") + "/"):
        os.close(fd)
        raise OSError(errno.EXDEV, f"mount target escapes the rootfs: {real}", host_target)
    return fd


_WHY = {
    "/proc": "a procfs of the new PID namespace: ps shows only the container",
    "/dev": "a private /dev that the runtime fills with a few safe nodes",
    "/dev/pts": "a new devpts instance: the container's ptys are its own",
    "/dev/shm": "POSIX shared memory private to the IPC namespace",
    "/dev/mqueue": "POSIX message queues of the new IPC namespace",
    "/sys": "sysfs, read-only: the container can look but not touch",
    "/sys/fs/cgroup": "the container's view of its cgroups, read-only",
}


def mount_one(root: str, m: Mount, clone: int = -1) -> None:
    """One spec mount. ``clone``: for a bind, the source as a detached mount (stage 1 made
    it while it could still reach the host path; see clone_bind_sources)."""
    flags, propagation, data = parse_options(m.options)
    is_bind = bool(flags & linux.MS_BIND)
    source = m.source
    if clone >= 0:
        source_is_file = not stat.S_ISDIR(os.fstat(clone).st_mode)
    else:
        source_is_file = bool(is_bind and source and not os.path.isdir(source))
    target = _prepare_target(root, m.destination, source_is_file)
    why = _WHY.get(m.destination, "")
    if is_bind and clone >= 0:
        fd = _open_target(root, target)
        try:
            linux.move_mount(clone, f"/proc/self/fd/{fd}", shown_target=target,
                             why=why or f"attach {source}, cloned before the user namespace")
        finally:
            os.close(fd)
    elif is_bind:
        if not why:
            why = f"bind {source} into the container"
        _mount_in_root(root, target, source, None, flags & (linux.MS_BIND | linux.MS_REC),
                       None, why)
    if is_bind:
        # A bind mount ignores every flag but MS_BIND|MS_REC: read-only and friends
        # need a second, remounting call.
        extra = flags & ~(linux.MS_BIND | linux.MS_REC)
        if extra and clone >= 0:
            # In a user namespace the source's nosuid/nodev/noexec may be locked: a remount
            # that drops them is refused, so they are kept (runc does the same).
            kept = os.statvfs(target).f_flag
            for st_flag, ms_flag, off in ((os.ST_NOSUID, linux.MS_NOSUID, "suid"),
                                          (os.ST_NODEV, linux.MS_NODEV, "dev"),
                                          (os.ST_NOEXEC, linux.MS_NOEXEC, "exec")):
                if kept & st_flag and off not in m.options:
                    extra |= ms_flag
        if extra:
            linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | extra, None,
                        why=f"apply {','.join(o for o in m.options if o in _FLAGS)} to the bind")
    else:
        _mount_in_root(root, target, source or m.type, m.type, flags, data, why)
    if propagation:
        linux.mount(None, target, None, propagation, None, why="set mount propagation")


def setup_cgroup_mount(root: str, dest: str, host_dirs: dict[str, str] | None) -> None:
    """Mount /sys/fs/cgroup: cgroup2 on a unified host; on v1, a tmpfs with one
    read-only bind per hierarchy showing the container's own cgroup directory."""
    target = _prepare_target(root, dest, False)
    if not host_dirs:
        _mount_in_root(root, target, "cgroup", "cgroup2",
                       linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY,
                       None, _WHY["/sys/fs/cgroup"])
        return
    _mount_in_root(root, target, "tmpfs", "tmpfs",
                   linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=755",
                   "a tmpfs to hold one directory per cgroup v1 hierarchy")
    for name, host_dir in sorted(host_dirs.items()):
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        linux.mount(host_dir, sub, None, linux.MS_BIND, None,
                    why=f"the container's own {name} cgroup")
        linux.mount(None, sub, None,
                    linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID
                    | linux.MS_NODEV | linux.MS_NOEXEC, None, why="read-only")
    linux.mount(None, target, None,
                linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV
                | linux.MS_NOEXEC, "mode=755", why="the tmpfs read-only too")


_DEV_LINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
)


def create_devices(root: str, devices: Iterable[Device], bind: bool = False) -> None:
    """The spec's device nodes in /dev; ``bind``: the host's nodes bind-mounted instead
    (inside a user namespace mknod is refused, as it should be)."""
    dev = secure_join(root, "/dev")
    old_umask = os.umask(0)
    try:
        for d in devices:
            host = secure_join(root, d.path)
            if not host.startswith(dev + "/"):
                raise OSError(errno.EINVAL, "device outside /dev", d.path)
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
            if d.type not in kind:
                raise OSError(errno.EINVAL, f"unknown device type {d.type!r}", d.path)
            if os.path.dirname(host) != dev:  # /dev/input/mice, /dev/snd/... (--privileged)
                os.makedirs(os.path.dirname(host), 0o755, exist_ok=True)
            if bind:
                _bind_device(root, host, d)
                continue
            linux.mknod(host, kind[d.type] | (d.file_mode & 0o7777), d.major, d.minor,
                        why=f"device node {d.path}")
            os.chown(host, d.uid, d.gid, follow_symlinks=False)
        for target, name in _DEV_LINKS:
            path = os.path.join(dev, name)
            if not os.path.lexists(path):
                linux.symlink(target, path)
    finally:
        os.umask(old_umask)


def _bind_device(root: str, host: str, d: Device) -> None:
    """A device in a user namespace: the host's node (the same path on the host, which
    must be that device) bound onto an empty file."""
    st = os.stat(d.path)
    kind = stat.S_IFBLK if d.type == "b" else stat.S_IFCHR
    if (stat.S_IFMT(st.st_mode) != kind or os.major(st.st_rdev) != d.major
            or os.minor(st.st_rdev) != d.minor):
        raise OSError(errno.ENODEV, "not the host's node for this device (in a user "
                      "namespace devices are bound from the host, never made)", d.path)
    if not os.path.lexists(host):
        os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    _mount_in_root(root, host, d.path, None, linux.MS_BIND, None,
                   f"device {d.path} bound from the host: mknod is refused in a user namespace")


def pivot(root: str) -> None:
    """Switch to the new root and drop the old one, without a put_old directory.

    pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "."
    with MNT_DETACH then removes the old root from this namespace (the trick runc and
    lxc use), so no host path stays reachable from the container.
    """
    old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        linux.chdir(root, why="enter the new root")
        linux.pivot_root(".", ".", why="make the rootfs the new / of this mount namespace")
        # "." is still the new root (covered by the old one): step onto the old root itself,
        # so that only its mounts turn slave, not the container's (rshared binds stay so).
        trace.step("fchdir(old root)", lambda: os.fchdir(old_root), "onto the old root")
    finally:
        os.close(old_root)
    linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC, None,
                why="keep the unmount of the old root from propagating anywhere")
    linux.umount2(".", linux.MNT_DETACH, why="detach the old root (the host's /)")
    linux.chdir("/")


def mask_paths(paths: Iterable[str]) -> None:
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", p, "tmpfs", linux.MS_RDONLY, None,
                        why=f"hide {p} under an empty read-only tmpfs")
        else:
            linux.mount("/dev/null", p, None, linux.MS_BIND, None,
                        why=f"hide {p} behind /dev/null")


def readonly_paths(paths: Iterable[str]) -> None:
    for p in paths:
        if not os.path.lexists(p):
            continue  # e.g. /proc/sysrq-trigger on kernels built without magic sysrq
        linux.mount(p, p, None, linux.MS_BIND | linux.MS_REC, None,
                    why=f"bind {p} on itself to make it read-only")
        linux.mount(None, p, None,
                    linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID
                    | linux.MS_NODEV | linux.MS_NOEXEC, None, why=f"{p} read-only")


#: linux.rootfsPropagation -> the flags for "/" ("": minidock's default, every mount private;
#: runc's is rslave, which differs only in host mounts appearing under binds)
_ROOT_PROPAGATION = {
    "": linux.MS_REC | linux.MS_PRIVATE,
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_REC | linux.MS_PRIVATE,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_REC | linux.MS_SLAVE,
    "shared": linux.MS_SHARED, "rshared": linux.MS_REC | linux.MS_SHARED,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_REC | linux.MS_UNBINDABLE,
}


def _private_parent(rootfs: str) -> None:
    """Make the mount the rootfs is on private if it is shared (runc does the same): binding
    the rootfs onto itself would otherwise propagate to the host, and pivot_root refuses a
    new root whose parent mount is shared."""
    from minidock.linux import mountinfo

    best = mountinfo.mount_of(os.path.realpath(rootfs) if rootfs != "." else os.getcwd())
    if best is not None and any(o.startswith("shared:") for o in best.optional):
        linux.mount(None, best.mount_point, None, linux.MS_PRIVATE, None,
                    why="the rootfs's own mount private: its bind must not reach the host")


def clone_bind_sources(spec: Spec, userns_fds: dict[int, int]) -> dict[int, int]:
    """Before a user namespace: every bind source as a detached mount (by spec.mounts
    index), idmapped where ``userns_fds`` has a namespace for that mount. Made while the
    process is still the host's root: the container's root (another host uid) may not
    even reach the source's path (the engine's dirs are 0710)."""
    clones: dict[int, int] = {}
    for i, m in enumerate(spec.mounts):
        flags, _, _ = parse_options(m.options)
        if flags & linux.MS_BIND and m.source:
            clones[i] = linux.clone_tree(
                m.source, recursive=bool(flags & linux.MS_REC), userns_fd=userns_fds.get(i, -1),
                why="the bind source, reached while we are still the host's root")
    return clones


def prepare(spec: Spec, cgroup_dirs: dict[str, str] | None,
            clones: dict[int, int] | None = None) -> str:
    """Steps 1-4 of the module docstring (everything before pivot_root); returns the root
    for :func:`pivot`. ``clones`` (clone_bind_sources) means a new user namespace: the cwd
    is the rootfs, entered by stage 1 while it could still walk the host path there, and
    every path below is taken relative to it."""
    flag = _ROOT_PROPAGATION.get(spec.linux.rootfs_propagation)
    if flag is None:
        raise OSError(errno.EINVAL, "invalid linux.rootfsPropagation",
                      spec.linux.rootfs_propagation)
    linux.mount(None, "/", None, flag, None,
                why="make every mount private: nothing done here reaches the host"
                if flag == linux.MS_REC | linux.MS_PRIVATE else
                f"linux.rootfsPropagation {spec.linux.rootfs_propagation}: mounts stay tied "
                "to the host's")
    if flag != linux.MS_REC | linux.MS_PRIVATE:
        _private_parent(spec.root_path if clones is None else ".")
    if clones is None:
        root = os.path.realpath(spec.root_path)
        linux.mount(root, root, None, linux.MS_BIND | linux.MS_REC, None,
                    why="pivot_root needs the new root to be a mount point")
    else:
        root = "."
        fd = linux.clone_tree(".", recursive=True,
                              why="a copy of the rootfs made in this namespace: what the "
                                  "new mount namespace inherited is locked, pivot_root "
                                  "refuses it")
        linux.move_mount(fd, ".", why="on top of the rootfs", shown_target=spec.root_path)
        trace.step(f"fchdir({fd})", lambda: os.fchdir(fd), "into the copy")
        os.close(fd)
    for i, m in enumerate(spec.mounts):
        if m.type == "cgroup" or m.type == "cgroup2":
            setup_cgroup_mount(root, m.destination, cgroup_dirs)
        else:
            mount_one(root, m, (clones or {}).get(i, -1))
    create_devices(root, spec.linux.devices, bind=clones is not None)
    return root


def finish(spec: Spec) -> None:
    """Step 6 and the read-only root, after pivot_root."""
    mask_paths(spec.linux.masked_paths)
    readonly_paths(spec.linux.readonly_paths)
    if spec.root_readonly:
        linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY, None,
                    why="--read-only: the rootfs itself read-only")
