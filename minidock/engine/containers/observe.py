"""``top``, ``stats`` and ``ps -s``: what a container does and holds, read from the host side.

``top`` and ``stats`` start from the container's cgroup (the one the engine named in its
spec, whichever runtime made it), the one place that knows every process of a container
(its init and whatever it forked or ``exec`` added), whatever pid namespace they see
themselves in:

* ``top`` runs the host's ``ps`` with the user's options and keeps the lines whose PID
  column is in the cgroup's cgroup.procs, so the pids shown are host pids (as Docker's).
* ``stats`` reads the cgroup's counters (cpuacct/cpu.stat, memory, blkio/io.stat, pids)
  and the network counters in the init's /proc/<pid>/net/dev, then does docker/cli's
  arithmetic on them (CPU % over two readings, memory without the inactive page cache).
* ``ps -s`` sizes the container's rw layer and its image in the image store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from minidock import cgroups
from minidock.engine import containers as ct
from minidock.errors import Conflict, ContainerRuntimeError, InvalidArgument, MinidockError
from minidock.paths import Paths
from minidock.records import record

# --- size (ps -s) --------------------------------------------------------------------


def disk_usage(paths: Paths, c: ct.Container) -> tuple[int, int] | None:
    """Bytes the container wrote (its rw layer's diff) and its image's; None if unreadable."""
    store = ct.image_store(paths)
    try:
        return store.rw_layer_size(c.id), store.image_size(c.image_id)
    except (MinidockError, OSError):
        return None


# --- top ----------------------------------------------------------------------------


def top(paths: Paths, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
    """``ps <ps_args>`` cut down to the container's processes: (titles, rows)."""
    c = ct.get(paths, ref)
    if not c.state.running:
        raise Conflict(f"container {c.id} is not running")
    pids = set(ct.runtime_of(paths, c).ps(c.id))
    ps = shutil.which("ps")
    if ps is None:
        raise ContainerRuntimeError("top: the ps command is not installed (Debian: procps)")
    argv = [ps, *ps_args.split()]
    # without a terminal to measure, ps may cut lines at 80 columns: the CMD column is the
    # one a user wants whole
    env = {**os.environ, "COLUMNS": "65536"}
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        err = result.stderr.strip().splitlines()
        raise InvalidArgument(f"top: ps {ps_args}: {err[0] if err else 'failed'}")
    return parse_ps(result.stdout, pids)


def parse_ps(output: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """Split ps output into columns (the last, CMD, keeps its spaces) and keep the rows
    whose PID is in ``pids``."""
    lines = output.splitlines()
    if not lines:
        raise ContainerRuntimeError("top: ps printed nothing")
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidArgument("top: couldn't find PID field in ps output") from None
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= pid_col:
            continue
        try:
            pid = int(fields[pid_col])
        except ValueError:
            raise InvalidArgument(f"top: unexpected pid {fields[pid_col]!r} in ps output") from None
        if pid in pids:
            rows.append(fields)
    return titles, rows


# --- stats --------------------------------------------------------------------------


@record
class Reading:
    """One container's numbers, as docker/cli shows them (``stats``)."""

    id: str
    name: str
    cpu_percent: float = 0.0
    memory: int = 0
    memory_limit: int = 0
    memory_percent: float = 0.0
    net_rx: int = 0
    net_tx: int = 0
    block_read: int = 0
    block_write: int = 0
    pids: int = 0


def _system_cpu_ns() -> int:
    """All CPU time of the host so far (the first line of /proc/stat), in nanoseconds:
    docker's ``system_cpu_usage``, the denominator of the CPU %."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:8]  # user nice system idle iowait irq softirq
    ticks = sum(int(x) for x in fields)
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def host_memory() -> int:
    """MemTotal in bytes: ``info``'s Total Memory, and the limit ``stats`` shows for a
    container without a memory limit (as Docker)."""
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def net_dev(pid: int) -> tuple[int, int]:
    """(received, sent) bytes of every interface but lo in the network namespace of
    ``pid`` (/proc/<pid>/net/dev shows the namespace of the process that reads it through)."""
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = rest.split()
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def _sample(paths: Paths, c: ct.Container) -> tuple[Reading, int | None]:
    """A reading without the CPU % (which needs two), and the cgroup's CPU time."""
    r = Reading(id=c.id, name=c.name)
    if not c.state.running:
        return r, None
    try:
        st = ct.runtime_of(paths, c).state(c.id)
        if st is None or not st.alive:
            return r, None  # it ended meanwhile: Docker shows zeros too
        init = st.pid
        # the cgroup the engine named in the spec, whichever runtime made it
        s = cgroups.new_manager(ct.cgroups_path(c.id)).stats()
    except (MinidockError, OSError):
        return r, None
    usage = s.memory_usage_bytes or 0
    inactive = s.memory_inactive_file or 0
    r.memory = usage - inactive if inactive < usage else usage
    r.memory_limit = s.memory_limit_bytes or host_memory()
    r.memory_percent = r.memory / r.memory_limit * 100 if r.memory_limit else 0.0
    r.block_read, r.block_write = s.io_read_bytes or 0, s.io_write_bytes or 0
    r.pids = s.pids_current or 0
    if c.host_config.get("NetworkMode") != "host":  # the host's counters are not its own
        r.net_rx, r.net_tx = net_dev(init)
    return r, s.cpu_usage_ns


def stats(paths: Paths, refs: list[str], all_: bool = False, interval: float = 1.0
          ) -> list[Reading]:
    """One reading of each container; the CPU % is measured over ``interval`` seconds
    (docker/cli: container CPU time / host CPU time * online CPUs * 100)."""
    items = [ct.get(paths, ref) for ref in refs] if refs else ct.list_containers(paths, all_)
    first = [_sample(paths, c) for c in items]
    system0 = _system_cpu_ns()
    if any(cpu is not None for _, cpu in first):
        time.sleep(interval)
    system1 = _system_cpu_ns()
    online = os.sysconf("SC_NPROCESSORS_ONLN") or 1
    out = []
    for c, (r0, cpu0) in zip(items, first, strict=True):
        r1, cpu1 = _sample(paths, c)
        if cpu0 is not None and cpu1 is not None and system1 > system0:
            r1.cpu_percent = max(0.0, (cpu1 - cpu0) / (system1 - system0) * online * 100)
        out.append(r1 if cpu1 is not None else r0)
    return out
