"""Crash-safe file writes: the store is either before or after a change, never in between.

The protocol (the same one Docker's ``atomicwriter`` follows):

    write data to  <dir>/.<name>.tmp-<random>   (same directory => same filesystem)
    fchmod to the final mode                    (explicit: the umask must not decide)
    fsync the file                              (data is on disk before it has a name)
    rename over <dir>/<name>                    (atomic replace, readers see old or new)
    fsync <dir>                                 (the rename itself survives a power cut)

A killed process leaves at most a ``.tmp-`` file behind, never a truncated target.
Directories that must appear all at once (a layer's metadata) are staged the same way:
fill a temporary directory with :func:`write_file_synced`, then :func:`rename_dir_synced`.
"""

from __future__ import annotations

import contextlib
import os

from minidock.errors import quietly


def fsync_dir(path: str) -> None:
    """fsync a directory so that renames and creations inside it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_synced(path: str, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Create ``path`` (which must not exist) with ``data`` and ``mode``, fsynced.

    For files inside a staging directory whose rename is the commit point.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | str, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename + fsync dir).

    ``durable=False`` keeps the atomic rename (readers never see half a file) but skips
    both fsyncs, for files that are regenerated anyway or live on a per-boot tmpfs: an
    OCI bundle, a container's hosts/hostname/resolv.conf (Docker writes those plainly).
    """
    raw = data.encode() if isinstance(data, str) else data
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.tmp-{os.urandom(6).hex()}")
    with contextlib.ExitStack() as undo:
        undo.callback(quietly, os.unlink, tmp)
        write_file_synced(tmp, raw, mode, sync=durable)
        os.rename(tmp, path)
        undo.pop_all()
    if durable:
        fsync_dir(directory)


def rename_dir_synced(src: str, dst: str) -> None:
    """Rename a fully written staging directory into place and make the rename durable."""
    fsync_dir(src)
    os.rename(src, dst)
    fsync_dir(os.path.dirname(os.path.abspath(dst)))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
