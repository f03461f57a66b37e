"""Detached containers: run -d, the C monitor, json-file logs, stop/kill/wait/restart/attach."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def wait_for(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def detached(md, images) -> Iterator:
    """run -d helper; every container it started is removed (rm -f) at the end."""
    started: list[str] = []

    def run(*args: str) -> str:
        r = md.run("run", "-d", *args, check=True)
        cid = r.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid), r.stdout
        started.append(cid)
        return cid

    yield run
    for cid in started:
        md.run("rm", "-f", cid)
    for cid in started:
        assert wait_for(lambda c=cid: not processes_of(c), 10), processes_of(cid)


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


def state(md, ref: str) -> dict:
    return json.loads(md.run("inspect", ref, check=True).stdout)[0]["State"]


def ps_row(md, cid: str) -> str:
    return next((r for r in md.run("ps", "-a").stdout.splitlines() if r.startswith(cid[:12])),
                "")


def log_lines(md, cid: str) -> list[str]:
    with open(os.path.join(md.root, "containers", cid, f"{cid}-json.log")) as f:
        return f.read().splitlines()


def test_run_detached_lifecycle_and_monitor(md, detached):
    cid = detached("--name", "det1", "busybox", "sh", "-c", "echo hi; sleep 100")
    assert "Up " in ps_row(md, cid)
    assert wait_for(lambda: md.run("logs", "det1").stdout == "hi\n")
    st = state(md, "det1")
    assert st["Status"] == "running" and st["Running"] and st["Pid"] > 0
    # what stays alive for the container is the C monitor, not a Python process
    mon = monitor_of(cid)
    assert os.path.basename(os.readlink(f"/proc/{mon}/exe")) == "minidock-monitor"
    with open(f"/proc/{mon}/smaps_rollup") as f:
        pss = int(re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M).group(1))
    print(f"\nmonitor PSS: {pss} kB", file=sys.stderr)
    with open(f"/proc/{st['Pid']}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == mon  # the init is its child
    # sh as pid 1 has no SIGTERM handler: the kernel ignores TERM, stop ends with SIGKILL
    r = md.run("stop", "-t", "1", "det1", check=True)
    assert r.stdout == "det1\n"
    st = state(md, "det1")
    assert st["Status"] == "exited" and st["ExitCode"] == 137 and st["Pid"] == 0
    assert RFC3339NANO.match(st["FinishedAt"])
    assert "Exited (137)" in ps_row(md, cid)
    assert wait_for(lambda: not processes_of(cid), 10), processes_of(cid)
    assert not zombies_of(mon)
    # nothing of the run is left on the host; the log stays
    assert not os.listdir(os.path.join(md.run_root, "runtime"))
    assert not os.listdir(os.path.join(md.run_root, "bundles"))
    assert not os.path.exists(os.path.join(md.root, "containers", cid, "monitor-exit.json"))
    assert md.run("logs", cid).stdout == "hi\n"


def test_stop_ignoring_sigterm_is_killed_after_the_timeout(md, detached):
    cid = detached("busybox", "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done")
    assert wait_for(lambda: "ready" in md.run("logs", cid).stdout)
    assert md.run("stop", "-t", "1", cid, check=True).stdout == f"{cid}\n"
    assert state(md, cid)["ExitCode"] == 137


def test_stop_exits_on_sigterm(md, detached):
    cid = detached("busybox", "sh", "-c",
                   "trap 'echo got TERM; exit 143' TERM; echo ready; while :; do sleep 0.1; done")
    assert wait_for(lambda: "ready" in md.run("logs", cid).stdout)
    md.run("stop", "-t", "30", cid, check=True)
    assert state(md, cid)["ExitCode"] == 143
    assert md.run("logs", cid).stdout == "ready\ngot TERM\n"


def test_logs_json_file_format(md, detached):
    long = "x" * 20000
    script = (f"echo out; echo err >&2; printf 'tab\\t\"q\" <b> & \\\\ \\001 \\377 é\\n'; "
              f"printf {long}; echo; printf partial")
    cid = detached("busybox", "sh", "-c", script)
    assert md.run("wait", cid, check=True).stdout == "0\n"
    lines = log_lines(md, cid)
    docs = [json.loads(ln) for ln in lines]
    for ln, doc in zip(lines, docs, strict=True):
        assert list(doc) == ["log", "stream", "time"], ln
        assert RFC3339NANO.match(doc["time"]), doc["time"]
        assert not re.search(r"\.\d*0Z$", doc["time"])  # Go's RFC3339Nano drops trailing 0s
    # the two pipes are read as they come: order only within a stream
    assert [d["log"] for d in docs if d["stream"] == "stderr"] == ["err\n"]
    out_lines = [ln for ln, d in zip(lines, docs, strict=True) if d["stream"] == "stdout"]
    out_docs = [d for d in docs if d["stream"] == "stdout"]
    assert out_docs[0]["log"] == "out\n"
    # Docker's escaping (moby jsonlog): \u00XX for controls and <>&, \ufffd for bad UTF-8
    assert out_lines[1].startswith(
        r'{"log":"tab\u0009\"q\" \u003cb\u003e \u0026 \\ \u0001 \ufffd é\n","stream":"stdout"')
    # a line longer than 16 KiB is split, as Docker's copier does; a partial line at EOF
    assert [d["log"] for d in out_docs[2:]] == ["x" * 16384, "x" * (20000 - 16384) + "\n",
                                                "partial"]
    out = md.run("logs", cid)
    assert out.stdout == f"out\ntab\t\"q\" <b> & \\ \x01 \ufffd é\n{long}\npartial"
    assert out.stderr == "err\n"


def test_logs_tail_timestamps_since_follow(md, detached):
    cid = detached("busybox", "sh", "-c", "echo one; echo two; echo three; sleep 1; echo late")
    assert wait_for(lambda: "three" in md.run("logs", cid).stdout)
    assert md.run("logs", "--tail", "2", cid).stdout == "two\nthree\n"
    assert md.run("logs", "-n", "0", cid).stdout == ""
    stamped = md.run("logs", "-t", "--tail", "1", cid).stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n", stamped), stamped
    assert md.run("logs", "--since", "2099-01-01T00:00:00Z", cid).stdout == ""
    assert md.run("logs", "--since", "10m", cid).stdout.startswith("one\n")
    # -f returns once the container has ended, with everything it wrote
    r = md.run("logs", "-f", cid, timeout=30)
    assert r.returncode == 0 and r.stdout == "one\ntwo\nthree\nlate\n"


def test_wait_kill_and_start_again(md, detached):
    cid = detached("busybox", "sh", "-c", "sleep 0.3; exit 7")
    assert md.run("wait", cid, check=True).stdout == "7\n"
    assert "Exited (7)" in ps_row(md, cid)
    # `start` without -a: detached again, prints what it was given
    assert md.run("start", cid[:12], check=True).stdout == f"{cid[:12]}\n"
    assert md.run("wait", cid, check=True).stdout == "7\n"
    cid2 = detached("busybox", "sh", "-c", "trap 'exit 10' USR1; while :; do sleep 0.1; done")
    assert md.run("kill", "-s", "SIGUSR1", cid2, check=True).stdout == f"{cid2}\n"
    assert md.run("wait", cid2, check=True).stdout == "10\n"
    r = md.run("kill", cid2)
    assert r.returncode == 1 and "is not running" in r.stderr
    assert md.run("kill", "-s", "NOPE", cid2).returncode != 0


def test_restart(md, detached):
    cid = detached("busybox", "sh", "-c", "echo start; sleep 100")
    assert wait_for(lambda: md.run("logs", cid).stdout == "start\n")
    pid1 = state(md, cid)["Pid"]
    assert md.run("restart", "-t", "0", cid, check=True).stdout == f"{cid}\n"
    st = state(md, cid)
    assert st["Running"] and st["Pid"] != pid1
    assert wait_for(lambda: md.run("logs", cid).stdout == "start\nstart\n")
    assert len([p for p, c in processes_of(cid).items() if "minidock-monitor" in c]) == 1


def test_run_detached_rm_removes_itself(md, images):
    cid = md.run("run", "-d", "--rm", "busybox", "sh", "-c", "exit 3", check=True).stdout.strip()
    assert wait_for(lambda: not os.path.exists(os.path.join(md.root, "containers", cid)))
    assert wait_for(lambda: not processes_of(cid), 10), processes_of(cid)
    assert cid[:12] not in md.run("ps", "-a").stdout


def test_rm_force_running_detached(md, images):
    cid = md.run("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
    mon = monitor_of(cid)
    assert md.run("rm", "-f", cid, check=True).stdout == f"{cid}\n"
    assert not os.path.exists(os.path.join(md.root, "containers", cid))
    assert wait_for(lambda: not processes_of(cid), 10), processes_of(cid)
    assert not os.path.exists(f"/proc/{mon}") or not zombies_of(mon)


def test_run_detached_command_not_found(md, images):
    r = md.run("run", "-d", "--name", "det-nf", "busybox", "no-such-command")
    try:
        assert r.returncode == 127, r.stderr
        assert "executable file not found" in r.stderr
        assert state(md, "det-nf")["Status"] == "created"
        assert not processes_of(r.stdout.strip() or "det-nf")
    finally:
        md.run("rm", "-f", "det-nf")


def test_attach_without_tty_follows_until_exit(md, detached):
    cid = detached("busybox", "sh", "-c", "sleep 0.5; echo after; exit 4")
    r = md.run("attach", cid, timeout=30)
    assert r.returncode == 4 and r.stdout == "after\n"


def test_dit_attach_and_detach_keys(md, detached):
    pexpect = pytest.importorskip("pexpect")
    cid = detached("-it", "busybox", "sh")
    child = pexpect.spawn(md.argv("attach", cid)[0], md.argv("attach", cid)[1:], timeout=20)
    try:
        child.sendline("echo hel''lo-$((40+2))")
        child.expect("hello-42")
        child.send("\x10\x11")  # Ctrl-P Ctrl-Q
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert state(md, cid)["Running"]
        # attach again, and end the shell: attach exits with its code
        child = pexpect.spawn(md.argv("attach", cid)[0], md.argv("attach", cid)[1:], timeout=20)
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 5
        assert state(md, cid)["ExitCode"] == 5
        assert "exit 5" in md.run("logs", cid).stdout
    finally:
        child.close(force=True)


def test_killed_monitor_is_reconciled(md, images):
    cid = md.run("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
    try:
        os.kill(monitor_of(cid), 9)
        # nobody holds the monitor lock any more: the next command records the end (255,
        # nobody saw it) and releases the mount, cgroup and bundle
        assert wait_for(lambda: "Exited (255)" in ps_row(md, cid)), ps_row(md, cid)
        assert state(md, cid)["Error"]
        assert not os.listdir(os.path.join(md.run_root, "runtime"))
    finally:
        md.run("rm", "-f", cid)
    assert wait_for(lambda: not processes_of(cid), 10), processes_of(cid)
