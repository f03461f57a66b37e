"""What ``info`` reports of this engine: its containers and images, and the runtimes it may
run them with (the host facts, kernel and memory, are the CLI's to read)."""

from __future__ import annotations

from minidock.paths import Paths
from minidock.records import field, record


@record
class EngineInfo:
    containers: int = 0
    running: int = 0
    paused: int = 0
    images: int = 0
    runtimes: list[str] = field(default_factory=list)  # sorted, as Docker lists them
    default_runtime: str = ""

    @property
    def stopped(self) -> int:
        return self.containers - self.running - self.paused


def info(paths: Paths) -> EngineInfo:
    from minidock.engine import containers
    from minidock.engine import runtime as rt

    items = containers.list_containers(paths, all_=True)
    out = EngineInfo(containers=len(items))
    out.running = sum(1 for c in items if c.state.status.value == "running")
    out.paused = sum(1 for c in items if c.state.status.value == "paused")
    try:
        out.images = len(containers.image_store(paths).list_images())
    except FileNotFoundError:
        out.images = 0
    out.runtimes = sorted(rt.listing(paths))
    out.default_runtime = rt.default_name()
    return out
