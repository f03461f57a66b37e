"""Ids moved into (and out of) a user namespace's range on disk: what --userns remap needs on
a kernel whose overlayfs takes no idmapped layers (before 5.19), Docker's way.

Docker gives a remapped daemon a second root, ``<root>/<uid>.<gid>/``, where every layer is
unpacked again with each owner moved into the range. Here the copies are made from the
layers already unpacked: ``<root>/<uid>.<gid>/overlay2/<layer-id>/diff`` (cp -a, then every
entry chowned), with ``l/<LID>`` links as in the main store, once per layer and mapping. A
container's own upper dir is shifted in place while it runs under the mapping and shifted
back when it is unmounted (a marker file says which it is now), so commit, diff, cp and
export of a stopped container read the container's own ids.

chown clears the setuid and setgid bits and a file's capabilities (security.capability):
both are put back after it.
"""

from __future__ import annotations

import errno
import os
import stat

from minidock.errors import StorageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from collections.abc import Callable

    IdMap = tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]
    Shift = Callable[[int, int], tuple[int, int]]

SHIFT_FILE = "userns-shift"  # <layer>/userns-shift: the mapping its upper dir's ids are in
OVERFLOW_ID = 65534  # what the kernel shows for an id the namespace does not map
_CAPS = "security.capability"


def shift_of(idmap: IdMap, back: bool = False) -> Shift:
    """(uid, gid) -> the ids the mapping gives them (container -> host), or ``back``.
    An id the mapping lacks becomes 65534 on the way in and stays as it is on the way back
    (the host's root, say, for a file the engine wrote)."""
    from minidock.linux.idmap import to_container, to_host

    uids, gids = idmap
    convert, missing = (to_container, None) if back else (to_host, OVERFLOW_ID)

    def one(ranges: list[tuple[int, int, int]], i: int) -> int:
        found = convert(ranges, i)
        return found if found is not None else (i if missing is None else missing)

    return lambda uid, gid: (one(uids, uid), one(gids, gid))


def shift_tree(top: str, shift: Shift) -> None:
    """chown every entry under ``top`` (and ``top``) by ``shift``, never following links."""
    def fix(path: str) -> None:
        st = os.lstat(path)
        uid, gid = shift(st.st_uid, st.st_gid)
        if (uid, gid) == (st.st_uid, st.st_gid):
            return
        caps = None
        if stat.S_ISREG(st.st_mode):
            try:
                caps = os.getxattr(path, _CAPS, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENODATA, errno.ENOTSUP):
                    raise
        os.chown(path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        if caps is not None:
            os.setxattr(path, _CAPS, caps, follow_symlinks=False)

    try:
        fix(top)
        for parent, dirs, files in os.walk(top):
            for name in dirs + files:
                fix(os.path.join(parent, name))
    except OSError as e:
        raise StorageError(f"chown the ids of {top} into the user namespace's range: "
                           f"{os.strerror(e.errno or 0).lower()}") from e


def copy_shifted(src: str, dst: str, shift: Shift) -> None:
    """``dst`` (which must not exist): ``src`` copied with everything (hard links, devices,
    xattrs such as overlayfs' opaque marks) and every owner shifted. Made under a temporary
    name and renamed: a copy killed half-way is never used."""
    import subprocess  # (only for a first copy: subprocess loads threading)

    tmp = f"{dst}.tmp-{os.getpid()}"
    r = subprocess.run(["cp", "-a", "--reflink=auto", src, tmp], capture_output=True,
                       text=True, check=False)
    try:
        if r.returncode != 0:
            raise StorageError(f"copy {src} for the user namespace: {r.stderr.strip()}")
        shift_tree(tmp, shift)
        os.rename(tmp, dst)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_marker(layer_dir: str) -> IdMap | None:
    """The mapping a layer's upper dir is shifted into now (None: its own ids)."""
    import json

    marker = os.path.join(layer_dir, SHIFT_FILE)
    try:
        with open(marker) as f:
            raw = json.load(f)
        return ([(int(c), int(h), int(n)) for c, h, n in raw[0]],
                [(int(c), int(h), int(n)) for c, h, n in raw[1]])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError, TypeError) as e:
        raise StorageError(f"read {marker}: {e}") from e


def back_shift(upper: str) -> Shift | None:
    """For a tar of a container's upper dir (``<layer>/diff``) read while it runs over
    chowned copies: the ids as the container knows them."""
    idmap = read_marker(os.path.dirname(upper))
    return shift_of(idmap, back=True) if idmap else None
