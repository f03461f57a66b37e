"""Detached containers: run -d, the C monitor, json-file logs, stop/kill/wait/restart/attach."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import freezer_says_frozen, monitor_of, processes_of, wait_for, zombies_of

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


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


def test_kill_returns_once_the_container_is_gone(md, detached):
    # Docker's daemon waits for the exit of a SIGKILLed container before `kill` answers:
    # `kill x; ps` never lists x as Up (before this, it did in 5 of 6 tries)
    for _ in range(4):
        cid = detached("busybox", "sleep", "100")
        assert md.run("kill", cid, check=True).stdout == f"{cid}\n"
        assert cid[:12] not in md.run("ps", "-q").stdout
        st = state(md, cid)
        assert st["Status"] == "exited" and st["ExitCode"] == 137
        assert not processes_of(cid)


def test_restart(md, detached):
    cid = detached("busybox", "sh", "-c", "echo start; sleep 100")
    assert wait_for(lambda: md.run("logs", cid).stdout == "start\n")
    pid1 = state(md, cid)["Pid"]
    assert md.run("restart", "-t", "0", cid, check=True).stdout == f"{cid}\n"
    st = state(md, cid)
    assert st["Running"] and st["Pid"] != pid1
    assert wait_for(lambda: md.run("logs", cid).stdout == "start\nstart\n")
    assert len([p for p, c in processes_of(cid).items() if "minidock-monitor" in c]) == 1


def test_restart_of_an_rm_container_keeps_it(md, images):
    cid = md.run("run", "-d", "--rm", "busybox", "sleep", "1000", check=True).stdout.strip()
    try:
        assert md.run("restart", "-t", "0", cid, check=True).stdout == f"{cid}\n"
        assert state(md, cid)["Running"]  # moby: AutoRemove does not apply to the stop
        assert not os.path.exists(os.path.join(md.root, "containers", cid, "restarting"))
        md.run("stop", "-t", "0", cid, check=True)  # a real end: --rm applies
        assert wait_for(lambda: not os.path.exists(os.path.join(md.root, "containers", cid)))
    finally:
        md.run("rm", "-f", cid)
    assert wait_for(lambda: not processes_of(cid), 10), processes_of(cid)


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


# --- pause, top, stats, rename --------------------------------------------------------


def test_pause_and_unpause(md, detached):
    cid = detached("--name", "pz", "busybox", "sh", "-c",
                   "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done")
    assert wait_for(lambda: len(md.run("logs", cid).stdout.split()) > 2)
    assert md.run("pause", "pz", check=True).stdout == "pz\n"
    assert freezer_says_frozen(cid)
    st = state(md, cid)
    assert st["Status"] == "paused" and st["Paused"] and st["Running"]
    assert re.search(r"Up .* \(Paused\)", ps_row(md, cid)), ps_row(md, cid)
    seen = md.run("logs", cid).stdout
    time.sleep(0.5)  # a frozen loop writes nothing more
    assert md.run("logs", cid).stdout == seen
    r = md.run("pause", cid)
    assert r.returncode == 1 and f"Container {cid} is already paused" in r.stderr
    r = md.run("exec", cid, "true")
    assert r.returncode != 0 and "is paused, unpause the container before exec" in r.stderr
    assert md.run("unpause", cid, check=True).stdout == f"{cid}\n"
    assert not freezer_says_frozen(cid)
    assert wait_for(lambda: md.run("logs", cid).stdout != seen)
    assert state(md, cid)["Status"] == "running"
    r = md.run("unpause", cid)
    assert r.returncode == 1 and f"Container {cid} is not paused" in r.stderr
    stopped = detached("busybox", "true")
    md.run("wait", stopped, check=True)
    r = md.run("pause", stopped)
    assert r.returncode == 1 and "is not running" in r.stderr


def test_stop_kill_and_rm_of_a_paused_container(md, detached):
    script = "trap 'exit 143' TERM; echo ready; while :; do sleep 0.1; done"
    a, b, c = (detached("busybox", "sh", "-c", script) for _ in range(3))
    for cid in (a, b, c):
        assert wait_for(lambda cid=cid: "ready" in md.run("logs", cid).stdout)
        md.run("pause", cid, check=True)
    # the stop signal is taken once the container is thawed (Docker's rule)
    md.run("stop", "-t", "10", a, check=True)
    assert state(md, a)["ExitCode"] == 143
    md.run("kill", b, check=True)
    assert md.run("wait", b, check=True).stdout == "137\n"
    assert md.run("rm", "-f", c, check=True).stdout == f"{c}\n"
    assert not os.path.exists(os.path.join(md.root, "containers", c))
    assert wait_for(lambda: not processes_of(c), 10), processes_of(c)


def test_top_lists_the_containers_processes_with_host_pids(md, detached):
    cid = detached("busybox", "sh", "-c", "sleep 1000 & sleep 1001 & wait")
    assert wait_for(lambda: len(md.run("top", cid).stdout.splitlines()) == 4)
    md.run("exec", "-d", cid, "sleep", "1002", check=True)
    assert wait_for(lambda: "sleep 1002" in md.run("top", cid).stdout)
    lines = md.run("top", cid, check=True).stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = {ln.split(None, 7)[7]: int(ln.split()[1]) for ln in lines[1:]}
    init = "sh -c sleep 1000 & sleep 1001 & wait"
    assert set(rows) == {init, "sleep 1000", "sleep 1001", "sleep 1002"}
    # the PIDs are the host's: the init's is the one inspect reports, not 1
    assert rows[init] == state(md, cid)["Pid"] != 1
    for cmd, pid in rows.items():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().rstrip(b"\0").replace(b"\0", b" ").decode() == cmd
    # ps options pass through, one column per word
    custom = md.run("top", cid, "-o", "pid,comm", check=True).stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"]
    assert sorted(ln.split()[1] for ln in custom[1:]) == ["sh", "sleep", "sleep", "sleep"]
    r = md.run("top", cid, "-o", "comm")
    assert r.returncode == 1 and "PID" in r.stderr
    done = detached("busybox", "true")
    md.run("wait", done, check=True)
    r = md.run("top", done)
    assert r.returncode == 1 and f"container {done} is not running" in r.stderr


def test_stats_no_stream_reads_the_cgroup(md, detached):
    # 8 MB in the container's /dev/shm (tmpfs, charged to its memory cgroup) and a busy loop
    cid = detached("--name", "st1", "--network", "none", "busybox", "sh", "-c",
                   "head -c 8000000 /dev/zero > /dev/shm/blob; echo ready; "
                   "while :; do :; done")
    assert wait_for(lambda: "ready" in md.run("logs", cid).stdout)
    r = md.run("stats", "--no-stream", check=True)
    lines = r.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["CONTAINER ID", "NAME", "CPU %",
                                             "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                                             "BLOCK I/O", "PIDS"]
    row = next(ln for ln in lines if ln.startswith(cid[:12]))
    cols = re.split(r"\s{2,}", row)
    assert cols[1] == "st1"
    cpu = float(cols[2].rstrip("%"))
    assert cpu > 5.0, row  # a loop that never sleeps, measured over a second
    used, limit = cols[3].split(" / ")
    assert used.endswith("MiB") and float(used[:-3]) >= 7.6, row
    assert limit.endswith("GiB") or limit.endswith("MiB"), row
    assert cols[5] == "0B / 0B"  # --network none: only lo, which Docker does not count
    assert cols[7] == "1"
    out = md.run("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemPerc}}",
                 "st1", check=True).stdout
    assert re.fullmatch(r"st1 1 \d+\.\d\d%\n", out), out
    done = detached("busybox", "true")
    md.run("wait", done, check=True)
    out = md.run("stats", "-a", "--no-stream", "--no-trunc", "--format",
                 "{{.ID}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", check=True).stdout
    assert f"{done} 0.00% 0B / 0B 0\n" in out
    r = md.run("stats", "--no-stream", "no-such-container")
    assert r.returncode == 1 and "No such container: no-such-container" in r.stderr


def test_rename(md, detached):
    cid = detached("--name", "before", "busybox", "sleep", "1000")
    other = detached("--name", "taken", "busybox", "sleep", "1000")
    assert md.run("rename", "before", "after", check=True).stdout == ""
    assert state(md, "after")["Running"]
    assert ps_row(md, cid).split()[-1] == "after"
    r = md.run("inspect", "before")
    assert r.returncode != 0 and "No such container: before" in r.stderr
    r = md.run("rename", cid, "taken")
    assert r.returncode == 1 and f'"/taken" is already in use by container "{other}"' in r.stderr
    r = md.run("rename", cid, "after")
    assert r.returncode == 1 and "same name" in r.stderr
    r = md.run("rename", cid, "bad/name")
    assert r.returncode == 1 and "Invalid container name (bad/name)" in r.stderr
    # the old name is free again; the renamed container still stops by its new name
    detached("--name", "before", "busybox", "true")
    assert md.run("stop", "-t", "0", "after", check=True).stdout == "after\n"


def test_attach_forwards_stdin_to_a_di_container(md, detached):
    cid = detached("-i", "busybox", "sh", "-c", "while read line; do echo got:$line; done")
    p = subprocess.Popen(md.argv("attach", cid), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        p.stdin.write("one\ntwo\n")
        p.stdin.close()
        # our stdin ended, the container's did not (Docker's -i without StdinOnce)
        assert wait_for(lambda: md.run("logs", cid).stdout == "got:one\ngot:two\n")
        assert state(md, cid)["Running"]
        md.run("kill", cid, check=True)
        assert p.wait(timeout=30) == 137, p.stderr.read()
        assert p.stdout.read() == "got:one\ngot:two\n"  # what it wrote while we were attached
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_attach_passes_window_size_changes(md, detached):
    pexpect = pytest.importorskip("pexpect")
    cid = detached("-it", "busybox", "sh")
    argv = md.argv("attach", cid)
    child = pexpect.spawn(argv[0], argv[1:], timeout=20, dimensions=(30, 90))
    try:
        child.sendline("stty size")
        child.expect(r"30 90")
        child.setwinsize(41, 123)  # the kernel sends the attach client SIGWINCH
        time.sleep(0.2)
        child.sendline("stty size")
        child.expect(r"41 123")
        child.send("\x10\x11")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_stats_streams_until_interrupted(md, detached):
    cid = detached("busybox", "sleep", "1000")
    p = subprocess.Popen(md.argv("stats", cid), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(60, p.kill)  # a stream that stalls fails the test, never hangs it
    guard.start()
    out = ""
    try:
        # into a pipe: one table per reading, each flushed as it is made
        while out.count("CONTAINER ID") < 3 and (ch := p.stdout.read(1)):
            out += ch
    finally:
        guard.cancel()
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=15)
    lines = out.splitlines()  # (the header's padding follows the widest NET I/O value)
    assert sum(ln.startswith("CONTAINER ID") for ln in lines) >= 2, out
    assert lines[1].startswith(cid[:12]) and lines[3].startswith(cid[:12]), out
