"""The overlay2 graph driver, in Docker's exact on-disk layout.

One directory per layer under ``<root>/overlay2`` (the driver's *home*)::

    overlay2/
      l/                         0700  short names, so 128 lower dirs fit in one page
        ABCDEFGHIJKLMNOPQRSTUVWXYZ -> ../<id>/diff
      <id>/                      0710
        diff/                    0755  this layer's files (the overlay upperdir when rw)
        link                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ" (this layer's l/ name)
        lower                          "l/<parent LID>:l/<grandparent LID>:..." (uppermost first)
        work/                    0700  overlay's workdir (only with a parent)
        merged/                  0700  the mount point, only while mounted
        committed                0600  empty; written when a child layer is created on top

A base layer has only ``diff/`` and ``link``: "mounting" it is just using ``diff/``.
A layer with a ``committed`` marker is read-only: it is mounted with its own diff as the top
*lower* dir and no upperdir. Anything else gets ``upperdir=diff,workdir=work``.

Why ``l/``: the mount data (``lowerdir=...``) must fit in one page. With 26-character link
names, (26 + len("l/")) * 128 layers = 3584 bytes <= 4096 - 512. Docker still mounts with
absolute ``<home>/l/<LID>`` paths when they fit, and only when they do not, switches to
paths relative to ``<home>``: that needs the mounting task's working directory to be
``<home>``, which we do in a short-lived forked child so the CLI's cwd never moves::

    parent                               child (fork)
      |-- fork -------------------------->  chdir(<home>)
      |                                     mount("overlay", "<id>/merged", "overlay", 0,
      |                                           "lowerdir=l/A:l/B,...,upperdir=<id>/diff,...")
      |<-- pipe: "0" or errno, exit ------  _exit(0)
      waitpid; raise OSError(errno) on failure

The mount lives in the CLI's mount namespace (the host's): minidock has no daemon, so the
mount itself is the state; :meth:`Overlay2Driver.get` is idempotent and :meth:`put` undoes it.
Callers serialize get/put/remove of one id (the image store holds its lock around them).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import re
import shutil

from minidock import linux
from minidock.errors import InvalidArgument, StorageError, quietly
from minidock.linux import trace
from minidock.storage import shifted
from minidock.storage.atomic import atomic_write

#: an id mapping for idmapped layers: (uid ranges, gid ranges), each range (container id,
#: host id, count) as a user namespace's uid_map line
IdMap = tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]

DRIVER_NAME = "overlay2"
LINK_DIR = "l"
DIFF_DIR = "diff"
WORK_DIR = "work"
MERGED_DIR = "merged"
LOWER_FILE = "lower"
LINK_FILE = "link"
COMMITTED_FILE = "committed"
MAX_DEPTH = 128
ID_LENGTH = 26

# Layer ids are directory names: cache-ids and mount-ids are 64 hex (+ "-init"), but the
# driver accepts any plain name so tests and tools can use readable ones. Never "l", "." or
# "..", never a slash.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LINK_RE = re.compile(r"^[A-Z2-7]{26}$")

IDMAP_DIR = "idmap"  # <id>/idmap/N: idmapped layers, attached only while the overlay mounts
OVERLAY_HINT = "overlayfs is not available in this kernel: modprobe overlay"
IDMAP_HINT = ("--userns remap needs overlayfs over idmapped layers: Linux 5.19 or later, with "
              "the engine's root on a filesystem that supports idmapped mounts (ext4, xfs, "
              "btrfs; tmpfs from 6.3)")


def generate_link_id() -> str:
    """26 characters of base32 (A-Z, 2-7) from 17 random bytes (130 random bits needed)."""
    return base64.b32encode(os.urandom((ID_LENGTH * 5 + 7) // 8)).decode()[:ID_LENGTH]


def _errtext(e: OSError) -> str:
    # Go-style lowercase reason ("invalid argument"), which is what users compare against.
    reason = os.strerror(e.errno) if e.errno else str(e)
    return reason[:1].lower() + reason[1:]


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields[:3] != ["0", "0", "4294967295"]


class Overlay2Driver:
    """Docker's overlay2 driver over ``home`` (normally ``Paths.overlay2``)."""

    name = DRIVER_NAME

    def __init__(self, home: str) -> None:
        self.home = os.path.abspath(home)
        self._prefix: str | None = None
        self._volatile_ok = True

    # --- layout -------------------------------------------------------------------------

    def _check_id(self, layer_id: str) -> str:
        if not _ID_RE.match(layer_id) or layer_id == LINK_DIR:
            raise InvalidArgument(f"invalid layer id {layer_id!r}")
        return layer_id

    def dir(self, layer_id: str) -> str:
        return os.path.join(self.home, self._check_id(layer_id))

    def diff_path(self, layer_id: str) -> str:
        return os.path.join(self.dir(layer_id), DIFF_DIR)

    def merged_path(self, layer_id: str) -> str:
        return os.path.join(self.dir(layer_id), MERGED_DIR)

    def exists(self, layer_id: str) -> bool:
        return os.path.isdir(self.dir(layer_id))

    def _ensure_home(self) -> None:
        # Docker: home 0710 (group = remapped root), l/ 0700. chmod explicitly: umask.
        for path, mode in ((self.home, 0o710), (os.path.join(self.home, LINK_DIR), 0o700)):
            try:
                os.makedirs(path, mode)
                os.chmod(path, mode)
            except FileExistsError:
                pass

    def _read_link(self, layer_id: str) -> str:
        path = os.path.join(self.dir(layer_id), LINK_FILE)
        try:
            with open(path) as f:
                lid = f.read().strip()
        except FileNotFoundError:
            raise StorageError(f"read {path}: layer {layer_id} has no link file") from None
        if not _LINK_RE.match(lid):
            raise StorageError(f"read {path}: invalid link id {lid!r}")
        return lid

    def _read_lower(self, layer_id: str) -> str | None:
        try:
            with open(os.path.join(self.dir(layer_id), LOWER_FILE)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def _lower_for_child(self, parent: str) -> str:
        """The ``lower`` file content of a new child of ``parent``: its link, then its lower."""
        lowers = [f"{LINK_DIR}/{self._read_link(parent)}"]
        parent_lower = self._read_lower(parent)
        if parent_lower:
            lowers.extend(parent_lower.split(":"))
        if len(lowers) > MAX_DEPTH:
            raise StorageError(
                f"create layer on {self.dir(parent)}: max depth exceeded "
                f"({len(lowers)} lower layers, the limit is {MAX_DEPTH})"
            )
        return ":".join(lowers)

    # --- create / remove ----------------------------------------------------------------

    def create(self, layer_id: str, parent: str | None = None) -> None:
        """Create the directories of a new layer; with ``parent``, stacked on top of it.

        On failure nothing of the new layer is left behind.
        """
        d = self.dir(layer_id)
        if parent is not None and not self.exists(parent):
            raise StorageError(f"create layer {d}: parent layer {self.dir(parent)} does not exist")
        self._ensure_home()
        try:
            os.mkdir(d, 0o710)
        except FileExistsError:
            raise StorageError(f"create layer {d}: already exists") from None
        try:
            with contextlib.ExitStack() as undo:
                undo.callback(shutil.rmtree, d, ignore_errors=True)
                os.chmod(d, 0o710)
                os.mkdir(os.path.join(d, DIFF_DIR), 0o755)
                os.chmod(os.path.join(d, DIFF_DIR), 0o755)
                while True:
                    lid = generate_link_id()
                    link_path = os.path.join(self.home, LINK_DIR, lid)
                    try:
                        os.symlink(f"../{layer_id}/{DIFF_DIR}", link_path)
                    except FileExistsError:
                        continue  # 130 random bits collided: pick again
                    undo.callback(quietly, os.unlink, link_path)
                    break
                atomic_write(os.path.join(d, LINK_FILE), lid, 0o644)
                if parent is not None:
                    lower = self._lower_for_child(parent)
                    os.mkdir(os.path.join(d, WORK_DIR), 0o700)
                    os.chmod(os.path.join(d, WORK_DIR), 0o700)
                    # The parent now has a child: from here on it is mounted read-only. (An
                    # image's top layer gets it with its first container; the next ones skip
                    # two fsyncs.)
                    committed = os.path.join(self.dir(parent), COMMITTED_FILE)
                    if not os.path.exists(committed):
                        atomic_write(committed, b"", 0o600)
                    atomic_write(os.path.join(d, LOWER_FILE), lower, 0o644)
                undo.pop_all()
        except OSError as e:
            raise StorageError(f"create layer {d}: {_errtext(e)}") from e

    def remove(self, layer_id: str) -> None:
        """Unmount if needed, then remove the ``l/`` link and the layer directory."""
        d = self.dir(layer_id)
        if not os.path.lexists(d):
            return
        self._unmount(layer_id)
        self._drop_idmapped(os.path.join(d, IDMAP_DIR))
        self._remove_copies(layer_id)
        try:
            lid = self._read_link(layer_id)
        except StorageError:
            lid = None  # half-created layer: no (valid) link, nothing to unlink
        if lid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.home, LINK_DIR, lid))
        try:
            shutil.rmtree(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"remove layer {d}: {_errtext(e)}") from e

    # --- metadata -----------------------------------------------------------------------

    def lower_dirs(self, layer_id: str) -> list[str]:
        """Absolute ``<home>/<id>/diff`` paths of the lower layers, uppermost first."""
        lower = self._read_lower(layer_id)
        if not lower:
            return []
        dirs = []
        for entry in lower.split(":"):
            link = os.path.join(self.home, entry)
            try:
                target = os.readlink(link)
            except OSError as e:
                raise StorageError(f"readlink {link}: {_errtext(e)}") from e
            dirs.append(os.path.normpath(os.path.join(self.home, LINK_DIR, target)))
        return dirs

    def lower_ids(self, layer_id: str) -> list[str]:
        """The ids of the lower layers, uppermost (the parent) first."""
        return [os.path.basename(os.path.dirname(p)) for p in self.lower_dirs(layer_id)]

    def metadata(self, layer_id: str) -> dict[str, str]:
        """GraphDriver.Data as Docker reports it (LowerDir only when there are lower layers)."""
        d = self.dir(layer_id)
        if not os.path.isdir(d):
            raise StorageError(f"layer {d} does not exist")
        data: dict[str, str] = {}
        lowers = self.lower_dirs(layer_id)
        if lowers:
            data["LowerDir"] = ":".join(lowers)
        data["MergedDir"] = os.path.join(d, MERGED_DIR)
        data["UpperDir"] = os.path.join(d, DIFF_DIR)
        data["WorkDir"] = os.path.join(d, WORK_DIR)
        return data

    def diff_size(self, layer_id: str) -> int:
        """Bytes in ``diff/`` as Docker counts them: non-directories, hard links once."""
        total = 0
        seen: set[tuple[int, int]] = set()
        root = self.diff_path(layer_id)

        def walk(path: str) -> None:
            nonlocal total
            with os.scandir(path) as it:
                for entry in it:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        walk(entry.path)
                        continue
                    if st.st_size == 0 or (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size

        walk(root)
        return total

    # --- mount / unmount ----------------------------------------------------------------

    def _option_prefix(self) -> str:
        if self._prefix is None:
            # index=off: the overlay index would tie this upper dir to these exact lower
            # dirs and make later mounts of the same layers fail (Docker turns it off).
            prefix = "index=off," if os.path.exists("/sys/module/overlay/parameters/index") else ""
            if _in_user_namespace():
                prefix += "userxattr,"
            self._prefix = prefix
        return self._prefix

    def is_mounted(self, layer_id: str) -> bool:
        return os.path.ismount(self.merged_path(layer_id))

    def get(self, layer_id: str, volatile: bool = False, idmap: IdMap | None = None,
            copy: bool = False) -> str:
        """Mount the layer (with its lower layers) and return the path of its root.

        ``volatile`` (Linux 5.10+) skips the sync of the whole upper filesystem that an
        overlay unmount otherwise does (about 50 ms here). Only for an upper dir that is
        mounted once, filled and never mounted as upper again: the -init layer.
        ``idmap`` (uid and gid mappings, as a user namespace's): every layer is seen through
        an idmapped mount, so a container whose root is host uid 100000 owns what root owns
        on disk, and what it writes lands on disk with its own ids (see _mount_idmapped).
        Where overlayfs takes no idmapped layers (EINVAL: before 5.19), or with ``copy``,
        Docker's way instead: chowned copies of the layers (_mount_copied).
        """
        d = self.dir(layer_id)
        if not os.path.isdir(d):
            raise StorageError(f"mount layer {d}: layer does not exist")
        diff = os.path.join(d, DIFF_DIR)
        lower = self._read_lower(layer_id)
        if not lower:
            return diff  # a base layer is its own diff dir: nothing to stack
        merged = os.path.join(d, MERGED_DIR)
        if self.is_mounted(layer_id):
            return merged
        work = os.path.join(d, WORK_DIR)
        readonly = os.path.exists(os.path.join(d, COMMITTED_FILE))
        prefix = self._option_prefix()
        abs_lowers = ":".join(os.path.join(self.home, p) for p in lower.split(":"))
        if readonly:
            data = f"{prefix}lowerdir={diff}:{abs_lowers}"
        else:
            if volatile and self._volatile_ok:
                prefix += "volatile,"
            data = f"{prefix}lowerdir={abs_lowers},upperdir={diff},workdir={work}"
        try:
            os.mkdir(merged, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise StorageError(f"mkdir {merged}: {_errtext(e)}") from e
        page = os.sysconf("SC_PAGE_SIZE")
        try:
            with contextlib.ExitStack() as undo:
                undo.callback(quietly, os.rmdir, merged)
                if idmap is not None and not readonly:
                    self._mount_remapped(layer_id, lower, prefix, idmap, copy)
                    undo.pop_all()
                    return merged
                self._shift_upper(layer_id, None)
                if len(data) <= page - 1:
                    linux.mount(
                        "overlay", merged, "overlay", 0, data,
                        why=f"stack layer {layer_id} on {len(lower.split(':'))} lower layer(s)",
                    )
                else:
                    rel = f"{layer_id}/{DIFF_DIR}"
                    if readonly:
                        data = f"{prefix}lowerdir={rel}:{lower}"
                    else:
                        data = (f"{prefix}lowerdir={lower},upperdir={rel},"
                                f"workdir={layer_id}/{WORK_DIR}")
                    if len(data) > page - 1:
                        raise StorageError(
                            f"mount overlay on {merged}: mount data too large ({len(data)} bytes)"
                        )
                    self._mount_relative(data, f"{layer_id}/{MERGED_DIR}")
                undo.pop_all()
        except OSError as e:  # merged/ is removed again by now
            if volatile and self._volatile_ok and e.errno == errno.EINVAL:
                self._volatile_ok = False  # a kernel before 5.10: mount as Docker does
                return self.get(layer_id)
            hint = OVERLAY_HINT if e.errno == errno.ENODEV else None
            if idmap is not None and e.errno in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
                hint = IDMAP_HINT
            raise StorageError(f"mount overlay on {merged}: {_errtext(e)}", hint=hint) from e
        return merged

    def _mount_idmapped(self, layer_id: str, lower: str, readonly: bool, prefix: str,
                        idmap: IdMap) -> None:
        """Overlay over idmapped layers (Linux 5.19+ for overlayfs; 5.12+ and a filesystem
        that supports idmapped mounts for the layers): each lower diff and the layer's own
        dir are cloned as mounts seen through the mapping, attached for the moment of the
        mount under ``<id>/idmap/N`` (overlayfs before 6.15 takes only layers attached in
        its mounter's namespace), and the overlay is mounted with the mapped root as its
        mounter. The overlay holds private copies of its layers: the attachments go again at
        once. Nothing on disk is chowned: layers stay shared with every other container."""
        from minidock.linux import idmap as userns

        uids, gids = idmap
        root_uid, root_gid = shifted.shift_of(idmap)(0, 0)
        if shifted.OVERFLOW_ID in (root_uid, root_gid):
            raise StorageError(f"mount layer {layer_id}: the id mapping has no root")
        d = self.dir(layer_id)
        place = os.path.join(d, IDMAP_DIR)
        self._drop_idmapped(place)  # (a start killed half-way may have left some)
        os.mkdir(place, 0o700)
        with contextlib.ExitStack() as undo:
            undo.callback(self._drop_idmapped, place)
            ns = userns.userns_fd(uids, gids)
            undo.callback(os.close, ns)
            names: list[str] = []

            def attach(path: str) -> str:
                name = str(len(names))
                os.mkdir(os.path.join(place, name), 0o700)
                fd = linux.clone_tree(path, userns_fd=ns,
                                      why="the layer as the container's user namespace sees it")
                try:
                    linux.move_mount(fd, os.path.join(place, name),
                                     why="attached while the overlay is mounted on it")
                finally:
                    os.close(fd)
                names.append(name)
                return name

            lowers = [attach(os.path.realpath(os.path.join(self.home, p)))
                      for p in lower.split(":")]
            if readonly:
                data = f"{prefix}lowerdir={attach(os.path.join(d, DIFF_DIR))}:{':'.join(lowers)}"
            else:
                own = attach(d)
                data = (f"{prefix}lowerdir={':'.join(lowers)},upperdir={own}/{DIFF_DIR},"
                        f"workdir={own}/{WORK_DIR}")
            # relative paths from <id>/idmap: short mount data whatever the depth of the image
            cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            undo.callback(os.close, cwd)
            os.chdir(place)
            try:
                linux.mount_as(root_uid, root_gid, "overlay", self.merged_path(layer_id),
                               "overlay", data,
                               why=f"stack layer {layer_id} on idmapped layers, mounted as "
                                   "the container's root")
            finally:
                os.fchdir(cwd)

    def _mount_remapped(self, layer_id: str, lower: str, prefix: str, idmap: IdMap,
                        copy: bool) -> None:
        """A container's rootfs for a user namespace: over idmapped layers where the kernel
        can, else (or with ``copy``) over chowned copies."""
        if not copy:
            self._shift_upper(layer_id, None)
            try:
                self._mount_idmapped(layer_id, lower, False, prefix, idmap)
                return
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
                    raise
                trace.note(f"idmapped layers refused ({errno.errorcode.get(e.errno or 0)}): "
                           "chowned copies instead")
        self._mount_copied(layer_id, lower, prefix, idmap)

    def remapped_home(self, idmap: IdMap) -> str:
        """Docker's remapped root for this mapping: ``<root>/<uid>.<gid>/overlay2``."""
        root_uid, root_gid = shifted.shift_of(idmap)(0, 0)
        return os.path.join(os.path.dirname(self.home), f"{root_uid}.{root_gid}", "overlay2")

    def _mount_copied(self, layer_id: str, lower: str, prefix: str, idmap: IdMap) -> None:
        """Overlay over copies of the lower layers with every owner moved into the mapping
        (made once per layer and mapping, storage/shifted.py), and the container's own upper
        dir shifted in place until it is unmounted."""
        home = self.remapped_home(idmap)
        os.makedirs(os.path.join(home, LINK_DIR), 0o700, exist_ok=True)
        os.chmod(os.path.dirname(home), 0o710)
        shift = shifted.shift_of(idmap)
        for entry in lower.split(":"):
            lid = os.path.basename(entry)
            target = os.readlink(os.path.join(self.home, LINK_DIR, lid))  # ../<id>/diff
            lower_id = os.path.basename(os.path.dirname(target))
            copy_dir = os.path.join(home, self._check_id(lower_id))
            if not os.path.isdir(os.path.join(copy_dir, DIFF_DIR)):
                os.makedirs(copy_dir, 0o710, exist_ok=True)
                trace.note(f"copy layer {lower_id} with its owners moved into the range")
                shifted.copy_shifted(os.path.join(self.dir(lower_id), DIFF_DIR),
                                     os.path.join(copy_dir, DIFF_DIR), shift)
            link = os.path.join(home, LINK_DIR, lid)
            if not os.path.lexists(link):
                os.symlink(f"../{lower_id}/{DIFF_DIR}", link)
        self._shift_upper(layer_id, idmap)
        d = self.dir(layer_id)
        data = (f"{prefix}lowerdir={lower},upperdir={os.path.join(d, DIFF_DIR)},"
                f"workdir={os.path.join(d, WORK_DIR)}")
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(home)
            linux.mount("overlay", self.merged_path(layer_id), "overlay", 0, data,
                        why=f"stack layer {layer_id} on copies of its layers owned by the "
                            "user namespace's ids")
        except OSError:
            self._shift_upper(layer_id, None)
            raise
        finally:
            os.fchdir(cwd)
            os.close(cwd)

    def _shift_upper(self, layer_id: str, idmap: IdMap | None) -> None:
        """Make the layer's upper dir hold the ids of ``idmap`` (host ids, for a container
        running over copies) or, with None, its own. The marker file says which it holds:
        written before a shift in, removed after a shift back."""
        marker = os.path.join(self.dir(layer_id), shifted.SHIFT_FILE)
        current = shifted.read_marker(self.dir(layer_id))
        if current == idmap:
            return
        diff = os.path.join(self.dir(layer_id), DIFF_DIR)
        if current is not None:
            shifted.shift_tree(diff, shifted.shift_of(current, back=True))
            os.unlink(marker)
        if idmap is not None:
            import json

            atomic_write(marker, json.dumps([list(idmap[0]), list(idmap[1])]).encode(),
                         0o600)
            shifted.shift_tree(diff, shifted.shift_of(idmap))

    def _remove_copies(self, layer_id: str) -> None:
        """The layer's chowned copies in every remapped root (<root>/<uid>.<gid>/)."""
        top = os.path.dirname(self.home)
        for name in os.listdir(top):
            if not re.fullmatch(r"[0-9]+\.[0-9]+", name):
                continue
            home = os.path.join(top, name, "overlay2")
            copy_dir = os.path.join(home, layer_id)
            if not os.path.isdir(copy_dir):
                continue
            links = os.path.join(home, LINK_DIR)
            for lid in os.listdir(links) if os.path.isdir(links) else []:
                if os.readlink(os.path.join(links, lid)) == f"../{layer_id}/{DIFF_DIR}":
                    os.unlink(os.path.join(links, lid))
            shutil.rmtree(copy_dir)

    @staticmethod
    def _drop_idmapped(place: str) -> None:
        """Detach and remove what _mount_idmapped attached under ``place``."""
        try:
            names = os.listdir(place)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(place, name)
            # (os.path.ismount cannot tell: a clone of the same filesystem keeps st_dev)
            try:
                linux.umount2(path, linux.MNT_DETACH | linux.UMOUNT_NOFOLLOW,
                              why="the overlay holds its own copy of this layer")
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOENT):
                    raise StorageError(f"unmount {path}: {_errtext(e)}") from e
            quietly(os.rmdir, path)
        quietly(os.rmdir, place)

    def _mount_relative(self, data: str, target: str) -> None:
        """mount(2) with paths relative to ``home``, from a child whose cwd is ``home``.

        A forked child has its own working directory already, so it needs no
        unshare(CLONE_FS) (a thread would). The child reports errno through a pipe.
        """
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never return into the caller's stack, never run atexit hooks
            code = 0
            try:
                os.close(r)
                linux.chdir(self.home, why="mount data too long for a page: use relative paths")
                linux.mount("overlay", target, "overlay", 0, data,
                            why="relative lowerdir/upperdir/workdir (cwd = overlay2 home)")
                os.write(w, b"0")
            except OSError as e:
                os.write(w, str(e.errno or errno.EIO).encode())
            except BaseException:  # forked child: even a KeyboardInterrupt must end in _exit
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        try:
            chunks = []
            while True:
                chunk = os.read(r, 64)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(r)
        _, status = os.waitpid(pid, 0)
        reply = b"".join(chunks).decode() or "-1"
        if os.waitstatus_to_exitcode(status) != 0 or reply == "-1":
            raise OSError(errno.EIO, "mount helper process failed", target)
        err = int(reply)
        if err:
            raise OSError(err, os.strerror(err), os.path.join(self.home, target))

    def _unmount(self, layer_id: str) -> None:
        merged = self.merged_path(layer_id)
        if os.path.ismount(merged):
            try:
                # MNT_DETACH: a process still inside merged/ must not block removal; the
                # kernel frees the mount when its last user goes away.
                linux.umount2(merged, linux.MNT_DETACH, why=f"unmount layer {layer_id}")
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOENT):
                    raise StorageError(f"unmount {merged}: {_errtext(e)}") from e
        # Removing the mount point also drops copies of the mount that propagated into other
        # mount namespaces (kernel >= 3.18); it only exists while mounted.
        try:
            os.rmdir(merged)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise StorageError(f"remove {merged}: {_errtext(e)}") from e

    def put(self, layer_id: str) -> None:
        """Undo :meth:`get`: unmount ``merged/`` (MNT_DETACH) and remove it."""
        if self._read_lower(layer_id) is None:
            return  # base layer: get() mounted nothing
        self._unmount(layer_id)
        self._shift_upper(layer_id, None)  # (a container that ran over chowned copies)
