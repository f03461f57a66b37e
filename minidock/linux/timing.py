"""``run --timings``: the wall-clock time of each phase of a container's start, so a learner
sees what each flag costs. Off unless enabled; then every ``phase()`` adds one entry, in the
order the phases begin, named after the phases it runs inside ("runtime create (minidock) >
cgroup"). A forked runtime child keeps the flag and sends its entries back over the status
pipe (runtime/process.py), which adds them inside the phase running there.

    with timing.phase("rootfs mount"):
        ...
    timing.entries()     -> [("image lookup", 0.41), ("rootfs mount", 3.2), ...]  (ms)
"""

from __future__ import annotations

import time
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

SEP = " > "
_enabled = False
_entries: list[list[str | float | None]] = []  # [name with its parents, ms; None: running]
_open: list[str] = []  # the phases running now, outermost first


def enable() -> None:
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


@contextmanager
def phase(name: str) -> Iterator[None]:
    if not _enabled:
        yield
        return
    full = SEP.join([*_open, name])
    entry: list[str | float | None] = [full, None]
    _entries.append(entry)
    _open.append(name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        entry[1] = (time.perf_counter() - t0) * 1000
        _open.pop()


def add(name: str, ms: float) -> None:
    """An entry measured elsewhere (a forked child), inside the phases running here."""
    if _enabled:
        _entries.append([SEP.join([*_open, name]), ms])


def entries() -> list[tuple[str, float]]:
    return [(str(name), float(ms)) for name, ms in _entries if isinstance(ms, float)]


def forked() -> None:
    """In a forked child: what the parent measured is the parent's to report."""
    _entries.clear()
    _open.clear()


def take() -> list[tuple[str, float]]:
    """The entries so far, forgotten here (a child sends them, then starts anew)."""
    out = entries()
    _entries.clear()
    return out
