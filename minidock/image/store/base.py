"""What every room of the image store shares: its paths, its two locks and its staged writes.

Two flocks, both in Paths.locks (minidock.linux.flock):

    image-store.lock   exclusive, reentrant within a process: every mutation holds it, so
                       concurrent CLIs never interleave read-modify-write cycles. Readers
                       take no lock: every file appears by rename, whole or not at all.
    layer-apply.lock   shared by every layer apply and every "register layers, then make
                       the image" sequence; whoever gets it exclusively (without waiting)
                       knows that no such work runs anywhere, so what no record names is
                       debris, not work in progress.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator

from minidock.linux import flock
from minidock.paths import Paths
from minidock.storage.atomic import rename_dir_synced, write_file_synced
from minidock.storage.overlay2 import Overlay2Driver

HEX64 = re.compile(r"^[a-f0-9]{64}$")
CACHE_ID = re.compile(r"^[a-f0-9]{64}(-init)?$")


def listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def read_text(path: str, limit: int = 4096) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode().strip()


class StoreBase:
    """The paths, locks and staging dirs of one data root's image store."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.root = paths.image_store
        self.driver = Overlay2Driver(paths.overlay2)
        self.layerdb = os.path.join(self.root, "layerdb")
        self.imagedb = os.path.join(self.root, "imagedb")
        self.refs_file = os.path.join(self.root, "repositories.json")
        self._lock = flock.ReentrantLock.for_path(os.path.join(paths.locks, "image-store.lock"))
        self._apply_lock = os.path.join(paths.locks, "layer-apply.lock")

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the store lock (reentrant) around a sequence of mutations."""
        return self._lock.held()

    def building(self) -> contextlib.AbstractContextManager[None]:
        """Hold around "register layers, then create the image that uses them" (pull, load):
        the apply lock, shared, so :meth:`stale` never takes a layer registered a moment
        ago, not yet used by the image being made, for an unused one."""
        return flock.locked(self._apply_lock, shared=True)

    @contextlib.contextmanager
    def _quiescent(self) -> Iterator[bool]:
        """The store lock, and whether no apply or build runs anywhere (apply lock free)."""
        with self.locked():
            try:
                probe = flock.HeldLock(self._apply_lock, blocking=False)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                probe.release()

    def _ensure_dirs(self) -> None:
        for path, mode in (
            (os.path.dirname(self.root), 0o700),
            (self.root, 0o700),
            (self.imagedb, 0o700),
            (os.path.join(self.imagedb, "content"), 0o700),
            (os.path.join(self.imagedb, "content", "sha256"), 0o700),
            (os.path.join(self.imagedb, "metadata"), 0o700),
            (os.path.join(self.imagedb, "metadata", "sha256"), 0o700),
            (self.layerdb, 0o700),
            (os.path.join(self.layerdb, "sha256"), 0o755),
            (os.path.join(self.layerdb, "tmp"), 0o755),
            (os.path.join(self.layerdb, "mounts"), 0o755),
        ):
            if not os.path.isdir(path):
                with contextlib.suppress(FileExistsError):
                    os.makedirs(path, mode)
                    os.chmod(path, mode)

    def _staging_dir(self) -> str:
        path = os.path.join(self.layerdb, "tmp", f"write-set-{os.urandom(8).hex()}")
        os.mkdir(path, 0o700)  # (tempfile would cost its import on every create)
        return path

    def _commit_dir(self, files: dict[str, str], final: str,
                    moved: dict[str, str] | None = None) -> None:
        """Write ``files`` into a staging dir under layerdb/tmp, then rename it to ``final``.

        ``moved`` maps more names to already written (fsynced) files on the same filesystem,
        renamed into the staging dir so they appear with the others, all at once.
        """
        with contextlib.ExitStack() as undo:
            staging = self._staging_dir()
            undo.callback(shutil.rmtree, staging, ignore_errors=True)
            for name, content in files.items():
                write_file_synced(os.path.join(staging, name), content.encode(), 0o644)
            for name, src in (moved or {}).items():
                os.chmod(src, 0o644)
                os.rename(src, os.path.join(staging, name))
            rename_dir_synced(staging, final)
            undo.pop_all()
