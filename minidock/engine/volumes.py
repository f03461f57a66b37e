"""``volume create/ls/inspect/rm/prune``: a data root's volumes and which containers use them.

The volumes themselves are minidock.volume's; this module adds what only the engine knows:
the containers whose mount points name a volume (any state, as Docker counts them), which
``rm`` refuses and ``prune`` keeps.
"""

from __future__ import annotations

from minidock.engine.containers import store
from minidock.errors import Conflict, InvalidArgument
from minidock.paths import Paths
from minidock.volume import Volumes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def create(paths: Paths, name: str | None, labels: dict[str, str],
           options: dict[str, str]) -> str:
    try:
        return Volumes(paths).create(name, labels, options=options)
    except InvalidArgument as e:
        if e.message.startswith(("invalid option key", "missing required option")):
            raise InvalidArgument(f"create {name}: {e.message}" if name
                                  else f"create: {e.message}") from None
        raise


def inspect(paths: Paths, name: str) -> dict[str, Any]:
    return Volumes(paths).inspect(name)


def ls(paths: Paths) -> list[dict[str, Any]]:
    volumes = Volumes(paths)
    return [volumes.inspect(name) for name in volumes.names()]


def remove(paths: Paths, name: str, force: bool = False) -> None:
    """``volume rm``: refused while a container uses it; -f: a missing one is no error."""
    volumes = Volumes(paths)
    if not volumes.exists(name):
        if force:
            return
        volumes.inspect(name)  # raises Docker's "get NAME: no such volume"
    users = store.users_of_volume(paths, name)
    if users:
        raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
    volumes.remove(name)


def prune(paths: Paths) -> tuple[list[str], int]:
    """``volume prune`` as Docker 20.10's: every volume no container uses; (names, bytes)."""
    volumes = Volumes(paths)
    used = {p.get("Name") for c in store.readable_records(paths)
            for p in c.mount_points.values() if p.get("Type") == "volume"}
    removed, reclaimed = [], 0
    for name in volumes.names():
        if name in used:
            continue
        reclaimed += volumes.size(name)
        volumes.remove(name)
        removed.append(name)
    return removed, reclaimed
