"""Runtime state of one container, as runc keeps it: ``<state-root>/<id>/state.json``.

The status is never stored as a plain word that could go stale: it is derived each time
from facts that cannot lie (OCI runtime-spec "state"):

    creating  state.json not yet written (the directory exists, create is under way)
    created   init is alive and still blocked on exec.fifo, waiting for ``start``
    running   init is alive and has exec'ed the container's command (exec.fifo is gone)
    paused    running, and ``pause`` froze its cgroup (the ``paused`` marker says so)
    stopped   init is gone (or its pid was reused: the start time no longer matches)
"""

from __future__ import annotations

import json
import os
import re

from minidock.errors import CorruptRecord, InvalidArgument
from minidock.jsonobj import parse_object
from minidock.records import asdict, field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
FIFO = "exec.fifo"
STATE = "state.json"
PAUSED = "paused"


#: The statuses in which the init process exists.
ALIVE = ("created", "running", "paused")


def check_id(container_id: str) -> str:
    if not ID_RE.match(container_id):
        raise InvalidArgument(f"invalid container id {container_id!r}")
    return container_id


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if there is no such pid.

    Together with the pid it names one process for good: a recycled pid has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] == b"Z":  # a zombie is gone for our purposes (only its parent can reap it)
        return None
    return int(rest[19])


@record
class RuntimeState:
    id: str
    bundle: str
    pid: int = 0
    start_time: int = 0
    created: str = ""
    cgroups_path: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def status(self, state_dir: str) -> str:
        if not self.pid:
            return "creating"
        if process_start_time(self.pid) != self.start_time:
            return "stopped"
        if os.path.exists(os.path.join(state_dir, FIFO)):
            return "created"
        if os.path.exists(os.path.join(state_dir, PAUSED)):
            return "paused"
        return "running"

    def oci(self, state_dir: str) -> dict[str, Any]:
        status = self.status(state_dir)
        return {
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status,
            "pid": self.pid if status in ALIVE else 0,
            "bundle": self.bundle,
            "rootfs": "",
            "created": self.created,
            "annotations": self.annotations,
        }

    def save(self, state_dir: str) -> None:
        """Atomic (write + rename) but not fsynced: runtime state lives under the per-boot
        run root and means nothing after a reboot, like runc's."""
        data = json.dumps(asdict(self)).encode()
        tmp = os.path.join(state_dir, f".{STATE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(state_dir, STATE))

    @classmethod
    def load(cls, state_dir: str) -> RuntimeState:
        path = os.path.join(state_dir, STATE)
        with open(path, "rb") as f:
            doc = parse_object(f.read(), f"runtime state {path}", CorruptRecord)
        try:
            return cls(**doc)
        except TypeError as e:
            raise CorruptRecord(f"runtime state {path}: {e}") from None
