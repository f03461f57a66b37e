"""``docker cp``: files between a container's filesystem and the host, or a tar stream.

    cp CONTAINER:SRC DST|-        cp SRC|- CONTAINER:DST

Every path inside the container is resolved as if its root were ``/`` (minidock.linux.fs:
openat2 RESOLVE_IN_ROOT, or a component walk): ``/escape -> /tmp`` lands in the container's
/tmp, ``..`` stops at its root. What is then read or written is reached through file
descriptors with ``O_NOFOLLOW`` and ``*at`` calls, one component at a time, so a symlink
swapped in while the copy runs is never followed out of the container (nor into it, for a
source on the host only the last component follows, with -L).

Docker's rules, as its CLI and daemon apply them (checked against docker 20.10 here):

    SRC             DST exists as a dir     DST is a file         DST does not exist
    a file          DST/basename(SRC)       replaced              created (its parent must exist)
    a dir           DST/basename(SRC)       "cannot copy          created with SRC's contents
    a dir + "/."    SRC's contents in DST    directory"            created with SRC's contents

DST ending in "/" must be a directory. ``-`` as SRC is a tar read from stdin, extracted into
the directory DST (through the layer-apply routine that refuses escaping entries); as DST, a
tar of SRC written to stdout. The container may be running or stopped (a stopped one's
filesystem is mounted for the copy). Ownership: copied out, files belong to whoever runs
minidock (as Docker's CLI extracts them); copied in, they keep their uid and gid (what docker
20.10's daemon does, with or without -a). /etc/hosts, /etc/hostname and /etc/resolv.conf are
read from the container's own files, which are what its processes see there.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys

from minidock.engine import containers as ct
from minidock.engine.containers import store
from minidock.errors import InvalidArgument, NotFound
from minidock.linux import fs
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

    #: (uid, gid) of a host file -> the ids to chown its copy to
    Owner = Callable[[int, int], tuple[int, int]]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
#: files the container sees through bind mounts of its own copies (containers/<id>/...)
_CONTAINER_FILES = frozenset({"hosts", "hostname", "resolv.conf"})


@contextlib.contextmanager
def _container_root(paths: Paths, ref: str) -> Iterator[tuple[ct.Container, int]]:
    """The container and an fd of its root filesystem, mounted for the copy if it is not."""
    c = ct.get(paths, ref)
    with ct.mounted_rootfs(paths, c.id) as root:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield c, root_fd
        finally:
            os.close(root_fd)


def _not_found(path: str, ref: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {ref}")


# --- out of the container ------------------------------------------------------------------


def copy_from(paths: Paths, ref: str, src: str, dst: str, *, follow_link: bool = False,
              out: BinaryIO | None = None) -> None:
    """``cp CONTAINER:SRC DST``; ``dst`` "-" writes a tar of SRC to ``out`` (stdout)."""
    if not src:
        raise InvalidArgument("copy: the path in the container is empty")
    src_abs = "/" + src.lstrip("/")
    contents = src_abs.endswith("/.")
    with _container_root(paths, ref) as (c, root_fd):
        parent_fd, name = _resolve_source(root_fd, src_abs, follow_link, ref)
        arcname = name if name != "." else os.path.basename(src_abs.rstrip("/.")) or "."
        mapped = _container_file(root_fd, parent_fd, name)
        if mapped is not None and os.path.isfile(os.path.join(c.dir, mapped)):
            os.close(parent_fd)
            parent_fd = os.open(c.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            name = mapped
        try:
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _not_found(src_abs, ref) from None
            if dst == "-":
                ids = store.tar_ids(paths, c.id) if c.state.running else None
                _tar_out(parent_fd, name, arcname, out or sys.stdout.buffer, ids)
                return
            target = _host_target(dst, st, arcname, contents)
            _copy_tree_out(parent_fd, name, st, target, {})
        finally:
            os.close(parent_fd)


def _container_file(root_fd: int, parent_fd: int, name: str) -> str | None:
    """The name of the container's own file (containers/<id>/...) when ``name`` in
    ``parent_fd`` is /etc/hosts, /etc/hostname or /etc/resolv.conf, however it was reached."""
    if name not in _CONTAINER_FILES:
        return None
    try:
        etc_fd = fs.open_in_root(root_fd, "/etc", os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        etc = os.fstat(etc_fd)
    finally:
        os.close(etc_fd)
    here = os.fstat(parent_fd)
    return name if (here.st_dev, here.st_ino) == (etc.st_dev, etc.st_ino) else None


def _resolve_source(root_fd: int, path: str, follow: bool, ref: str) -> tuple[int, str]:
    """(fd of the directory holding the source, its name there); the last component is
    followed (inside the root) only with -L, or when the path says it is a directory."""
    try:
        if path.rstrip("/") in ("", "/."):
            return os.dup(root_fd), "."
        if follow or path.endswith("/"):
            fd = fs.open_in_root(root_fd, path.rstrip("/") if not path.endswith("/.") else path,
                                 os.O_PATH)
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                return fd, "."
            os.close(fd)
            if path.endswith("/"):  # "file/" names a directory: as lstat(2) says, it is not
                raise InvalidArgument(f"lstat {path}: not a directory")
        if path.endswith("/."):
            return fs.open_in_root(root_fd, path[:-2] or "/", os.O_PATH | os.O_DIRECTORY), "."
        return fs.open_parent_in_root(root_fd, path)
    except FileNotFoundError:
        raise _not_found(path, ref) from None
    except NotADirectoryError:
        raise _not_found(path, ref) from None


def _host_target(dst: str, st: os.stat_result, arcname: str, contents: bool) -> str:
    """Where on the host the copy goes, by Docker's table (module docstring)."""
    is_dir = stat.S_ISDIR(st.st_mode)
    if os.path.isdir(dst):
        return dst if (is_dir and contents) else os.path.join(dst, arcname)
    if os.path.lexists(dst):
        if is_dir:
            raise InvalidArgument("cannot copy directory")
        return dst
    if dst.endswith("/"):
        raise InvalidArgument("no such directory")
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        raise InvalidArgument(f'invalid output path: directory "{parent}" does not exist')
    return dst


def _copy_tree_out(dfd: int, name: str, st: os.stat_result, target: str,
                   links: dict[tuple[int, int], str]) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if not os.path.isdir(target):
            if os.path.lexists(target):
                os.unlink(target)
            os.mkdir(target, 0o700)
        cfd = os.open(name, _DIR, dir_fd=dfd)
        try:
            for child in sorted(os.listdir(cfd), key=os.fsencode):
                cst = os.stat(child, dir_fd=cfd, follow_symlinks=False)
                _copy_tree_out(cfd, child, cst, os.path.join(target, child), links)
        finally:
            os.close(cfd)
        os.chmod(target, stat.S_IMODE(mode))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in links:
        os.link(links[key], target)
        return
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(name, dir_fd=dfd), target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if stat.S_ISREG(mode):
        _copy_file(lambda: os.open(name, _READ, dir_fd=dfd),
                   lambda: os.open(target, _WRITE, 0o600), st, keep_owner=False)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(target, mode, st.st_rdev)
    else:
        return  # sockets are not copied, as Docker's archive skips them
    if st.st_nlink > 1:
        links[key] = target


def _same(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid


def _copy_file(open_src: Callable[[], int], open_out: Callable[[], int], st: os.stat_result,
               *, keep_owner: bool, owner: Owner = _same) -> None:
    """Copy a file's data to the one ``open_out`` makes, with the mode and times of ``st`` (and
    its owner with ``keep_owner``, as ``owner`` gives the ids to chown to)."""
    with contextlib.ExitStack() as close:
        src = open_src()
        close.callback(os.close, src)
        out = open_out()
        close.callback(os.close, out)
        fs.copy_data(src, out, st.st_size)
        if keep_owner:
            os.fchown(out, *owner(st.st_uid, st.st_gid))  # clears setuid: the mode after it
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))


def _tar_out(dfd: int, name: str, arcname: str, out: BinaryIO, ids: Owner | None = None
             ) -> None:
    from minidock.image.export import tar_entry

    for chunk in tar_entry(dfd, name, arcname, ids):
        out.write(chunk)
    out.flush()


# --- into the container --------------------------------------------------------------------


def copy_to(paths: Paths, ref: str, src: str, dst: str, *, follow_link: bool = False,
            stdin: BinaryIO | None = None) -> None:
    """``cp SRC CONTAINER:DST``; ``src`` "-" extracts a tar read from ``stdin``."""
    if not dst:
        raise InvalidArgument("copy: the path in the container is empty")
    dst_abs = "/" + dst.lstrip("/")
    if src != "-":
        try:
            st = os.stat(src) if follow_link else os.lstat(src)
        except FileNotFoundError:
            # as Docker's CLI: the call and the absolute path
            raise InvalidArgument(f"{'stat' if follow_link else 'lstat'} "
                                  f"{os.path.abspath(src)}: no such file or directory") from None
    with _container_root(paths, ref) as (c, root_fd):
        if src == "-":
            remapped = c.state.running and _remapped(c)
            _untar_in(root_fd, dst_abs, ref, c.id, stdin or sys.stdin.buffer,
                      c.state.pid if remapped else 0)
            return
        contents = src.endswith("/.")
        arcname = os.path.basename(os.path.normpath(os.path.abspath(src)))
        try:
            dfd = fs.open_in_root(root_fd, dst_abs, os.O_PATH)
        except FileNotFoundError:
            dfd = -1
        except NotADirectoryError:
            raise _not_found(dst_abs, ref) from None
        if dfd >= 0:
            try:
                dst_is_dir = stat.S_ISDIR(os.fstat(dfd).st_mode)
            finally:
                os.close(dfd)
        if dfd >= 0 and dst_is_dir:
            parent = fs.open_in_root(root_fd, dst_abs, os.O_RDONLY | os.O_DIRECTORY)
            name = "." if (stat.S_ISDIR(st.st_mode) and contents) else arcname
        else:
            if dfd >= 0 and stat.S_ISDIR(st.st_mode):
                raise InvalidArgument("cannot copy directory")
            if dfd < 0 and dst_abs.endswith("/"):
                raise _not_found(dst_abs.rstrip("/"), ref)
            try:
                parent_path, name = fs.open_parent_in_root(root_fd, dst_abs)
            except (FileNotFoundError, NotADirectoryError):
                raise _not_found(os.path.dirname(dst_abs.rstrip("/")), ref) from None
            try:
                parent = os.open(".", _DIR, dir_fd=parent_path)
            finally:
                os.close(parent_path)
        links: dict[tuple[int, int], tuple[int, str]] = {}
        try:
            with _as_container_root(c) as owner:
                _copy_tree_in(src, st, parent, name, follow_link, links, owner)
        finally:
            os.close(parent)
            for link_dir, _ in links.values():
                os.close(link_dir)


def _remapped(c: ct.Container) -> bool:
    from minidock.engine.spec import remap

    return remap.wanted(str(c.host_config.get("UsernsMode") or ""))


@contextlib.contextmanager
def _as_container_root(c: ct.Container) -> Iterator[Owner]:
    """Writes into a running --userns remap container go through its idmapped rootfs, which
    stores only ids of its mapping: they are made as the container's root, and owners are
    given as the mount shows them (container id + the range's start)."""
    from minidock.engine.spec import remap

    remapped = remap.for_container(c.host_config) if c.state.running else None
    if remapped is None:
        yield _same
        return
    from minidock import linux
    from minidock.storage.shifted import shift_of

    owner = shift_of(remapped[0])

    with linux.fs_ids(*owner(0, 0), why="write into the idmapped rootfs as its root"):
        yield owner


def _copy_tree_in(src: str, st: os.stat_result, parent: int, name: str, follow: bool,
                  links: dict[tuple[int, int], tuple[int, str]], owner: Owner = _same) -> None:
    """Copy the host path ``src`` to ``name`` in the directory fd ``parent`` (in the
    container), never following anything on the container's side."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if name == ".":
            cfd = os.dup(parent)
        else:
            fs.make_dir_at(parent, name)
            cfd = os.open(name, _DIR, dir_fd=parent)
        try:
            for child in sorted(os.listdir(src), key=os.fsencode):
                path = os.path.join(src, child)
                _copy_tree_in(path, os.lstat(path), cfd, child, False, links, owner)
            if name != ".":
                os.fchown(cfd, *owner(st.st_uid, st.st_gid))
                os.fchmod(cfd, stat.S_IMODE(mode))
                os.utime(cfd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(cfd)
        return
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(existing.st_mode):
            raise InvalidArgument(f"cannot overwrite directory {name!r} with a non-directory")
        os.unlink(name, dir_fd=parent)
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in links:
        first_dir, first_name = links[key]
        os.link(first_name, name, src_dir_fd=first_dir, dst_dir_fd=parent,
                follow_symlinks=False)
        return
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), name, dir_fd=parent)
        os.chown(name, *owner(st.st_uid, st.st_gid), dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent,
                 follow_symlinks=False)
        return
    if stat.S_ISREG(mode):
        nofollow = 0 if follow else os.O_NOFOLLOW
        _copy_file(lambda: os.open(src, os.O_RDONLY | os.O_CLOEXEC | nofollow),
                   lambda: os.open(name, _WRITE | os.O_EXCL, 0o600, dir_fd=parent), st,
                   keep_owner=True, owner=owner)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(name, mode, st.st_rdev, dir_fd=parent)
        os.chown(name, *owner(st.st_uid, st.st_gid), dir_fd=parent, follow_symlinks=False)
    else:
        return
    if st.st_nlink > 1:
        links[key] = (os.dup(parent), name)


def _untar_in(root_fd: int, dst: str, ref: str, cid: str, stdin: BinaryIO,
              userns_pid: int = 0) -> None:
    """``cp - CONTAINER:DST``: the tar on stdin extracted into the directory DST."""
    from minidock.image.layer import apply_layer

    try:
        dfd = fs.open_in_root(root_fd, dst, os.O_RDONLY | os.O_DIRECTORY)
    except NotADirectoryError:
        raise InvalidArgument(f'destination "{ref}:{dst}" must be a directory') from None
    except FileNotFoundError:
        raise _not_found(dst, ref) from None
    try:
        if userns_pid:
            _in_user_namespace(userns_pid, lambda: apply_layer(stdin, f"/proc/self/fd/{dfd}"))
        else:
            apply_layer(stdin, f"/proc/self/fd/{dfd}")
    finally:
        os.close(dfd)


def _in_user_namespace(pid: int, work: Callable[[], object]) -> None:
    """Run ``work`` in a child that is the root of the user namespace of process ``pid``
    (a running --userns remap container): what it writes through the idmapped rootfs is
    owned as the tar says, in the container's ids, as if the container had written it."""
    from minidock import linux
    from minidock.errors import MinidockError

    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # never returns into the caller's stack
        try:
            os.close(r)
            fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(fd, linux.CLONE_NEWUSER, why="write as the container's root")
            linux.setgroups([])
            linux.setresgid(0)
            linux.setresuid(0)
            work()
        except BaseException as e:  # forked: reported, then _exit
            text = e.message if isinstance(e, MinidockError) else str(e)
            os.write(w, (text or type(e).__name__).encode()[:4000])
        finally:
            os._exit(0)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(child, 0)
    if chunks:
        raise MinidockError(b"".join(chunks).decode(errors="replace"))
