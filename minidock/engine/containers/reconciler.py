"""Records made true: reconcile a container nobody watches any more, and the reads and ends
that go through it (get, ls, inspect; the monitor's cleanup, rm, prune).

Without a daemon, a record is only as true as the last process that wrote it: a CLI or a
monitor killed while the container ran leaves "running" behind. Every read here reconciles
first: if nobody holds the container's monitor lock, its watcher is gone, so the exit is
recorded (the code from the monitor's exit file if it wrote one, else Docker's 255) and
what the run held on the host (runtime state and cgroup, the mount, the bundle) is
released. A --rm container is then removed.

rm and prune live here rather than in a module of their own because reconcile and rm call
each other: reconcile removes a --rm container it finds ended, and rm reconciles the
container it has just stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

from minidock.engine.containers import signals, store
from minidock.engine.containers.record import (
    EXIT_UNKNOWN,
    Container,
    Status,
    now_rfc3339,
    on_a_bridge,
)
from minidock.errors import Conflict, ContainerNotFound, CorruptRecord, MinidockError
from minidock.linux import flock
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


def get(paths: Paths, ref: str) -> Container:
    cid = store.resolve(paths, ref)
    reconcile(paths, cid)
    return store.load_record(paths, cid)


def list_containers(paths: Paths, all_: bool = False,
                    problems: list[str] | None = None) -> list[Container]:
    """The containers (running ones, or ``all_``), newest first, each reconciled. A record
    that cannot be read is left out, and said in ``problems`` when the caller asks."""
    out = []
    for cid in store.all_ids(paths):
        try:
            reconcile(paths, cid)
            c = store.load_record(paths, cid)
        except ContainerNotFound:
            continue  # removed meanwhile
        except CorruptRecord as e:
            if problems is not None:
                problems.append(f"container {cid[:12]} left out: {e.message}")
            continue
        if all_ or c.state.running:
            out.append(c)
    out.sort(key=lambda c: c.created, reverse=True)
    return out


def inspect(paths: Paths, ref: str) -> dict[str, Any]:
    c = get(paths, ref)
    return c.to_inspect(paths, store.image_store(paths).rw_layer_metadata(c.id))


def reconcile(paths: Paths, cid: str) -> None:
    """Make the record tell the truth when whoever watched the container died.

    A monitor that wrote its exit file before it died (or whose cleanup died) leaves the
    real exit code; without one, the end was seen by nobody: Docker's 255.
    """
    try:
        c = store.load_record(paths, cid)
    except ContainerNotFound:
        return
    if not c.state.running:
        # a start killed before the record said "running" (or after it said "exited"):
        # its bundle dir is still there, and maybe a mount, a cgroup, an init
        if os.path.isdir(store.bundle_dir(paths, cid)) and not flock.is_held(
                store.lock_path(paths, f"{cid}.monitor")):
            with store.container_lock(paths, cid):
                if not flock.is_held(store.lock_path(paths, f"{cid}.monitor")):
                    release(paths, cid)
        return
    if flock.is_held(store.lock_path(paths, f"{cid}.monitor")):
        align_paused(paths, c)
        return  # someone is watching it: the rest of the record is theirs to update
    with store.container_lock(paths, cid):
        c = store.load_record(paths, cid)
        if not c.state.running or flock.is_held(store.lock_path(paths, f"{cid}.monitor")):
            return
        seen = store.read_exit_file(paths, cid)
        oom = release(paths, cid)
        if seen is not None:
            record_exit(paths, c, seen[0], seen[1], oom=oom)
        else:
            record_exit(paths, c, EXIT_UNKNOWN, now_rfc3339(),
                        "the process that monitored the container died", oom=oom)
    if auto_remove(paths, c):
        remove(paths, cid, force=True, volumes=True)  # --rm: anonymous volumes go too


def align_paused(paths: Paths, c: Container) -> None:
    """A pause or unpause killed between the runtime and the record: the runtime's word
    (which says "paused" from before the freeze until after the thaw) wins."""
    rt = store.runtime_of(paths, c)

    def runtime_paused() -> bool | None:
        try:
            st = rt.state(c.id)
        except MinidockError:
            return None
        if st is None or st.status not in ("running", "paused"):
            return None
        return st.status == "paused"

    paused = runtime_paused()
    if paused is None or paused == (c.state.status == Status.PAUSED):
        return
    with store.container_lock(paths, c.id):  # (a pause in progress holds it: wait, look again)
        c = store.load_record(paths, c.id)
        paused = runtime_paused()
        if paused is None or not c.state.running or paused == (c.state.status == Status.PAUSED):
            return
        c.state.transition(Status.PAUSED if paused else Status.RUNNING)
        store.save(paths, c)


def cleanup(paths: Paths, cid: str) -> None:
    """`container cleanup`: what the monitor execs once the container's init is reaped.

    This process inherited the monitor lock (its fd survived both execs), so nobody else
    reconciles the container meanwhile; the lock goes when this process exits.
    """
    with store.container_lock(paths, cid):
        try:
            c = store.load_record(paths, cid)
        except ContainerNotFound:
            return
        seen = store.read_exit_file(paths, cid)
        oom = release(paths, cid)
        if c.state.running:
            if seen is None:
                record_exit(paths, c, EXIT_UNKNOWN, now_rfc3339(),
                            "the monitor wrote no exit status", oom=oom)
            else:
                record_exit(paths, c, seen[0], seen[1], oom=oom)
    if auto_remove(paths, c):
        remove(paths, cid, force=True, volumes=True)  # --rm: anonymous volumes go too


def auto_remove(paths: Paths, c: Container) -> bool:
    """--rm applies when the container ends, not when `restart` stops it (moby turns
    AutoRemove off for the stop of a restart)."""
    return bool(c.host_config.get("AutoRemove")) and not os.path.exists(
        store.restart_marker(paths, c.id))


def release(paths: Paths, cid: str) -> bool:
    """What a run holds on the host: runtime state + cgroup, the mount, the bundle. Whether
    the OOM killer killed any of its processes (read from the cgroup before it goes)."""
    oom = oom_killed(cid)
    runtime_delete(paths, cid)
    if _on_bridge(paths, cid):
        from minidock import net  # loaded only for a container on the bridge

        net.release(cid)
    store.image_store(paths).unmount_rw_layer(cid)
    if os.path.isdir(os.path.join(paths.containers, cid, "mounts")):  # --ipc shareable
        store.unmount_shm(paths, cid)
    if os.path.exists(os.path.join(paths.root, "volumes", "metadata.json")):
        from minidock.engine.containers.mounts import release_volumes

        release_volumes(paths, cid)
    shutil.rmtree(store.bundle_dir(paths, cid), ignore_errors=True)
    for path in (store.attach_socket(paths, cid), store.exit_file(paths, cid)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return oom


def oom_killed(cid: str) -> bool:
    """Docker's State.OOMKilled: the kernel's OOM killer killed a process of the container
    (memory.events on v2, memory.oom_control on v1; both count since the cgroup was made)."""
    from minidock import cgroups
    from minidock.errors import MinidockError

    try:
        return cgroups.new_manager(store.cgroups_path(cid)).oom_kills() > 0
    except (MinidockError, OSError):
        return False


def _on_bridge(paths: Paths, cid: str) -> bool:
    """Whether the container's runs take a bridge lease (its hostconfig.json says so)."""
    import json

    try:
        with open(os.path.join(paths.containers, cid, "hostconfig.json"), "rb") as f:
            return on_a_bridge(str(json.loads(f.read()).get("NetworkMode") or "default"))
    except (OSError, ValueError, AttributeError):
        return False


def runtime_delete(paths: Paths, cid: str) -> None:
    """The runtime forgets the container: its state and cgroup (the init killed if alive)."""
    try:
        rt = store.runtime_of(paths, cid)
    except ContainerNotFound:  # no record: it ran under minidock's (see check)
        from minidock.engine.runtime import open_runtime

        rt = open_runtime(paths, None)
    try:
        rt.delete(cid, force=True)
    except ContainerNotFound:
        pass


def record_exit(paths: Paths, c: Container, code: int, finished_at: str, error: str = "",
                oom: bool = False) -> None:
    c.state.transition(Status.EXITED)
    c.state.oom_killed = oom
    c.state.exit_code = code
    c.state.error = error
    c.state.finished_at = finished_at
    store.save(paths, c)


def remove(paths: Paths, ref: str, force: bool = False, volumes: bool = False) -> str:
    """``rm``: the container and what it holds; with ``volumes`` (``rm -v``) its anonymous
    volumes too, those no other container uses."""
    try:
        c = get(paths, ref)
    except CorruptRecord:
        if not force:
            raise
        return _remove_unreadable(paths, store.resolve(paths, ref))
    except ContainerNotFound:
        if force and store.ID_RE.fullmatch(ref):
            _drop_locks(paths, ref)  # an rm killed after the record went left them
        raise
    if c.state.running:
        if not force:
            raise Conflict(
                f"cannot remove container \"/{c.name}\": container is running: stop the "
                "container before removing or force remove")
        try:
            signals.signal_init(paths, c, 9)
        except MinidockError:
            pass
        # the monitor (a foreground run, or a detached container's monitor and then its
        # cleanup) records the exit; wait for it to let go
        signals.wait_unwatched(paths, c.id)
        reconcile(paths, c.id)
    layers = store.image_store(paths)
    with (flock.locked(store.lock_path(paths, "containers.lock")),
          store.container_lock(paths, c.id)):
        if not os.path.isdir(c.dir):
            return c.id
        runtime_delete(paths, c.id)
        shutil.rmtree(store.bundle_dir(paths, c.id), ignore_errors=True)
        layers.unmount_rw_layer(c.id)
        layers.remove_rw_layer(c.id)
        # (before the record: an rm killed after this still finds the container and ends it)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(store.lock_path(paths, c.id + ".monitor"))
        store.remove_dir(c.dir)
    # (container_lock took its own file away with it)
    if volumes:
        _remove_anonymous_volumes(paths, c)
    return c.id


def _drop_locks(paths: Paths, cid: str) -> None:
    """The lock files of a container that no longer exists, unless someone holds one."""
    for suffix in (".lock", ".monitor"):
        path = store.lock_path(paths, cid + suffix)
        if os.path.exists(path) and not flock.is_held(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _remove_anonymous_volumes(paths: Paths, c: Container) -> None:
    from minidock.volume import Volumes

    store_ = Volumes(paths)
    for point in c.mount_points.values():
        name = point.get("Name") or ""
        if point.get("Type") == "volume" and name and store_.is_anonymous(name) \
                and store_.exists(name) and not store.users_of_volume(paths, name):
            store_.remove(name)


def _remove_unreadable(paths: Paths, cid: str) -> str:
    """``rm -f`` of a container whose record cannot be read: once nothing watches it, what
    it holds (runtime state under minidock's runtime, mount, rw layer, directory) goes."""
    if flock.is_held(store.lock_path(paths, f"{cid}.monitor")):
        raise Conflict(f"container {cid[:12]} has an unreadable record and is still watched: "
                       "stop it first")
    from minidock.engine.runtime import open_runtime

    layers = store.image_store(paths)
    with (flock.locked(store.lock_path(paths, "containers.lock")),
          store.container_lock(paths, cid)):
        try:
            open_runtime(paths, None).delete(cid, force=True)
        except ContainerNotFound:
            pass
        shutil.rmtree(store.bundle_dir(paths, cid), ignore_errors=True)
        layers.unmount_rw_layer(cid)
        layers.remove_rw_layer(cid)
        shutil.rmtree(os.path.join(paths.containers, cid), ignore_errors=True)
    return cid


def prune(paths: Paths, filters: dict[str, list[str]] | None = None
          ) -> tuple[list[str], int]:
    """``container prune``: remove stopped containers (``until=``: created before then;
    ``label=KEY[=VALUE]``: with every such label); (ids removed, bytes of their rw layers)."""
    from minidock.engine import images

    filters = filters or {}
    until = (images.until_timestamp(filters["until"][-1], time.time())
             if "until" in filters else None)
    removed, reclaimed = [], 0
    layers = store.image_store(paths)
    for c in list_containers(paths, all_=True):
        if until is not None and (images.parse_time(c.created) or 0.0) >= until:
            continue
        labels = c.config.get("Labels") or {}
        if not all(images.label_matches(labels, w) for w in filters.get("label", [])):
            continue
        if c.state.status in (Status.EXITED, Status.CREATED, Status.DEAD):
            try:
                reclaimed += layers.rw_layer_size(c.id)
            except (AttributeError, OSError):
                pass
            try:
                remove(paths, c.id)
            except ContainerNotFound:
                continue
            removed.append(c.id)
    return removed, reclaimed
