"""Container records on disk: load, save, list and resolve them; names; per-container files.

``<root>/containers/<id>/`` holds config.v2.json (with Docker's ``State``),
hostconfig.json, hostname, hosts and resolv.conf. The container's filesystem is an
overlay2 rw layer on top of an -init layer on top of the image (layerdb/mounts/<id>).
Records are written by rename, so a reader sees the old one or the new one.

Locks (all flock, so a SIGKILLed CLI never leaves one behind):
    <run>/locks/containers.lock     names and ids: held while creating or removing
    <run>/locks/<id>.lock           one container's record: held for each state change
    <run>/locks/<id>.monitor        held by the process that waits for the container's
                                    init (the foreground ``run``, or a detached
                                    container's monitor). If a record says "running"
                                    and nobody holds this, whoever watched it died: the
                                    next command reconciles it (containers.reconciler).

Nothing here reconciles: a record read here may still say "running" for a container
whose watcher died; :func:`minidock.engine.containers.get` is the read that makes it true.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from minidock.engine.containers.record import Container
from minidock.errors import Conflict, ContainerNotFound, CorruptRecord, InvalidArgument
from minidock.jsonobj import parse_object
from minidock.linux import flock
from minidock.paths import Paths
from minidock.storage.atomic import atomic_write

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from minidock.engine.runtime import OCIRuntime

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ID_RE = re.compile(r"^[0-9a-f]{64}$")


def lock_path(paths: Paths, name: str) -> str:
    return os.path.join(paths.locks, name)


@contextmanager
def container_lock(paths: Paths, cid: str) -> Iterator[None]:
    """The container's record lock. Taking it creates its file, so when the container is
    gone by the time it is let go (removed meanwhile, or by the holder), the file goes too:
    no lock file outlives its container, whoever raced with rm."""
    path = lock_path(paths, f"{cid}.lock")
    with flock.locked(path):
        try:
            yield
        finally:
            if not os.path.isdir(os.path.join(paths.containers, cid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


@contextmanager
def mounted_rootfs(paths: Paths, cid: str) -> Iterator[str]:
    """The container's root filesystem (the merged overlay), mounted for as long as the block
    runs, under the container's lock so a ``start`` cannot mount or unmount it meanwhile. A
    running container has it mounted already: that mount is used and left alone."""
    store = image_store(paths)
    with container_lock(paths, cid):
        mounted_before = store.driver.is_mounted(store.get_rw_layer(cid).mount_id)
        root = store.mount_rw_layer(cid)
        try:
            yield root
        finally:
            if not mounted_before:
                store.unmount_rw_layer(cid)


def tar_ids(paths: Paths, cid: str) -> Callable[[int, int], tuple[int, int]] | None:
    """For a tar of a container's files (export, cp ... -): a running one over chowned
    copies of its layers (--userns remap) shows the range's ids, said back as its own."""
    from minidock.storage.shifted import back_shift

    layers = image_store(paths)
    return back_shift(layers.driver.diff_path(layers.get_rw_layer(cid).mount_id))


def shm_dir(c: Container) -> str:
    """Docker's containers/<id>/mounts/shm: the /dev/shm tmpfs of an --ipc shareable one."""
    return os.path.join(c.dir, "mounts", "shm")


def unmount_shm(paths: Paths, cid: str) -> None:
    """Unmount (if mounted) and remove a container's mounts/shm."""
    from minidock import linux

    shm = os.path.join(paths.containers, cid, "mounts", "shm")
    try:
        linux.umount2(shm, linux.MNT_DETACH, why="the shareable /dev/shm of " + cid[:12])
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    for d in (shm, os.path.dirname(shm)):
        try:
            os.rmdir(d)
        except OSError:
            pass


def save(paths: Paths, c: Container, host_config: bool = False) -> None:
    """Write config.v2.json (and hostconfig.json, which changes only at create and
    `update`)."""
    if host_config:
        atomic_write(os.path.join(c.dir, "hostconfig.json"),
                     json.dumps(c.host_config).encode(), 0o600)
    atomic_write(os.path.join(c.dir, "config.v2.json"),
                 json.dumps(c.to_config_v2(paths)).encode(), 0o600)


def remove_dir(d: str) -> None:
    """Delete a container's directory with its record files last: an ``rm`` killed half-way
    leaves a container that still has its record, which the next ``rm`` finishes (never a
    directory without one that no command can name)."""
    record = ("config.v2.json", "hostconfig.json")
    for name in sorted(os.listdir(d)):
        if name in record:
            continue
        path = os.path.join(d, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    for name in reversed(record):  # config.v2.json, what says it exists, goes last
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(d, name))
    os.rmdir(d)


def load_record(paths: Paths, cid: str) -> Container:
    """The container's record; ContainerNotFound, or CorruptRecord naming the file."""
    d = os.path.join(paths.containers, cid)
    docs = []
    for name in ("config.v2.json", "hostconfig.json"):
        path = os.path.join(d, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ContainerNotFound(f"No such container: {cid}") from None
        docs.append(parse_object(data, f"container record {path}", CorruptRecord))
    try:
        return Container.from_config_v2(docs[0], docs[1], d)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptRecord(f"container record {os.path.join(d, 'config.v2.json')}: "
                            f"{type(e).__name__}: {e}") from None


def readable_records(paths: Paths) -> Iterator[Container]:
    """Every container record that can be read (a corrupt one is skipped: the commands
    that list containers report it, ``system check`` names it)."""
    for cid in all_ids(paths):
        try:
            yield load_record(paths, cid)
        except (ContainerNotFound, CorruptRecord):
            continue


def all_ids(paths: Paths) -> list[str]:
    try:
        return [n for n in os.listdir(paths.containers) if ID_RE.match(n)]
    except FileNotFoundError:
        return []


def resolve(paths: Paths, ref: str) -> str:
    """A container id from a full id, a unique id prefix or a name (Docker's order)."""
    ids = all_ids(paths)
    if ref in ids:
        return ref
    name = ref.lstrip("/")
    for c in readable_records(paths):
        if c.name == name:
            return c.id
    if re.fullmatch(r"[0-9a-f]+", ref):
        matches = [cid for cid in ids if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
    raise ContainerNotFound(f"No such container: {ref}")


def users_of_image(paths: Paths, image_id: str) -> list[str]:
    return [c.id for c in readable_records(paths) if c.image_id == image_id]


def users_of_volume(paths: Paths, name: str) -> list[str]:
    """The containers (any state, as Docker counts them) with ``name`` among their mounts."""
    return [c.id for c in readable_records(paths)
            if any(p.get("Type") == "volume" and p.get("Name") == name
                   for p in c.mount_points.values())]


_ADJECTIVES = ("brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen",
               "lucid", "modest", "nifty", "quirky", "serene", "tender", "vibrant", "zen")
_SURNAMES = ("babbage", "curie", "dijkstra", "euler", "hopper", "kare", "lamarr", "lovelace",
             "noether", "pike", "ritchie", "shannon", "thompson", "torvalds", "turing", "wu")


def names_in_use(paths: Paths) -> set[str]:
    return {c.name for c in readable_records(paths)}


def pick_name(paths: Paths, wanted: str | None) -> str:
    used = names_in_use(paths)
    if wanted is not None:
        if not NAME_RE.match(wanted):
            raise InvalidArgument(
                f"Invalid container name ({wanted}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = wanted.lstrip("/")
        if name in used:
            owner = next(c.id for c in readable_records(paths) if c.name == name)
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                           f'container "{owner}". You have to remove (or rename) that '
                           "container to be able to reuse that name.")
        return name
    while True:
        a, b, n = os.urandom(3)
        name = f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_SURNAMES[b % len(_SURNAMES)]}"
        if name not in used:
            return name
        name += str(n % 100)
        if name not in used:
            return name


def runtime_of(paths: Paths, c: Container | str) -> OCIRuntime:
    """The OCI runtime a container runs under (its HostConfig.Runtime; minidock's if none)."""
    from minidock.engine.runtime import open_runtime

    if isinstance(c, str):
        c = load_record(paths, c)
    return open_runtime(paths, c.host_config.get("Runtime"))


def image_store(paths: Paths) -> Any:
    from minidock.image.store import ImageStore

    return ImageStore(paths)


def cgroups_path(cid: str) -> str:
    """The cgroup the spec names for a container (under each v1 hierarchy, or the v2 tree)."""
    return f"/minidock/{cid}"


def bundle_dir(paths: Paths, cid: str) -> str:
    """The OCI bundle of a run: its config.json (the rootfs is the mounted rw layer)."""
    return os.path.join(paths.bundles, cid)


def exit_file(paths: Paths, cid: str) -> str:
    """Written by the monitor when the init is reaped, read by cleanup (or reconcile)."""
    return os.path.join(paths.containers, cid, "monitor-exit.json")


def attach_socket(paths: Paths, cid: str) -> str:
    """The unix socket the monitor of a detached -t container serves `attach` on."""
    return os.path.join(paths.run_root, "attach", f"{cid}.sock")


def read_exit_file(paths: Paths, cid: str) -> tuple[int, str] | None:
    try:
        with open(exit_file(paths, cid), "rb") as f:
            doc = json.load(f)
        return int(doc["ExitCode"]), str(doc["FinishedAt"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def restart_marker(paths: Paths, cid: str) -> str:
    """Present while `restart` stops a container it is about to start again."""
    return os.path.join(paths.containers, cid, "restarting")
