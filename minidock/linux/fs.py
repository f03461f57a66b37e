"""Path resolution inside a root directory, as if that directory were ``/``.

Image content is untrusted: a layer, a rootfs after a container ran, or a mount target named by
an image may contain symlinks that point anywhere (``etc -> /etc``, ``x -> ../../..``). Every
path minidock takes from such a tree is resolved with chroot semantics: absolute symlinks
restart at the root, ``..`` stops at the root, and nothing is ever followed out of it.

Two mechanisms give the same answer:

- ``openat2(root_fd, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (Linux 5.6+): the kernel
  walks the path atomically with respect to the caller, and also refuses /proc "magic links"
  (``/proc/self/root``, ``/proc/<pid>/fd/N``) that would jump to an arbitrary file.
- a component-wise walk in Python for older kernels or seccomp profiles that hide openat2:
  each component is opened with ``O_PATH | O_NOFOLLOW`` relative to the previous one;
  symlinks are read with readlink(2) and their text is resolved again by the same walk,
  so a symlink is never handed to the kernel to follow. Magic links therefore degrade to
  their text, which is resolved inside the root like any other symlink.

The walk keeps the directories it descended through on a stack, so ``..`` pops back to the
directory it came from instead of asking the kernel for the parent: the kernel's ``..`` of a
directory that was moved out of the root would leave it.

Every fd returned is close-on-exec, so nothing opened here can leak into a container.
Errors are ``OSError(errno, message, path)`` like the rest of :mod:`minidock.linux`.
"""

from __future__ import annotations

import errno
import os
import stat

from minidock import linux

# Set by tests (and usable as an escape hatch) to force the Python walk even where openat2
# works; flipped to False at run time when the kernel says openat2 does not exist.
use_openat2: bool = True

# Linux's own limit on symlinks followed during one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40

# openat2 with RESOLVE_IN_ROOT returns EAGAIN when a rename or mount raced with a ".." step
# (it cannot prove the step stayed inside the root); such races are rare, so retrying a few
# times is enough before giving up.
_EAGAIN_RETRIES = 16

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open ``path`` as if ``root_fd`` were ``/``; return a new close-on-exec fd.

    ``flags`` and ``mode`` are those of open(2). ``O_NOFOLLOW`` applies to the last component
    only, as in open(2). An empty path means the root itself, like ".".
    Raises ``OSError(errno, message, path)``.
    """
    path = path or "."
    flags |= os.O_CLOEXEC
    if not flags & (os.O_CREAT | os.O_TMPFILE):
        # openat2 is strict where openat ignores: a mode without O_CREAT is EINVAL.
        mode = 0
    if use_openat2:
        fd = _open_openat2(root_fd, path, flags, mode)
        if fd is not None:
            return fd
    return _open_walk(root_fd, path, flags, mode)


def open_parent_in_root(root_fd: int, path: str) -> tuple[int, str]:
    """Resolve the directory holding ``path``'s last component inside the root.

    Returns an ``O_PATH | O_DIRECTORY`` fd of that directory and the last component, so the
    caller can act on the name with ``*at`` calls without following it. The name is never
    "", "." or "..": such paths do not name an entry of a directory, and raise EINVAL.
    """
    head, _, name = path.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        raise OSError(errno.EINVAL, f"{path!r} does not end in a file name", path)
    return open_in_root(root_fd, head or ".", os.O_PATH | os.O_DIRECTORY), name


def read_file_in_root(root: str, path: str, limit: int) -> bytes | None:
    """Read a small regular file (``/etc/passwd``) of an untrusted tree without leaving it.

    Returns None when the file (or a directory on its way) does not exist. A file that is
    not regular (a FIFO would block, a device could be anything) or larger than ``limit``
    bytes raises OSError: a truncated passwd file would silently give wrong answers.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
            fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"read {path}: not a regular file", path)
        chunks = []
        total = 0
        while True:
            # Ask for one byte more than the limit so a file that grew past it is noticed.
            data = os.read(fd, limit + 1 - total)
            if not data:
                break
            chunks.append(data)
            total += len(data)
            if total > limit:
                raise OSError(errno.EFBIG, f"read {path}: larger than {limit} bytes", path)
        return b"".join(chunks)
    finally:
        os.close(fd)


def make_dirs_in_root(root: str, path: str, mode: int, uid: int, gid: int,
                      _hops: int = 0) -> None:
    """``mkdir -p`` of ``path`` inside the root (a container's WORKDIR): each missing
    directory is made relative to its parent's fd, resolved in the root, and given to
    ``uid``:``gid``; a symlink on the way (a dangling one too) is followed inside the root,
    never out of it."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            try:
                os.close(open_in_root(root_fd, prefix, os.O_PATH | os.O_DIRECTORY))
                continue
            except FileNotFoundError:
                pass
            parent, name = open_parent_in_root(root_fd, prefix)
            try:
                try:
                    os.mkdir(name, mode, dir_fd=parent)
                except FileExistsError:
                    target = _readlink_or_none(name, parent)
                    if target is None or _hops >= MAX_SYMLINKS:
                        raise
                    # a dangling symlink: make what it names, then the rest below it
                    base = target if target.startswith("/") else "/".join(parts[:i - 1]) + \
                        "/" + target
                    rest = "/".join([base, *parts[i:]])
                    make_dirs_in_root(root, rest, mode, uid, gid, _hops + 1)
                    return
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            except OSError as e:
                raise OSError(e.errno, f"mkdir {path} in the container: {e.strerror}",
                              path) from None
            finally:
                os.close(parent)
    finally:
        os.close(root_fd)


def copy_data(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes from fd ``src`` to fd ``dst`` in the kernel (copy_file_range),
    by read and write where it cannot (across filesystems on old kernels, special files);
    a source that ends sooner stops the copy."""
    left = size
    while left > 0:
        try:
            n = os.copy_file_range(src, dst, min(left, 1 << 30))
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            n = os.write(dst, os.read(src, min(left, 1 << 20)))
        if n == 0:
            break
        left -= n


def make_dir_at(dir_fd: int, name: str) -> None:
    """Make ``name`` a directory in ``dir_fd``, replacing a file or symlink that is there (a
    symlink is removed, never followed); an existing directory is kept. New ones are 0700
    until the copy that makes them gives them their own mode."""
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        return
    if not stat.S_ISDIR(existing.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        os.mkdir(name, 0o700, dir_fd=dir_fd)


def _open_openat2(root_fd: int, path: str, flags: int, mode: int) -> int | None:
    """openat2 in-root; None when this kernel cannot do it and the walk must be used."""
    global use_openat2
    resolve = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
    for _ in range(_EAGAIN_RETRIES):
        try:
            return linux.openat2(root_fd, path, flags, mode, resolve)
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.E2BIG):
                # No openat2 (before 5.6, or hidden by seccomp), or a struct open_how it
                # does not understand: it will not start working, stop asking.
                use_openat2 = False
                return None
            if e.errno == errno.EINVAL:
                # Either unknown RESOLVE_* bits (an old kernel) or flags this call got
                # wrong; the walk answers both correctly, for this call only.
                return None
            if e.errno != errno.EAGAIN:
                raise
    raise OSError(errno.EAGAIN, f"open {path}: resolution kept racing with renames", path)


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def _open_walk(root_fd: int, path: str, flags: int, mode: int) -> int:
    """The component-wise fallback of :func:`open_in_root` (see the module docstring)."""
    # Components still to resolve, in order; a symlink's target is spliced in at the front.
    # A trailing "/" (or "/.") means the last component must be a directory: the resolved
    # directory is then opened as ".", which gives the kernel's ENOTDIR/EISDIR answers.
    pending = _split(path)
    pending.reverse()  # used as a stack: pop() takes the next component
    dir_path = path.endswith("/") or path.endswith("/.") or path in ("", ".")
    stack: list[int] = []  # fds we opened, root excluded; stack[-1] is the current directory
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                # Clamp at the root; elsewhere go back to where we came from (see docstring).
                if stack:
                    os.close(stack.pop())
                continue
            cur = stack[-1] if stack else root_fd
            last = not pending and not dir_path
            if last:
                try:
                    # Open the last component without following it: if it is a symlink we
                    # resolve its text ourselves below, unless the caller asked O_NOFOLLOW.
                    fd = os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=cur)
                except OSError as e:
                    if flags & os.O_NOFOLLOW or e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise OSError(e.errno, f"open {path}: {e.strerror}", path) from None
                    target = _readlink_or_none(name, cur)
                    if target is None:
                        raise OSError(e.errno, f"open {path}: {e.strerror}", path) from None
                else:
                    # O_PATH | O_NOFOLLOW succeeds on a symlink and returns the link itself.
                    if flags & os.O_NOFOLLOW or not (
                        flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode)
                    ):
                        return fd
                    os.close(fd)
                    target = os.readlink(name, dir_fd=cur)
            else:
                try:
                    stack.append(os.open(name, _DIR_FLAGS, dir_fd=cur))
                    continue
                except OSError as e:
                    # O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR: look closer.
                    target = _readlink_or_none(name, cur) if e.errno == errno.ENOTDIR else None
                    if target is None:
                        raise OSError(e.errno, f"open {path}: {e.strerror}", path) from None
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, f"open {path}: {os.strerror(errno.ELOOP)}", path)
            if target.startswith("/"):
                while stack:
                    os.close(stack.pop())
            if not target:
                raise OSError(errno.ENOENT, f"open {path}: empty symlink", path)
            # The link's own trailing "/" makes its last component a directory lookup.
            parts = _split(target)
            if last and target.endswith(("/", "/.")):
                dir_path = True
            pending.extend(reversed(parts))
        cur = stack[-1] if stack else root_fd
        try:
            return os.open(".", flags, mode, dir_fd=cur)
        except OSError as e:
            raise OSError(e.errno, f"open {path}: {e.strerror}", path) from None
    finally:
        for fd in stack:
            os.close(fd)


def _readlink_or_none(name: str, dir_fd: int) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None
