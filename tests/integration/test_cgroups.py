"""minidock.cgroups against the real kernel: whatever layout this host has (v1, hybrid or v2).

Every test works in ``/minidock/test-<random>`` and removes it, and ``/minidock`` too when the
test created it and it is empty, even when the test fails. On a hybrid/v1 host, run the same
file on a cgroup-v2-only kernel with scripts/test-cgroup-v2.sh.
"""

from __future__ import annotations

import errno
import os
import posixpath
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from minidock.cgroups import (
    DEFAULT_DEVICE_RULES,
    Manager,
    default_cgroups_path,
    detect_version,
    device_rule_line,
    mode,
    new_manager,
    read_layout,
)
from minidock.errors import ContainerRuntimeError

pytestmark = [pytest.mark.root, pytest.mark.cgroup]

ROOT = "/sys/fs/cgroup"


def _requires() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        read_layout(ROOT)
    except ContainerRuntimeError as e:
        pytest.skip(str(e))


def _force_remove(top: str) -> None:
    """Last-resort cleanup with plain os calls, for when the code under test failed."""
    if not os.path.isdir(top):
        return
    dirs = [d for d, _, _ in os.walk(top)]
    for d in reversed(dirs):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                for pid in f.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        except OSError:
            pass
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    break
                time.sleep(0.05)


class Sandbox:
    """A manager for a fresh test cgroup plus the processes a test started."""

    def __init__(self) -> None:
        self.mgr: Manager = new_manager(default_cgroups_path(f"test-{uuid.uuid4().hex[:12]}"))
        self.procs: list[subprocess.Popen[bytes]] = []
        parents = {os.path.dirname(d) for d in self.mgr.paths.values()}
        self.new_parents = {p for p in parents if not os.path.isdir(p)}

    def spawn(self, *argv: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdin=stdin, start_new_session=True)
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        try:
            self.mgr.destroy()
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=30)
            for d in set(self.mgr.paths.values()):
                _force_remove(d)
            for parent in self.new_parents:
                try:
                    os.rmdir(parent)  # only if empty: another test or container may use it
                except OSError:
                    pass


@pytest.fixture
def box() -> Iterator[Sandbox]:
    _requires()
    sandbox = Sandbox()
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def _cgroup_lines(pid: int) -> list[tuple[frozenset[str], str]]:
    """/proc/<pid>/cgroup as (controllers, path); cgroup2 is the empty set."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            out.append((frozenset(c for c in controllers.split(",") if c), path))
    return out


def _assert_in_cgroup(mgr: Manager, pid: int) -> None:
    layout = read_layout(ROOT)
    lines = dict(_cgroup_lines(pid))
    if layout.version == 2:
        assert lines[frozenset()] == mgr.path
        return
    for mount in layout.hierarchies:
        expected = posixpath.join(mount.root, mgr.path.lstrip("/"))
        assert lines[mount.controllers] == expected, mount.name
    if layout.unified and os.path.isdir(mgr.paths[""]):
        assert lines[frozenset()] == mgr.path


def _no_dirs_left(mgr: Manager) -> None:
    left = [d for d in mgr.paths.values() if os.path.exists(d)]
    assert not left
    assert not mgr.exists()


def test_detected_layout_matches_the_kernel() -> None:
    _requires()
    unified_root = os.path.exists(os.path.join(ROOT, "cgroup.controllers"))
    assert detect_version(ROOT) == (2 if unified_root else 1)
    assert mode(ROOT) == "v2" if unified_root else mode(ROOT) in ("v1", "hybrid")


def test_create_is_idempotent_and_sets_up_the_layout(box: Sandbox) -> None:
    mgr = box.mgr
    assert not mgr.exists()
    mgr.create()
    mgr.create()
    mgr.apply_device_rules(DEFAULT_DEVICE_RULES)  # the runtime applies the spec's rules
    assert mgr.exists()
    for d in mgr.paths.values():
        assert os.path.isdir(d), d
    if mgr.version == 1:
        paths = mgr.paths
        with open(os.path.join(paths["devices"], "devices.list")) as f:
            listed = set(f.read().split("\n")) - {""}
        assert listed == {device_rule_line(r)[1] for r in DEFAULT_DEVICE_RULES[1:]}
        if "cpuset" in paths:
            with open(os.path.join(paths["cpuset"], "cpuset.cpus")) as f:
                assert f.read().strip()
    else:
        leaf = mgr.paths[""]
        with open(os.path.join(ROOT, "cgroup.controllers")) as f:
            available = set(f.read().split())
        with open(os.path.join(os.path.dirname(leaf), "cgroup.subtree_control")) as f:
            delegated = set(f.read().split())
        assert {"memory", "pids"} & available <= delegated
        for name in ("memory.current", "pids.current"):
            if name.split(".")[0] in available:
                assert os.path.exists(os.path.join(leaf, name))


def test_process_lifecycle(box: Sandbox) -> None:
    mgr = box.mgr
    mgr.create()
    proc = box.spawn("sleep", "30")
    mgr.add_process(proc.pid)
    _assert_in_cgroup(mgr, proc.pid)
    assert mgr.pids() == [proc.pid]

    stats = mgr.stats()
    assert stats.pids_current == 1
    assert stats.memory_usage_bytes is None or stats.memory_usage_bytes >= 0

    mgr.freeze()
    if mgr.version == 1:
        with open(os.path.join(mgr.paths["freezer"], "freezer.state")) as f:
            assert f.read().strip() == "FROZEN"
    else:
        with open(os.path.join(mgr.paths[""], "cgroup.events")) as f:
            assert "frozen 1" in f.read()
    mgr.freeze()  # idempotent
    mgr.thaw()
    if mgr.version == 1:
        with open(os.path.join(mgr.paths["freezer"], "freezer.state")) as f:
            assert f.read().strip() == "THAWED"
    else:
        with open(os.path.join(mgr.paths[""], "cgroup.events")) as f:
            assert "frozen 0" in f.read()
    assert proc.poll() is None

    mgr.kill_all(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert mgr.pids() == []

    mgr.destroy()
    _no_dirs_left(mgr)
    mgr.destroy()  # idempotent


def test_kill_all_with_another_signal(box: Sandbox) -> None:
    mgr = box.mgr
    mgr.create()
    proc = box.spawn("sleep", "30")
    mgr.add_process(proc.pid)
    mgr.kill_all(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_destroy_kills_children_and_nested_cgroups(box: Sandbox) -> None:
    mgr = box.mgr
    mgr.create()
    # The shell waits for a line before forking, so its children are born in the cgroup.
    sh = box.spawn("sh", "-c", "read x; sleep 30 & sleep 30 & wait", stdin=subprocess.PIPE)
    mgr.add_process(sh.pid)
    assert sh.stdin is not None
    sh.stdin.write(b"go\n")
    sh.stdin.close()
    deadline = time.monotonic() + 10
    while len(mgr.pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(mgr.pids()) == 3

    # A container may split its cgroup further (cgroup namespaces): move one child down.
    child = next(p for p in mgr.pids() if p != sh.pid)
    inner_dirs = {os.path.join(d, "inner") for d in set(mgr.paths.values())}
    for d in inner_dirs:
        os.mkdir(d)
    inner = os.path.join(mgr.paths["pids" if mgr.version == 1 else ""], "inner")
    with open(os.path.join(inner, "cgroup.procs"), "w") as f:
        f.write(str(child))
    assert child in mgr.pids()

    mgr.destroy()
    assert sh.wait(timeout=10) == -signal.SIGKILL
    _no_dirs_left(mgr)


def test_device_rules(box: Sandbox) -> None:
    mgr = box.mgr
    mgr.create()
    mgr.apply_device_rules(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        ]
    )
    if mgr.version == 1:
        with open(os.path.join(mgr.paths["devices"], "devices.list")) as f:
            assert f.read().split("\n")[:-1] == ["c 1:3 rw"]
    # v2: validated but not enforced (needs eBPF); nothing to observe


def test_errors_name_the_action_and_path(box: Sandbox) -> None:
    mgr = box.mgr
    mgr.create()
    with pytest.raises(ContainerRuntimeError) as info:
        mgr.add_process(2**22 + 1)  # above pid_max: no such process
    message = str(info.value)
    assert message.startswith(f"add process {2**22 + 1} to cgroup /")
    assert mgr.path in message


def test_destroy_of_a_cgroup_never_created(box: Sandbox) -> None:
    box.mgr.destroy()
    _no_dirs_left(box.mgr)
