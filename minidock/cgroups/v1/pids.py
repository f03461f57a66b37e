"""v1 pids controller: pids.current and the limit, pids.max."""

from __future__ import annotations

import os

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


def current(cgroup_dir: str) -> int | None:
    """Tasks (threads included) in the cgroup and its descendants."""
    return _fs.read_int(os.path.join(cgroup_dir, "pids.current"))


def set_limits(cgroup_dir: str, res: Resources) -> None:
    """pids.max: ``pids_limit`` tasks (threads count), "max" for 0 or less."""
    _fs.write_pids_max(cgroup_dir, res.pids_limit or 0)
