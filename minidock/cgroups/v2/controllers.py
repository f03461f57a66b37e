"""Delegating controllers down a v2 tree: cgroup.subtree_control.

On v2 a controller is available in a cgroup only if its parent enabled it for its children
by writing ``+memory`` (etc.) to the parent's cgroup.subtree_control, and the parent can only
enable what its own cgroup.controllers lists. So for ``/minidock/<id>`` the root enables the
controllers for /minidock, and /minidock enables them for <id>.

The no-internal-process rule: a cgroup other than the root cannot have processes *and*
enable controllers for its children (EBUSY). minidock therefore never puts a process in
/minidock itself, and nests under the hierarchy's root, never under the caller's own cgroup
(which has the caller in it).
"""

from __future__ import annotations

import errno
import os

from minidock.cgroups import _fs


def available(cgroup_dir: str) -> list[str]:
    return _fs.read(os.path.join(cgroup_dir, "cgroup.controllers")).split()


def enabled(cgroup_dir: str) -> list[str]:
    return _fs.read(os.path.join(cgroup_dir, "cgroup.subtree_control")).split()


def enable_all(cgroup_dir: str) -> None:
    """Enable, for the children of ``cgroup_dir``, every controller it has.

    All at once first (one write, one trace line). If the kernel refuses the batch, one at a
    time, keeping those that work: e.g. ``cpu`` is refused while a realtime task sits outside
    the root, which should not cost the container its memory and pids limits. Raises the
    first error only when nothing could be enabled.
    """
    missing = [c for c in available(cgroup_dir) if c not in enabled(cgroup_dir)]
    if not missing:
        return
    path = os.path.join(cgroup_dir, "cgroup.subtree_control")
    why = "let child cgroups use these controllers (v2 delegates them top-down)"
    try:
        _fs.write(path, " ".join(f"+{c}" for c in missing), why=why)
        return
    except OSError as e:
        if e.errno == errno.EBUSY:  # the no-internal-process rule: retrying one by one is futile
            raise
        first: OSError = e
    ok = 0
    for c in missing:
        try:
            _fs.write(path, f"+{c}", why=why)
            ok += 1
        except OSError:
            pass
    if not ok:
        raise first

