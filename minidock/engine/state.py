"""A container's lifecycle as an explicit state machine.

    create          start            process ends        rm
    ------> created ------> running ---------------> exited ------> (gone)
               |               |  ^ pause / unpause      |  start
               |               v  |                      +------> running
               |             paused
               +--- start fails (126/127) ----------------> exited
      removing: while rm tears a container down;  dead: a removal that failed half-way

The status word and the rest of Docker's ``State`` object are saved in config.v2.json;
every change goes through :meth:`State.transition`, which refuses the moves this diagram
does not have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from minidock.errors import Conflict

ZERO_TIME = "0001-01-01T00:00:00Z"


class Status(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


_ALLOWED: dict[Status, set[Status]] = {
    Status.CREATED: {Status.RUNNING, Status.EXITED, Status.REMOVING},
    Status.RUNNING: {Status.EXITED, Status.PAUSED},
    Status.PAUSED: {Status.RUNNING, Status.EXITED},
    Status.RESTARTING: {Status.RUNNING, Status.EXITED},
    Status.EXITED: {Status.RUNNING, Status.REMOVING},
    Status.REMOVING: {Status.DEAD},
    Status.DEAD: {Status.REMOVING},
}


@dataclass
class State:
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False

    def transition(self, new: Status) -> None:
        if new not in _ALLOWED[self.status]:
            raise Conflict(f"container cannot go from {self.status.value} to {new.value}")
        self.status = new

    @property
    def running(self) -> bool:
        return self.status in (Status.RUNNING, Status.PAUSED)

    def to_docker(self) -> dict[str, Any]:
        """Docker's ``State`` object (config.v2.json and inspect)."""
        return {
            "Status": self.status.value,
            "Running": self.running,
            "Paused": self.status == Status.PAUSED,
            "Restarting": self.status == Status.RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == Status.DEAD,
            "Pid": self.pid if self.running else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }

    @classmethod
    def from_docker(cls, d: dict[str, Any]) -> State:
        return cls(
            status=Status(d.get("Status", "created")),
            pid=int(d.get("Pid", 0)),
            exit_code=int(d.get("ExitCode", 0)),
            error=d.get("Error", ""),
            started_at=d.get("StartedAt", ZERO_TIME),
            finished_at=d.get("FinishedAt", ZERO_TIME),
            oom_killed=bool(d.get("OOMKilled", False)),
        )
