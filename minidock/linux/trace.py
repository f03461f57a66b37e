"""``--trace``: print every kernel step as it happens.

A step is one syscall (or one write to a kernel interface such as a cgroup file) with its
arguments, its result and how long it took, plus a short reason so a learner can see *why*
a container needs it. Tracing is off unless :func:`enable` was called with a file descriptor;
the container's init process keeps its own copy of that descriptor (close-on-exec, so the
container's command never sees it).

Output, one line per step::

    [init 1] mount('proc', "/r/proc", 'proc', MS_NOSUID|MS_NODEV|MS_NOEXEC) = 0  0.16ms  a procfs...
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

_fd: int = -1
_role: str = "cli"
_aliases: list[tuple[str, str]] = []


def enable(fd: int, role: str = "cli") -> None:
    global _fd, _role
    _fd = fd
    _role = role


def alias(long: str, short: str) -> None:
    """Print ``short`` wherever ``long`` appears (a rootfs path, a 64-hex container id), so
    lines stay readable; the longest alias is applied first."""
    _aliases.append((long, short))
    _aliases.sort(key=lambda a: -len(a[0]))


def set_role(role: str) -> None:
    global _role
    _role = role


def enabled() -> bool:
    return _fd >= 0


def trace_fd() -> int:
    return _fd


def _emit(line: str) -> None:
    for long, short in _aliases:
        line = line.replace(long, short)
    try:
        os.write(_fd, line.encode("utf-8", "replace"))
    except OSError:
        pass


def note(text: str) -> None:
    """A line of context between steps (a phase starts, a decision was taken)."""
    if _fd >= 0:
        _emit(f"[{_role} {os.getpid()}] # {text}\n")


def step(call: str, fn: Callable[[], T], why: str = "") -> T:
    """Run ``fn`` (one kernel step described by ``call``) and trace it when tracing is on."""
    if _fd < 0:
        return fn()
    start = time.perf_counter()
    try:
        result = fn()
    except OSError as e:
        ms = (time.perf_counter() - start) * 1000
        name = os.strerror(e.errno) if e.errno else str(e)
        _emit(f"[{_role} {os.getpid()}] {call} = -1 {_errname(e.errno)} ({name}) {ms:.2f}ms"
              f"{'  ' + why if why else ''}\n")
        raise
    ms = (time.perf_counter() - start) * 1000
    shown = "0" if result is None else str(result)
    _emit(f"[{_role} {os.getpid()}] {call} = {shown}  {ms:.2f}ms{'  ' + why if why else ''}\n")
    return result


def _errname(errno_: int | None) -> str:
    import errno

    return errno.errorcode.get(errno_ or 0, "E?")
