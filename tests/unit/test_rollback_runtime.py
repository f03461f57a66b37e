"""A failed create, exec, pause or cgroup creation of the runtime leaves nothing behind: no
half-made cgroup, no "paused" marker, no namespace fd, no live helper or init process, no
state dir. No root, no namespaces: the cgroup, the forks and the status messages are faked
around plain child processes (``Interrupted`` stands for a KeyboardInterrupt)."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rollback_helpers import Interrupted, open_fds

from minidock import runtime
from minidock.cgroups import _fs
from minidock.cgroups.mountinfo import CgroupMount, Layout
from minidock.cgroups.v1 import V1Manager
from minidock.errors import Conflict, ContainerRuntimeError
from minidock.runtime import exec as rexec
from minidock.runtime import process
from minidock.runtime.state import PAUSED, process_start_time


def _child(seconds: float) -> int:
    """A plain child process that lives ``seconds`` (0: exits at once)."""
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(seconds)
        finally:
            os._exit(0)
    return pid


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.fixture
def go_pipe() -> Iterator[tuple[int, int]]:
    """The "go" pipe a faked fork_with_pipes hands out: the code under test writes to (and
    closes) the write end; the read end stays open until the test is over."""
    r, w = os.pipe()
    yield r, w
    os.close(r)


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Children a test forks; whatever the code under test left alive is ended after it."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # reaped already
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


# --- cgroup v1 ---------------------------------------------------------------------------


def _v1(tmp_path: Path) -> tuple[V1Manager, Path, Path]:
    memory, pids = tmp_path / "memory", tmp_path / "pids"
    memory.mkdir()
    pids.mkdir()
    layout = Layout(mode="v1", root=str(tmp_path), hierarchies=(
        CgroupMount(str(memory), "/", "cgroup", "0:1", frozenset({"memory"})),
        CgroupMount(str(pids), "/", "cgroup", "0:2", frozenset({"pids"})),
    ))
    return V1Manager(layout, "/minidock/c1"), memory, pids


def test_v1_create_failing_in_the_second_hierarchy_removes_the_first(tmp_path: Path) -> None:
    manager, memory, pids = _v1(tmp_path)
    pids.rmdir()
    pids.write_text("")  # mkdir inside it: ENOTDIR
    with pytest.raises(ContainerRuntimeError, match="create cgroup"):
        manager.create()
    assert os.listdir(memory) == []


def test_v1_create_interrupted_removes_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, memory, pids = _v1(tmp_path)
    real_mkdir = _fs.mkdir

    def mkdir(path: str, why: str) -> bool:
        if path.startswith(str(pids)):
            raise Interrupted
        return real_mkdir(path, why)

    monkeypatch.setattr(_fs, "mkdir", mkdir)
    with pytest.raises(Interrupted):
        manager.create()
    assert os.listdir(memory) == []
    monkeypatch.undo()
    manager.create()  # nothing was left in the way
    assert os.path.isdir(memory / "minidock" / "c1") and os.path.isdir(pids / "minidock" / "c1")


# --- pause -------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [ContainerRuntimeError("freeze: no"), Interrupted()])
def test_pause_failing_freeze_removes_the_paused_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    (tmp_path / "c1").mkdir()
    st = SimpleNamespace(status=lambda d: "running", cgroups_path="/minidock/c1")
    monkeypatch.setattr(runtime, "load", lambda root, cid: st)

    def freeze() -> None:
        raise exc

    monkeypatch.setattr(runtime.cgroups, "new_manager",
                        lambda path: SimpleNamespace(freeze=freeze))
    with pytest.raises(type(exc)):
        runtime.pause(str(tmp_path), "c1")
    assert not (tmp_path / "c1" / PAUSED).exists()
    monkeypatch.setattr(runtime.cgroups, "new_manager",
                        lambda path: SimpleNamespace(freeze=lambda: None))
    runtime.pause(str(tmp_path), "c1")
    assert (tmp_path / "c1" / PAUSED).exists()


# --- exec --------------------------------------------------------------------------------


def _every_namespace() -> Any:
    return SimpleNamespace(linux=SimpleNamespace(namespace=lambda kind: object(), seccomp=None))


@pytest.mark.parametrize("exc", [FileNotFoundError(), Interrupted()])
def test_open_namespaces_failing_midway_closes_those_opened(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    st = SimpleNamespace(pid=os.getpid(), start_time=process_start_time(os.getpid()))
    real_step = rexec.trace.step
    calls = []

    def step(what: str, call: Any, why: str = "") -> Any:
        calls.append(what)
        if len(calls) == 3:
            raise exc
        return real_step(what, call, why=why)

    before = open_fds()
    monkeypatch.setattr(rexec.trace, "step", step)
    with pytest.raises(Conflict if isinstance(exc, FileNotFoundError) else Interrupted):
        rexec._open_namespaces(st, _every_namespace(), "c1")  # type: ignore[arg-type]
    assert len(calls) == 3
    assert open_fds() == before
    monkeypatch.undo()
    fds = rexec._open_namespaces(st, _every_namespace(), "c1")  # type: ignore[arg-type]
    assert [kind for kind, _ in fds] == list(rexec._JOIN_ORDER)
    for _, fd in fds:
        os.close(fd)
    assert open_fds() == before


def _fake_exec(monkeypatch: pytest.MonkeyPatch, go_w: int, helper: int, status: bytes,
               add_process: Any = None) -> None:
    """exec_process with its container, cgroup and fork faked: the helper is ``helper``,
    whose status pipe says ``status``."""
    proc = SimpleNamespace(args=["true"], terminal=False, cwd="/", rlimits=[])
    st = SimpleNamespace(cgroups_path="/minidock/c1")
    monkeypatch.setattr(rexec, "load_running", lambda root, cid: (st, _every_namespace()))
    monkeypatch.setattr(rexec, "effective_process", lambda p, spec: proc)
    monkeypatch.setattr(rexec, "_open_namespaces", lambda st, spec, cid: [])
    monkeypatch.setattr(rexec.cgroups, "new_manager", lambda path: SimpleNamespace(
        add_process=add_process or (lambda pid: None), birth_dir=lambda: None))
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    import prctl

    monkeypatch.setattr(prctl, "set_child_subreaper", lambda on: None)
    monkeypatch.setattr(rexec, "fork_with_pipes",
                        lambda child, cgroup_dir: (helper, io.BytesIO(status), go_w, False))


def test_exec_failing_before_the_helper_is_reaped_kills_it(
    monkeypatch: pytest.MonkeyPatch, children: list[int], go_pipe: tuple[int, int]
) -> None:
    helper = _child(60)
    children.append(helper)

    def add_process(pid: int) -> None:
        raise OSError(13, "Permission denied")

    _fake_exec(monkeypatch, go_pipe[1], helper, b"", add_process)
    with pytest.raises(ContainerRuntimeError, match="join the cgroup"):
        rexec.exec_process("/unused", "c1", None)  # type: ignore[arg-type]
    assert _reaped(helper)
    assert os.read(go_pipe[0], 1) == b""  # the write end is closed: no "go" was sent


@pytest.mark.parametrize("subreaper", [True, False])
def test_exec_reported_error_reaps_stage_2_only_as_its_subreaper(
    monkeypatch: pytest.MonkeyPatch, children: list[int], go_pipe: tuple[int, int],
    subreaper: bool
) -> None:
    helper, stage2 = _child(0), _child(60)
    children += [helper, stage2]
    status = json.dumps({"pid": stage2, "error": "exec failed", "code": 127}).encode() + b"\n"
    _fake_exec(monkeypatch, go_pipe[1], helper, status)
    with pytest.raises(ContainerRuntimeError, match="exec failed"):
        rexec.exec_process("/unused", "c1", None,  # type: ignore[arg-type]
                           rexec.ExecOptions(subreaper=subreaper))
    assert _reaped(helper)
    assert _reaped(stage2) is subreaper  # a pid we do not own is never signalled


# --- create ------------------------------------------------------------------------------


def _bundle(tmp_path: Path) -> str:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2",
        "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    }))
    return str(bundle)


def _fake_create(monkeypatch: pytest.MonkeyPatch, go_w: int, stage1: int,
                 status: bytes) -> list[str]:
    """create with its cgroup and fork faked; returns the log of kills and cgroup calls."""
    events: list[str] = []
    manager = SimpleNamespace(
        version=2, create=lambda: events.append("cgroup create"), birth_dir=lambda: None,
        destroy=lambda: events.append("cgroup destroy"),
        add_process=lambda pid: events.append(f"add {pid}"))
    monkeypatch.setattr(process.cgroups, "new_manager", lambda path: manager)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    real_kill = process._kill_and_reap

    def kill_and_reap(pid: int) -> None:
        events.append(f"kill {pid}")
        real_kill(pid)

    monkeypatch.setattr(process, "_kill_and_reap", kill_and_reap)
    monkeypatch.setattr(process, "fork_with_pipes",
                        lambda child, cgroup_dir: (stage1, io.BytesIO(status), go_w, False))
    return events


def test_create_failing_after_the_init_exists_kills_it_before_the_cgroup_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[int],
    go_pipe: tuple[int, int]
) -> None:
    stage1, init = _child(0), _child(60)
    children += [stage1, init]
    status = (json.dumps({"pid": init}) + "\n" +
              json.dumps({"error": "pivot_root: no", "code": 125}) + "\n").encode()
    events = _fake_create(monkeypatch, go_pipe[1], stage1, status)
    state_root = tmp_path / "state"
    with pytest.raises(ContainerRuntimeError, match="pivot_root: no"):
        process.create(str(state_root), "c1", _bundle(tmp_path))
    assert events == ["cgroup create", f"add {init}", f"kill {init}", "cgroup destroy"]
    assert _reaped(init) and _reaped(stage1)
    assert os.listdir(state_root) == []


def test_create_failing_to_write_the_pid_file_kills_the_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[int],
    go_pipe: tuple[int, int]
) -> None:
    stage1, init = _child(0), _child(60)
    children += [stage1, init]
    status = (json.dumps({"pid": init}) + "\n" + json.dumps({"ready": 1}) + "\n").encode()
    events = _fake_create(monkeypatch, go_pipe[1], stage1, status)
    state_root = tmp_path / "state"
    opts = process.CreateOptions(pid_file=str(tmp_path / "missing" / "pid"))
    with pytest.raises(FileNotFoundError):
        process.create(str(state_root), "c1", _bundle(tmp_path), opts)
    assert events[-2:] == [f"kill {init}", "cgroup destroy"]
    assert _reaped(init)
    assert os.listdir(state_root) == []


def test_delete_takes_away_a_create_killed_before_its_first_state_save(tmp_path):
    """`run` killed between the state dir's fifo and its first state.json: the dir holds the
    fifo and a half-written state file only (no cgroup, no process yet); delete removes it
    and still says the container does not exist."""
    import minidock.runtime as rt
    from minidock.errors import ContainerNotFound

    cid = "a" * 64
    d = tmp_path / cid
    d.mkdir()
    os.mkfifo(d / "exec.fifo")
    (d / ".state.json.tmp").write_text('{"id": ')
    with pytest.raises(ContainerNotFound):
        rt.delete(str(tmp_path), cid, force=True)
    assert not d.exists()
    (tmp_path / cid).mkdir()
    (tmp_path / cid / "other").write_text("x")  # anything else: not ours to remove
    with pytest.raises(ContainerNotFound):
        rt.delete(str(tmp_path), cid, force=True)
    assert (tmp_path / cid / "other").exists()
