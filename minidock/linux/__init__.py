"""Typed wrappers over the kernel calls minidock needs.

This package is the only importer of the compiled cffi module ``minidock._native``. Every
wrapper raises ``OSError(errno, strerror, path)`` on failure (so callers can catch
FileNotFoundError, PermissionError, ...) and reports itself to :mod:`minidock.linux.trace`,
which is what ``minidock run --trace`` prints. Calls Python's os module already has
(chdir, sethostname, setuid, execve, ...) are wrapped here too when the runtime uses them as
container-setup steps, so the trace shows the whole story.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from minidock._native import ffi, lib
from minidock.linux import trace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS: int = lib.CLONE_NEWNS
CLONE_NEWUTS: int = lib.CLONE_NEWUTS
CLONE_NEWIPC: int = lib.CLONE_NEWIPC
CLONE_NEWNET: int = lib.CLONE_NEWNET
CLONE_NEWPID: int = lib.CLONE_NEWPID
CLONE_NEWUSER: int = lib.CLONE_NEWUSER
CLONE_NEWCGROUP: int = lib.CLONE_NEWCGROUP
CLONE_FS: int = lib.CLONE_FS

MS_RDONLY: int = lib.MS_RDONLY
MS_NOSUID: int = lib.MS_NOSUID
MS_NODEV: int = lib.MS_NODEV
MS_NOEXEC: int = lib.MS_NOEXEC
MS_SYNCHRONOUS: int = lib.MS_SYNCHRONOUS
MS_REMOUNT: int = lib.MS_REMOUNT
MS_MANDLOCK: int = lib.MS_MANDLOCK
MS_DIRSYNC: int = lib.MS_DIRSYNC
MS_NOATIME: int = lib.MS_NOATIME
MS_NODIRATIME: int = lib.MS_NODIRATIME
MS_BIND: int = lib.MS_BIND
MS_MOVE: int = lib.MS_MOVE
MS_REC: int = lib.MS_REC
MS_SILENT: int = lib.MS_SILENT
MS_UNBINDABLE: int = lib.MS_UNBINDABLE
MS_PRIVATE: int = lib.MS_PRIVATE
MS_SLAVE: int = lib.MS_SLAVE
MS_SHARED: int = lib.MS_SHARED
MS_RELATIME: int = lib.MS_RELATIME
MS_STRICTATIME: int = lib.MS_STRICTATIME
MS_LAZYTIME: int = lib.MS_LAZYTIME

MNT_FORCE: int = lib.MNT_FORCE
MNT_DETACH: int = lib.MNT_DETACH
MNT_EXPIRE: int = lib.MNT_EXPIRE
UMOUNT_NOFOLLOW: int = lib.UMOUNT_NOFOLLOW

RESOLVE_NO_XDEV: int = lib.RESOLVE_NO_XDEV
RESOLVE_NO_MAGICLINKS: int = lib.RESOLVE_NO_MAGICLINKS
RESOLVE_NO_SYMLINKS: int = lib.RESOLVE_NO_SYMLINKS
RESOLVE_BENEATH: int = lib.RESOLVE_BENEATH
RESOLVE_IN_ROOT: int = lib.RESOLVE_IN_ROOT

_CLONE_NAMES = {
    CLONE_NEWNS: "CLONE_NEWNS",
    CLONE_NEWUTS: "CLONE_NEWUTS",
    CLONE_NEWIPC: "CLONE_NEWIPC",
    CLONE_NEWNET: "CLONE_NEWNET",
    CLONE_NEWPID: "CLONE_NEWPID",
    CLONE_NEWUSER: "CLONE_NEWUSER",
    CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
    CLONE_FS: "CLONE_FS",
}
_MS_NAMES = {
    MS_RDONLY: "MS_RDONLY", MS_NOSUID: "MS_NOSUID", MS_NODEV: "MS_NODEV",
    MS_NOEXEC: "MS_NOEXEC", MS_REMOUNT: "MS_REMOUNT", MS_BIND: "MS_BIND", MS_MOVE: "MS_MOVE",
    MS_REC: "MS_REC", MS_UNBINDABLE: "MS_UNBINDABLE", MS_PRIVATE: "MS_PRIVATE",
    MS_SLAVE: "MS_SLAVE", MS_SHARED: "MS_SHARED", MS_RELATIME: "MS_RELATIME",
    MS_STRICTATIME: "MS_STRICTATIME", MS_NOATIME: "MS_NOATIME", MS_SILENT: "MS_SILENT",
    MS_NODIRATIME: "MS_NODIRATIME", MS_SYNCHRONOUS: "MS_SYNCHRONOUS",
    MS_DIRSYNC: "MS_DIRSYNC", MS_LAZYTIME: "MS_LAZYTIME", MS_MANDLOCK: "MS_MANDLOCK",
}
_MNT_NAMES = {MNT_FORCE: "MNT_FORCE", MNT_DETACH: "MNT_DETACH", MNT_EXPIRE: "MNT_EXPIRE",
              UMOUNT_NOFOLLOW: "UMOUNT_NOFOLLOW"}


def flag_names(value: int, names: Mapping[int, str]) -> str:
    """Render a bit mask as ``A|B|0x..``, as strace does."""
    parts = []
    for bit, name in names.items():
        if value & bit:
            parts.append(name)
            value &= ~bit
    if value or not parts:
        parts.append(hex(value) if value else "0")
    return "|".join(parts)


def _raise(action: str, path: str | None = None) -> None:
    err = ffi.errno
    raise OSError(err, f"{action}: {os.strerror(err)}", path)


def _check(ret: int, action: str, path: str | None = None) -> int:
    if ret < 0:
        _raise(action, path)
    return ret


def unshare(flags: int, why: str = "") -> None:
    def call() -> None:
        _check(lib.unshare(flags), "unshare")

    trace.step(f"unshare({flag_names(flags, _CLONE_NAMES)})", call, why)


def setns(fd: int, nstype: int = 0, why: str = "") -> None:
    def call() -> None:
        _check(lib.setns(fd, nstype), "setns")

    trace.step(f"setns({fd}, {flag_names(nstype, _CLONE_NAMES)})", call, why)


def fork_into_cgroup(cgroup_dir: str, why: str = "") -> int:
    """``os.fork()`` whose child is born in the cgroup2 directory ``cgroup_dir`` (clone3 with
    CLONE_INTO_CGROUP): 0 in the child, its pid in the parent.

    No process migrates, so none waits for the cgroup write lock's RCU grace period, which a
    write to ``cgroup.procs`` costs. Python's at-fork hooks do not run: call it only from a
    single-threaded process. Kernels before 5.7 (or a seccomp filter that hides clone3) give
    ENOSYS, EINVAL or EPERM: the caller falls back to fork and a ``cgroup.procs`` write.
    """
    fd = os.open(cgroup_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        def call() -> int:
            return _check(lib.md_fork_into_cgroup(fd), "clone3 into cgroup", cgroup_dir)

        return trace.step(f'clone3(CLONE_INTO_CGROUP, "{cgroup_dir}")', call, why)
    finally:
        os.close(fd)


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
    why: str = "",
    shown_target: str | None = None,
) -> None:
    """mount(2). ``shown_target`` is what --trace prints instead of ``target`` (for a
    /proc/self/fd/N target, the path it stands for)."""
    src = ffi.NULL if source is None else os.fsencode(source)
    fst = ffi.NULL if fstype is None else fstype.encode()
    dat = ffi.NULL if data is None else ffi.new("char[]", data.encode())

    def call() -> None:
        _check(lib.mount(src, os.fsencode(target), fst, flags, dat), f"mount {target}", target)

    shown_data = "" if data is None else f', "{data}"'
    trace.step(
        f'mount({source!r}, "{shown_target or target}", {fstype!r}, '
        f"{flag_names(flags, _MS_NAMES)}{shown_data})",
        call,
        why,
    )


def clone_tree(path: str, recursive: bool = False, userns_fd: int = -1, why: str = "") -> int:
    """A detached copy of the mount at ``path`` (with the mounts below it if ``recursive``),
    idmapped through the user namespace at ``userns_fd`` when one is given: the returned fd
    is a mount no path reaches yet (:func:`move_mount` attaches it; /proc/self/fd/N names
    it). open_tree(OPEN_TREE_CLONE) is 5.2+, MOUNT_ATTR_IDMAP 5.12+ and per filesystem."""
    def call() -> int:
        return _check(lib.md_clone_tree(os.fsencode(path), int(recursive), userns_fd),
                      "open_tree" if userns_fd < 0 else "idmap mount", path)

    flags = "OPEN_TREE_CLONE" + ("|AT_RECURSIVE" if recursive else "")
    shown = f'open_tree("{path}", {flags})'
    if userns_fd >= 0:
        shown += "; mount_setattr(MOUNT_ATTR_IDMAP)"
    return trace.step(shown, call, why)


def move_mount(fd: int, target: str, why: str = "", shown_target: str | None = None) -> None:
    """Attach the detached mount ``fd`` (from :func:`clone_tree`) at ``target``."""
    def call() -> None:
        _check(lib.md_move_mount(fd, os.fsencode(target)), f"move_mount {target}", target)

    trace.step(f'move_mount({fd}, "{shown_target or target}")', call, why)


def mount_as(fsuid: int, fsgid: int, source: str, target: str, fstype: str, data: str,
             why: str = "") -> None:
    """mount(2) with the caller's filesystem ids set to ``fsuid``/``fsgid`` for the call (and
    root's file capabilities kept): overlayfs over idmapped layers works with its
    mounter's credentials, which must be ids those layers map."""
    def call() -> None:
        raw = ffi.new("char[]", data.encode())
        _check(lib.md_mount_as(source.encode(), os.fsencode(target), fstype.encode(), 0, raw,
                               fsuid, fsgid), f"mount {target}", target)

    trace.step(f'setfsuid({fsuid}); setfsgid({fsgid}); mount("{source}", "{target}", '
               f'"{fstype}", 0, "{data}")', call, why)


@contextmanager
def fs_ids(uid: int, gid: int, why: str = "") -> Iterator[None]:
    """Within the block, files are made and checked as ``uid``/``gid`` (setfsuid and
    setfsgid, root's file capabilities kept): the engine's own writes into a rootfs seen
    through an idmapped mount, which refuses ids its mapping lacks (the host's root)."""
    trace.step(f"setfsuid({uid}); setfsgid({gid})",
               lambda: _check(lib.md_set_fsids(uid, gid), "setfsuid"), why)
    try:
        yield
    finally:
        lib.md_set_fsids(os.geteuid(), os.getegid())


def umount2(target: str, flags: int = 0, why: str = "") -> None:
    def call() -> None:
        _check(lib.umount2(os.fsencode(target), flags), f"umount {target}", target)

    trace.step(f'umount2("{target}", {flag_names(flags, _MNT_NAMES)})', call, why)


def pivot_root(new_root: str, put_old: str, why: str = "") -> None:
    def call() -> None:
        ret = lib.md_pivot_root(os.fsencode(new_root), os.fsencode(put_old))
        _check(ret, "pivot_root", new_root)

    trace.step(f'pivot_root("{new_root}", "{put_old}")', call, why)


def mknod(path: str, mode: int, major: int, minor: int, why: str = "") -> None:
    def call() -> None:
        _check(lib.mknod(os.fsencode(path), mode, lib.md_makedev(major, minor)), "mknod", path)

    trace.step(f'mknod("{path}", {oct(mode)}, makedev({major}, {minor}))', call, why)


def sethostname(name: str, why: str = "") -> None:
    raw = name.encode()

    def call() -> None:
        _check(lib.sethostname(raw, len(raw)), "sethostname", name)

    trace.step(f'sethostname("{name}")', call, why)


def close_range(first: int, last: int = 0xFFFFFFFF, why: str = "") -> None:
    """Close every fd in [first, last]; falls back to a /proc/self/fd walk before Linux 5.9."""

    def call() -> None:
        if lib.md_close_range(first, last, 0) == 0:
            return
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if first <= fd <= last:
                try:
                    os.close(fd)
                except OSError:
                    pass

    trace.step(f"close_range({first}, {'~0U' if last == 0xFFFFFFFF else last})", call, why)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2); raises OSError(ENOSYS) on kernels before 5.6 so callers can fall back."""
    fd = lib.md_openat2(dirfd, os.fsencode(path), flags, mode, resolve)
    if fd < 0:
        _raise(f"open {path}", path)
    return int(fd)


def link_up(ifname: str, why: str = "") -> None:
    def call() -> None:
        _check(lib.md_link_up(ifname.encode()), f"set link {ifname} up", ifname)

    trace.step(f'ioctl(SIOCSIFFLAGS, "{ifname}", IFF_UP)', call, why)


def nft_run(commands: str, why: str = "") -> str | None:
    """Run nft commands (one ``nft -f`` file's text, one transaction) through libnftables.

    What nft printed (a listing), or None when libnftables is not installed (the caller may
    run the ``nft`` program instead); nft's refusal raises OSError(EINVAL) with its message."""
    out = ffi.new("char[]", 1 << 16)
    err = ffi.new("char[]", 4096)
    result: list[int] = []

    def call() -> None:
        result.append(lib.md_nft_run(commands.encode(), out, len(out), err, len(err)))
        if result[0] == -1:
            message = ffi.string(err).decode(errors="replace").strip()
            raise OSError(22, message or "nft refused the ruleset")

    first = commands.split("\n", 1)[0]
    trace.step(f"nft_run_cmd_from_buffer(\"{first}...\")", call, why)
    return None if result[0] == -2 else ffi.string(out).decode(errors="replace")


def seccomp_load(program: bytes, n: int, flags: int = 0, why: str = "") -> None:
    """Install a seccomp filter: ``program`` is struct sock_filter[n] (runtime/seccomp.py).
    Irrevocable: from here on every syscall of this process and its children is filtered."""
    if len(program) != 8 * n or not 0 < n <= 0xFFFF:
        raise ValueError(f"seccomp filter: {len(program)} bytes is not {n} instructions")
    buf = ffi.from_buffer(program)

    def call() -> None:
        _check(lib.md_seccomp_load(buf, n, flags), "load seccomp filter")

    trace.step(f"seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}, {{len={n}, filter=...}})",
               call, why)


def bpf_device_filter(program: bytes, cgroup_dir: str, why: str = "") -> None:
    """Load ``program`` (eBPF instructions, 8 bytes each: cgroups/v2/devices.py) as a
    BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to the cgroup ``cgroup_dir``. The
    cgroup keeps it (no fd needs to stay open); it goes with the cgroup."""
    n = len(program) // 8
    buf = ffi.from_buffer(program)
    log = ffi.new("char[]", 1 << 16)
    prog = [-1]

    def load() -> None:
        prog[0] = lib.md_bpf_load_device_filter(buf, n, b"Apache", log, len(log))
        if prog[0] < 0:
            err = ffi.errno
            detail = ffi.string(log).decode(errors="replace").strip().splitlines()
            raise OSError(err, f"{os.strerror(err)}" + (f" ({detail[-1]})" if detail else ""))

    trace.step(f"bpf(BPF_PROG_LOAD, {{prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt={n}}})",
               load, why)
    try:
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            def attach() -> None:
                _check(lib.md_bpf_attach_device_filter(cg, prog[0]), "attach device filter",
                       cgroup_dir)

            trace.step(f'bpf(BPF_PROG_ATTACH, {{target_fd="{cgroup_dir}", '
                       "attach_type=BPF_CGROUP_DEVICE, flags=BPF_F_ALLOW_MULTI})", attach,
                       "the kernel asks this program at every open and mknod of a device")
        finally:
            os.close(cg)
    finally:
        os.close(prog[0])


# --- os-module calls that are container-setup steps, wrapped so --trace shows them ---


def chdir(path: str, why: str = "") -> None:
    trace.step(f'chdir("{path}")', lambda: os.chdir(path), why)


def chroot(path: str, why: str = "") -> None:
    trace.step(f'chroot("{path}")', lambda: os.chroot(path), why)


def mkdir(path: str, mode: int = 0o755, why: str = "") -> None:
    trace.step(f'mkdir("{path}", {oct(mode)})', lambda: os.mkdir(path, mode), why)


def symlink(target: str, path: str, why: str = "") -> None:
    trace.step(f'symlink("{target}", "{path}")', lambda: os.symlink(target, path), why)


def write_file(path: str, data: str, why: str = "") -> None:
    """One write to a kernel interface file (cgroup.procs, /proc/self/..., ...)."""

    def call() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    trace.step(f'write("{path}", "{data.strip()}")', call, why)


def setgroups(groups: Sequence[int], why: str = "") -> None:
    trace.step(f"setgroups({list(groups)})", lambda: os.setgroups(list(groups)), why)


def setresgid(gid: int, why: str = "") -> None:
    trace.step(f"setresgid({gid}, {gid}, {gid})", lambda: os.setresgid(gid, gid, gid), why)


def setresuid(uid: int, why: str = "") -> None:
    trace.step(f"setresuid({uid}, {uid}, {uid})", lambda: os.setresuid(uid, uid, uid), why)


def setsid(why: str = "") -> None:
    trace.step("setsid()", os.setsid, why)


def execve(path: str, argv: Sequence[str], env: Mapping[str, str], why: str = "") -> Any:
    if trace.enabled():
        trace.step(f'execve("{path}", {list(argv)!r}, [{len(env)} vars])', lambda: None, why)
    os.execve(path, list(argv), dict(env))
