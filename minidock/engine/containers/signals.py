"""A container's init, seen from outside: is it alive, signal it, wait for its end.

Two different ends are waited for: the init's (its runtime state says it is gone, which
stop needs before it sends SIGKILL) and the record's (nobody holds the monitor lock any
more: whoever watched the init has recorded its exit, which rm and wait need).
"""

from __future__ import annotations

import re
import time

from minidock.engine.containers import store
from minidock.engine.containers.record import Container, Status
from minidock.errors import Conflict, InvalidArgument, MinidockError
from minidock.linux import flock
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from minidock.engine.runtime import OCIRuntime


def parse_signal(value: str | int) -> int:
    """A signal as Docker takes it: 9, KILL, SIGKILL, sigkill, SIGRTMIN+3."""
    import signal as _signal

    text = str(value).strip().upper()
    if text.isdigit():
        num = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        m = re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)
        if m:
            base = _signal.SIGRTMIN if m.group(1) == "IN" else _signal.SIGRTMAX
            num = int(base) + int(m.group(2) or 0)
        else:
            try:
                num = int(_signal.Signals[name])
            except KeyError:
                raise InvalidArgument(f"Invalid signal: {value}") from None
    if not 0 < num <= int(_signal.SIGRTMAX):
        raise InvalidArgument(f"Invalid signal: {value}")
    return num


def init_alive(paths: Paths, cid: str, rt: OCIRuntime | None = None) -> bool:
    """Does the container's runtime (``rt``, else the one its record names) say its init
    is alive (created, running or paused)?"""
    try:
        st = (rt or store.runtime_of(paths, cid)).state(cid)
    except MinidockError:
        return False
    return st is not None and st.alive


def wait_unwatched(paths: Paths, cid: str, timeout: float | None = None) -> bool:
    """Wait until nobody holds the container's monitor lock (its end is recorded)."""
    return flock.wait_free(store.lock_path(paths, f"{cid}.monitor"), timeout)


def wait_init_gone(paths: Paths, cid: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    rt = store.runtime_of(paths, cid)  # once: each poll is one state query, not a record read
    while init_alive(paths, cid, rt):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def signal_init(paths: Paths, c: Container, sig: int) -> None:
    """Signal the init; a paused container is thawed after a SIGKILL or its stop signal so
    the signal is taken (moby's rule), and its record says "running" again."""
    rt = store.runtime_of(paths, c)
    rt.kill(c.id, sig)
    stop_sig = parse_signal(c.config.get("StopSignal") or "SIGTERM")
    if sig not in (9, stop_sig):
        return
    with store.container_lock(paths, c.id):
        c2 = store.load_record(paths, c.id)
        if c2.state.status != Status.PAUSED:
            return
        try:
            rt.resume(c.id)
        except Conflict:
            pass  # not paused at the runtime level (a pause that died half-way)
        c2.state.transition(Status.RUNNING)
        store.save(paths, c2)
