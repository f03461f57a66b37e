"""Containers: records on disk in Docker's layout, their lifecycle, and the commands on them.

The core, each module importing only those above it::

    record.py      Container, State/Status (the state machine), config.v2.json and inspect
    store.py       records on disk: load, save, ids, resolve, names; locks; per-container files
    signals.py     the init seen from outside: alive?, signal it, wait for its end
    reconciler.py  records made true (reconcile, the monitor's cleanup, release) and what
                   reads or ends them through it: get, list_containers, inspect, rm, prune
    creation.py    create (name, record, rw layer, /etc files) and rename
    lifecycle.py   launch/start/run, stop, kill, pause/unpause, wait

The commands built on it, which use it through this package's names as any caller does::

    monitor.py     run -d, start, restart: the C monitor that watches a detached container
    attach.py      attach: our terminal to a detached container's monitor or log
    exec.py        exec: another process in a running container
    observe.py     top and stats, from the container's cgroup
    check.py       system check [--repair]: what crashes and reboots left behind
    changes.py     diff: what the container changed in its filesystem
    cp.py          cp: files between the container's filesystem and the host

What each container is given (its OCI config.json, hostname, hosts, resolv.conf) is
minidock.engine.spec's; relaying its stdio and its json-file log, minidock.engine.stdio's.

Why the split is not one module per command, and not named after them:

- get, ls and inspect reconcile first, reconcile removes an ended --rm container, and rm
  reconciles the container it stopped: they call each other, so they share reconciler.py.
- rename reconciles before it takes containers.lock, so it sits above reconciler.py, with
  create, whose name rules it shares (store.pick_name); lifecycle.py uses both.
- No module is named like a name exported here (create, reconcile, remove, inspect, ...):
  importing a submodule sets the package attribute of its name, which would then shadow
  ``containers.create`` the function.

``from minidock.engine import containers as ct`` then ``ct.create(...)``, ``ct.get(...)``:
each name loads its module on first use, so ``from minidock.engine.containers.record
import Status`` (image filters, tests) does not load the lifecycle and the runtime.
"""

from __future__ import annotations

from minidock.engine.lazy import lazy_attributes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from minidock.engine.containers.creation import CreateOptions, create, rename
    from minidock.engine.containers.lifecycle import (
        Launched,
        kill,
        launch,
        lock_for_start,
        pause,
        run,
        start,
        stop,
        unpause,
        update_limits,
        wait,
    )
    from minidock.engine.containers.reconciler import (
        cleanup,
        get,
        inspect,
        list_containers,
        prune,
        reconcile,
        remove,
    )
    from minidock.engine.containers.record import (
        DRIVER,
        EXIT_UNKNOWN,
        Container,
        State,
        Status,
        log_path,
        network_name,
        network_settings,
        now_rfc3339,
    )
    from minidock.engine.containers.signals import parse_signal, wait_unwatched
    from minidock.engine.containers.store import (
        ID_RE,
        NAME_RE,
        all_ids,
        attach_socket,
        bundle_dir,
        cgroups_path,
        container_lock,
        exit_file,
        image_store,
        load_record,
        lock_path,
        mounted_rootfs,
        resolve,
        restart_marker,
        runtime_of,
        unmount_shm,
        users_of_image,
        users_of_volume,
    )

_RECORD = "minidock.engine.containers.record"
_STORE = "minidock.engine.containers.store"
_SIGNALS = "minidock.engine.containers.signals"
_RECONCILER = "minidock.engine.containers.reconciler"
_CREATION = "minidock.engine.containers.creation"
_LIFECYCLE = "minidock.engine.containers.lifecycle"

# public name -> the module that defines it
_HOMES = {
    "DRIVER": _RECORD,
    "EXIT_UNKNOWN": _RECORD,
    "Container": _RECORD,
    "State": _RECORD,
    "Status": _RECORD,
    "log_path": _RECORD,
    "network_name": _RECORD,
    "network_settings": _RECORD,
    "now_rfc3339": _RECORD,
    "ID_RE": _STORE,
    "NAME_RE": _STORE,
    "all_ids": _STORE,
    "unmount_shm": _STORE,
    "attach_socket": _STORE,
    "bundle_dir": _STORE,
    "cgroups_path": _STORE,
    "container_lock": _STORE,
    "exit_file": _STORE,
    "image_store": _STORE,
    "load_record": _STORE,
    "lock_path": _STORE,
    "mounted_rootfs": _STORE,
    "resolve": _STORE,
    "restart_marker": _STORE,
    "runtime_of": _STORE,
    "users_of_image": _STORE,
    "users_of_volume": _STORE,
    "parse_signal": _SIGNALS,
    "wait_unwatched": _SIGNALS,
    "cleanup": _RECONCILER,
    "get": _RECONCILER,
    "inspect": _RECONCILER,
    "list_containers": _RECONCILER,
    "prune": _RECONCILER,
    "reconcile": _RECONCILER,
    "remove": _RECONCILER,
    "CreateOptions": _CREATION,
    "create": _CREATION,
    "rename": _CREATION,
    "Launched": _LIFECYCLE,
    "kill": _LIFECYCLE,
    "launch": _LIFECYCLE,
    "lock_for_start": _LIFECYCLE,
    "pause": _LIFECYCLE,
    "run": _LIFECYCLE,
    "start": _LIFECYCLE,
    "stop": _LIFECYCLE,
    "unpause": _LIFECYCLE,
    "update_limits": _LIFECYCLE,
    "wait": _LIFECYCLE,
}

__all__ = [
    "DRIVER",
    "EXIT_UNKNOWN",
    "ID_RE",
    "NAME_RE",
    "Container",
    "CreateOptions",
    "Launched",
    "State",
    "Status",
    "all_ids",
    "attach_socket",
    "bundle_dir",
    "cgroups_path",
    "cleanup",
    "container_lock",
    "create",
    "exit_file",
    "get",
    "image_store",
    "inspect",
    "kill",
    "launch",
    "list_containers",
    "load_record",
    "lock_for_start",
    "lock_path",
    "log_path",
    "mounted_rootfs",
    "network_name",
    "network_settings",
    "now_rfc3339",
    "parse_signal",
    "pause",
    "prune",
    "reconcile",
    "remove",
    "rename",
    "resolve",
    "restart_marker",
    "run",
    "runtime_of",
    "start",
    "stop",
    "unmount_shm",
    "unpause",
    "update_limits",
    "users_of_image",
    "users_of_volume",
    "wait",
    "wait_unwatched",
]


__getattr__ = lazy_attributes(__name__, _HOMES)
