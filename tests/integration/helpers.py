"""Helpers shared by the integration tests: polling, and host processes of a container."""

from __future__ import annotations

import os
import time


def wait_for(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def processes_of(cid: str) -> dict[int, str]:
    """Host processes that mention the container id: its monitor or its cleanup."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(cid.encode() in a for a in argv):
            found[int(entry)] = b" ".join(argv).decode(errors="replace")
    return found


def monitor_of(cid: str) -> int:
    pids = [p for p, cmd in processes_of(cid).items() if "minidock-monitor" in cmd]
    assert len(pids) == 1, processes_of(cid)
    return pids[0]


def zombies_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def freezer_says_frozen(cid: str) -> bool:
    """What the kernel says, read where a learner would look (v1 freezer or v2 cgroup.freeze)."""
    v1 = f"/sys/fs/cgroup/freezer/minidock/{cid}/freezer.state"
    if os.path.exists(v1):
        with open(v1) as f:
            return f.read().strip() == "FROZEN"
    with open(f"/sys/fs/cgroup/minidock/{cid}/cgroup.events") as f:
        return "frozen 1" in f.read().splitlines()
