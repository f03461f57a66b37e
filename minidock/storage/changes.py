"""What a container changed: its overlay upper dir read against the layers below (``docker diff``).

A container writes only into its upper dir (``overlay2/<mount-id>/diff``); overlayfs records
a deletion there as a whiteout (a 0/0 character device) and a directory that replaced one of
the same name below as *opaque* (xattr ``trusted.overlay.opaque=y``). Read the way Docker's
native overlay diff reads it (moby/go-archive ``changes.go`` with the overlay delete rule):

    upper entry                     lower has the path?   change
    whiteout 0/0 char device        -                     D <path>
    opaque directory                -                     D <path>, then its contents
    anything else                   no                    A <path>
    a directory                     yes, a directory      nothing, if mode, size and mtime
                                                          are the lower one's (copied up only
                                                          because something below changed)
    anything else                   yes                   C <path>

and the parent of every A or D is listed as C once (a directory whose entries changed was
modified), unless it is ``/``. Entries come in walk order: by name, a directory before its
contents, so the output is the same every time (Docker's naive diff, used on kernels where
overlay's redirect_dir is on, lists them in no particular order).
"""

from __future__ import annotations

import os
import stat

from minidock.linux import fs

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _is_opaque(path: str) -> bool:
    for attr in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _lower_stat(lowers: list[int], rel: str) -> os.stat_result | None:
    """The path in the uppermost lower layer that has it, or None. Symlinks are followed, as
    Docker's os.Stat does, but inside each layer as if it were ``/``: an image's
    ``etc -> /etc`` never makes this look at the host's /etc."""
    for lower in lowers:
        try:
            fd = fs.open_in_root(lower, rel, os.O_PATH)
        except OSError:
            continue
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    return None


def overlay_changes(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """``(kind, path)`` for each change, kind ``A``, ``C`` or ``D``; ``lowers`` uppermost first
    (the container's -init layer, then the image's layers)."""
    changes: list[tuple[str, str]] = []
    changed_dirs: set[str] = set()
    lower_fds: list[int] = []

    def walk(rel_dir: str) -> None:
        here = os.path.join(upper, rel_dir)
        for name in sorted(os.listdir(here), key=os.fsencode):
            rel = os.path.join(rel_dir, name)
            full = os.path.join(upper, rel)
            st = os.lstat(full)
            path = "/" + rel
            is_dir = stat.S_ISDIR(st.st_mode)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                kind = "D"
            elif is_dir and _is_opaque(full):
                kind = "D"  # replaced as a whole; what it holds now follows as A or C
            else:
                below = _lower_stat(lower_fds, rel)
                kind = "A" if below is None else "C"
                if (below is not None and is_dir and stat.S_ISDIR(below.st_mode)
                        and st.st_size == below.st_size and st.st_mode == below.st_mode
                        and st.st_mtime_ns == below.st_mtime_ns):
                    kind = ""  # copied up on the way to a change further down
            if is_dir and kind:
                changed_dirs.add(path)
            if kind in ("A", "D"):
                parent = os.path.dirname(path)
                if parent != "/" and parent not in changed_dirs:
                    changes.append(("C", parent))
                    changed_dirs.add(parent)
            if kind:
                changes.append((kind, path))
            if is_dir:
                walk(rel)

    try:
        for lower in lowers:
            lower_fds.append(os.open(lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        walk("")
    finally:
        for fd in lower_fds:
            os.close(fd)
    return changes
