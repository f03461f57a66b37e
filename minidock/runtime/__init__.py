"""minidock's OCI runtime: runc's verbs on an OCI bundle.

    create(id, bundle)   namespaces, cgroup, rootfs; the init waits on exec.fifo
    start(id)            release the init: it execs the container's command
    state(id)            the OCI state document
    kill(id, signal)     signal the init
    pause(id)            freeze every process of the container (the cgroup freezer)
    resume(id)           thaw them
    ps(id), stats(id)    the container's host pids; a reading of its cgroup
    delete(id)           remove what create made (the cgroup and the state directory)

The engine uses these functions in-process; ``minidock runtime ...`` exposes the same verbs
with runc's command-line contract, so podman (``--runtime``) or a test can drive them.
This package never imports the engine, the image or storage code: its only input is a
bundle directory with config.json (the OCI seam).
"""

from __future__ import annotations

import os
import select
import signal as _signal
import time
from contextlib import ExitStack

from minidock import cgroups
from minidock.errors import Conflict, ContainerNotFound, ContainerRuntimeError
from minidock.runtime.process import CreateOptions, create, wait_gone
from minidock.runtime.state import ALIVE, FIFO, PAUSED, RuntimeState, check_id

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ALIVE", "CreateOptions", "create", "delete", "kill", "list_ids", "load", "pause",
           "ps", "resume", "start", "state", "stats"]


def _dir(state_root: str, container_id: str) -> str:
    return os.path.join(state_root, check_id(container_id))


def load(state_root: str, container_id: str) -> RuntimeState:
    try:
        return RuntimeState.load(_dir(state_root, container_id))
    except FileNotFoundError:
        raise ContainerNotFound(f"container {container_id} does not exist") from None


def state(state_root: str, container_id: str) -> dict[str, Any]:
    return load(state_root, container_id).oci(_dir(state_root, container_id))


def list_ids(state_root: str) -> list[str]:
    try:
        return sorted(os.listdir(state_root))
    except FileNotFoundError:
        return []


def start(state_root: str, container_id: str, timeout: float = 10.0) -> None:
    """Open exec.fifo for reading: the init, blocked opening it for writing, writes one
    byte and execs. The fifo's disappearance is what makes the state "running"."""
    st = load(state_root, container_id)
    d = _dir(state_root, container_id)
    status = st.status(d)
    if status != "created":
        raise Conflict(f"cannot start a container in state {status!r}: {container_id}")
    fifo = os.path.join(d, FIFO)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        while True:
            select.select([fd], [], [], 0.01)
            try:
                if os.read(fd, 1) == b"0":
                    break
            except BlockingIOError:
                pass
            if st.status(d) == "stopped":
                raise ContainerRuntimeError(f"start {container_id}: the container's init died")
            if time.monotonic() > deadline:
                raise ContainerRuntimeError(f"start {container_id}: init did not answer")
    finally:
        os.close(fd)
    os.unlink(fifo)


def kill(state_root: str, container_id: str, sig: int = _signal.SIGTERM) -> None:
    """Signal the init. A paused init takes the signal when it is thawed (runc's rule:
    the caller decides whether to resume)."""
    st = load(state_root, container_id)
    if st.status(_dir(state_root, container_id)) not in ALIVE:
        raise Conflict(f"container {container_id} is not running")
    os.kill(st.pid, sig)


def pause(state_root: str, container_id: str) -> None:
    """Freeze the container's cgroup (v1 freezer.state, v2 cgroup.freeze), then mark the
    state directory so ``state`` says "paused"."""
    _set_frozen(state_root, container_id, True)


def resume(state_root: str, container_id: str) -> None:
    _set_frozen(state_root, container_id, False)


def _set_frozen(state_root: str, container_id: str, frozen: bool) -> None:
    st = load(state_root, container_id)
    d = _dir(state_root, container_id)
    status = st.status(d)
    if status != ("running" if frozen else "paused"):
        verb = "pause" if frozen else "resume"
        raise Conflict(f"cannot {verb} container {container_id} that is {status}")
    manager = cgroups.new_manager(st.cgroups_path)
    marker = os.path.join(d, PAUSED)
    # The marker goes first and comes off last: a pause or resume killed half-way leaves
    # "paused" said of a container that may run, which `resume` mends, never a frozen
    # container said to be running.
    if frozen:
        with ExitStack() as undo:
            with open(marker, "x"):
                pass
            undo.callback(os.unlink, marker)
            manager.freeze()
            undo.pop_all()
    else:
        manager.thaw()
        os.unlink(marker)


def _alive_manager(state_root: str, container_id: str) -> cgroups.Manager:
    st = load(state_root, container_id)
    if st.status(_dir(state_root, container_id)) not in ALIVE:
        raise Conflict(f"container {container_id} is not running")
    return cgroups.new_manager(st.cgroups_path)


def ps(state_root: str, container_id: str) -> list[int]:
    """Host pids of every process in the container's cgroup (runc ps)."""
    return sorted(_alive_manager(state_root, container_id).pids())


def stats(state_root: str, container_id: str) -> cgroups.Stats:
    """CPU, memory, I/O and pids of the container's cgroup (runc events --stats)."""
    return _alive_manager(state_root, container_id).stats()


def _remove_half_created(d: str) -> None:
    """A create killed before its first state save leaves its directory with the exec fifo
    and a half-written state file, and nothing else (no cgroup, no process yet): it goes."""
    try:
        names = set(os.listdir(d))
    except FileNotFoundError:
        return
    if names <= {FIFO, ".state.json.tmp"}:
        for name in names:
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


def delete(state_root: str, container_id: str, force: bool = False) -> None:
    """Remove the container's cgroup and state; ``force`` kills a live one first."""
    d = _dir(state_root, container_id)
    try:
        st = load(state_root, container_id)
    except ContainerNotFound:
        _remove_half_created(d)
        raise
    status = st.status(d)
    manager = cgroups.new_manager(st.cgroups_path)
    if status in ALIVE:
        if not force:
            raise Conflict(f"cannot delete container {container_id} that is {status}")
        try:
            os.kill(st.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        if status == "paused":
            manager.thaw()  # a frozen task (v1) dies only once it runs again
        wait_gone(st.pid, st.start_time)
    manager.destroy()
    for name in (FIFO, PAUSED, "state.json", ".state.json.tmp"):
        try:
            os.unlink(os.path.join(d, name))
        except FileNotFoundError:
            pass
    os.rmdir(d)
