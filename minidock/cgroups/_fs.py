"""cgroupfs primitives shared by the v1 and v2 managers.

Writes and directory changes are kernel steps of the runtime, so they go through
:mod:`minidock.linux` and show up in ``--trace``; reads are plain. Everything here raises
``OSError`` with the path; the managers turn that into a ContainerRuntimeError that names the
action (:func:`runtime_error`).

minidock.linux loads the compiled cffi module. Where that module (or cffi itself) is missing,
as in a bare test VM, the same calls run untraced through the os module so that
minidock.cgroups stays importable.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterator

from minidock.errors import ContainerRuntimeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

try:
    from minidock.linux import mkdir as _mkdir
    from minidock.linux import write_file as _write_file
    from minidock.linux.trace import step as _step
except ModuleNotFoundError as _e:  # pragma: no cover - only where the cffi module is missing
    if _e.name not in ("_cffi_backend", "minidock._native", "cffi"):
        raise

    def _mkdir(path: str, mode: int = 0o755, why: str = "") -> None:
        os.mkdir(path, mode)

    def _write_file(path: str, data: str, why: str = "") -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def _step(call: str, fn: Callable[[], T], why: str = "") -> T:
        return fn()


#: How long to wait for a cgroup to freeze, or to empty after SIGKILL.
SETTLE_TIMEOUT = 10.0


def mkdir(path: str, why: str) -> bool:
    """Create one cgroup directory; False if it already existed."""
    try:
        _mkdir(path, 0o755, why=why)
    except FileExistsError:
        return False
    return True


def write(path: str, data: str, why: str) -> None:
    """One write to a cgroup interface file; the OSError always carries ``path``."""
    try:
        _write_file(path, data, why=why)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, path) from e
        raise


def rmdir(path: str, why: str) -> None:
    def call() -> None:
        os.rmdir(path)

    _step(f'rmdir("{path}")', call, why)


def read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def read_int(path: str) -> int | None:
    """An integer cgroup file, or None when it is missing or says "max"."""
    try:
        value = read(path).strip()
    except FileNotFoundError:
        return None
    return int(value) if value.isdigit() else None


def read_keyed(path: str) -> dict[str, str]:
    """A "key value" per line file (cgroup.events, memory.stat, ...)."""
    out: dict[str, str] = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        out[key] = value.strip()
    return out


def keyed_int(path: str, key: str) -> int:
    """One counter of a "key value" file (memory.events, memory.oom_control); 0 when the
    file or the key is not there."""
    try:
        value = read_keyed(path).get(key, "0")
    except FileNotFoundError:
        return 0
    return int(value) if value.isdigit() else 0


def write_pids_max(cgroup_dir: str, limit: int) -> None:
    """pids.max (v1 and v2 alike): ``limit`` tasks, "max" for 0 or less."""
    write(os.path.join(cgroup_dir, "pids.max"), str(limit) if limit > 0 else "max",
          why="--pids-limit: fork() fails with EAGAIN past this many tasks")


def write_cpuset(cgroup_dir: str, cpus: str, mems: str) -> None:
    """cpuset.cpus and cpuset.mems (v1 and v2 alike), those given."""
    if cpus:
        write(os.path.join(cgroup_dir, "cpuset.cpus"), cpus,
              why="--cpuset-cpus: the CPUs its tasks may run on")
    if mems:
        write(os.path.join(cgroup_dir, "cpuset.mems"), mems,
              why="--cpuset-mems: the memory nodes it may allocate from")


def walk_dirs(top: str) -> Iterator[str]:
    """``top`` and every cgroup below it, parents first."""
    yield top
    try:
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_dirs(entry.path)


def procs(top: str) -> list[int]:
    """The pids in ``top`` and its descendant cgroups (a container may nest its own)."""
    pids: list[int] = []
    for d in walk_dirs(top):
        try:
            text = read(os.path.join(d, "cgroup.procs"))
        except FileNotFoundError:
            continue
        pids.extend(int(p) for p in text.split())
    return sorted(set(pids))


def signal_pids(pids: list[int], sig: int) -> None:
    """kill(2) each pid; one that exited meanwhile is fine."""
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = str(sig)
    for pid in pids:

        def call(pid: int = pid) -> None:
            os.kill(pid, sig)

        try:
            _step(f"kill({pid}, {name})", call, why="signal a process of the container")
        except ProcessLookupError:
            pass


def wait_until(check: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> bool:
    """Poll ``check`` with a growing sleep (1 ms .. 50 ms) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def remove_tree(top: str, why: str, attempts: int = 40) -> None:
    """rmdir ``top`` and the cgroups below it, children first.

    A cgroup whose last process was just killed may refuse rmdir with EBUSY for a moment
    (the exit is asynchronous), so that is retried; a missing directory is success.
    """
    dirs = list(walk_dirs(top))
    for d in reversed(dirs):
        delay = 0.005
        for attempt in range(attempts):
            try:
                rmdir(d, why=why)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or attempt == attempts - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def strerror(e: OSError) -> str:
    text = os.strerror(e.errno) if e.errno else (e.strerror or str(e))
    return text[:1].lower() + text[1:]


def runtime_error(
    action: str, e: OSError, path: str | None = None, hint: str | None = None
) -> ContainerRuntimeError:
    """``<action> <path>: <reason>`` plus a hint for the failures users can fix."""
    where = path or e.filename
    if hint is None and e.errno in (errno.EACCES, errno.EPERM):
        hint = "managing cgroups needs root (or a delegated cgroup subtree)"
    elif hint is None and e.errno == errno.EROFS:
        hint = "the cgroup filesystem is mounted read-only (in a container without --privileged?)"
    message = f"{action} {where}: {strerror(e)}" if where else f"{action}: {strerror(e)}"
    return ContainerRuntimeError(message, hint=hint)


def kill_frozen(
    freeze: Callable[[], None],
    thaw: Callable[[], None],
    list_pids: Callable[[], list[int]],
    sig: int,
    rounds: int = 10,
) -> None:
    """Signal every process, freezing first so none can fork a child we would miss.

    Frozen tasks take the signal when thawed; SIGKILL is repeated until the cgroup is empty
    because a task that was mid-fork when we listed may have a child the first round missed.
    """
    for _ in range(rounds):
        try:
            freeze()
        except (OSError, ContainerRuntimeError):
            pass  # a task stuck in the kernel; signal what we can see, unfrozen
        try:
            pids = list_pids()
            signal_pids(pids, sig)
        finally:
            thaw()
        if sig != signal.SIGKILL or not pids:
            return
        if wait_until(lambda: not list_pids(), timeout=1.0):
            return
