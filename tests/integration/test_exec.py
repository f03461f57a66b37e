"""`exec` into a running container: namespaces, cgroup, confinement, stdio, exit codes, and the
escape classes (CVE-2019-5736: a dumpable helper holding host fds; CVE-2024-21626: a working
directory reached through a leaked host fd)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running(md, name: str, *run_args: str) -> Iterator[str]:
    """A foreground `run` of busybox whose pid 1 is `sh` (it waits for `sleep`); removed after."""
    p = subprocess.Popen(
        md.argv("run", "--rm", "--name", name, *run_args, "busybox", "sh", "-c",
                "echo ready; sleep 60; echo done"),
        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        yield name
    finally:
        md.run("rm", "-f", name)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


def ex(md, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return md.run("exec", *args, **kw)


def test_exec_sees_the_containers_processes_hostname_mounts_and_cgroup(md, images):
    with running(md, "ex-ns") as c:
        cid = md.run("inspect", "-f", "{{.Id}}", c, check=True).stdout.strip()
        r = ex(md, c, "ps", "-o", "pid,args", check=True)
        rows = [line.split(None, 1) for line in r.stdout.splitlines()[1:]]
        assert rows[0] == ["1", "sh -c echo ready; sleep 60; echo done"]
        assert any(args == "sleep 60" for _, args in rows)
        assert ex(md, c, "hostname", check=True).stdout == cid[:12] + "\n"
        mounts = ex(md, c, "cat", "/proc/mounts", check=True).stdout.splitlines()
        assert mounts[0].split()[:3] == ["overlay", "/", "overlay"]
        assert any(m.split()[1] == "/dev/pts" for m in mounts)
        # the same cgroup as the container's init
        ours = ex(md, c, "cat", "/proc/self/cgroup", check=True).stdout
        init = ex(md, c, "cat", "/proc/1/cgroup", check=True).stdout
        assert ours == init and cid in ours
        # and the same network and ipc namespaces
        script = ("for f in /proc/1/ns/net /proc/self/ns/net /proc/1/ns/ipc /proc/self/ns/ipc;"
                  " do readlink $f; done")
        links = ex(md, c, "sh", "-c", script, check=True).stdout.split()
        assert links[0] == links[1] and links[2] == links[3]


def test_exec_has_the_containers_confinement(md, images):
    with running(md, "ex-caps") as c:
        status = ex(md, c, "cat", "/proc/self/status", check=True).stdout
        assert re.search(r"^CapEff:\s+00000000a80425fb$", status, re.M)
        assert re.search(r"^CapBnd:\s+00000000a80425fb$", status, re.M)
        assert re.search(r"^Seccomp:\s+2$", status, re.M)
        assert re.search(r"^NoNewPrivs:\s+0$", status, re.M)
        # the seccomp filter is the container's: unshare is refused without CAP_SYS_ADMIN
        r = ex(md, c, "unshare", "-m", "true")
        assert r.returncode != 0
    with running(md, "ex-nnp", "--security-opt", "no-new-privileges") as c:
        status = ex(md, c, "cat", "/proc/self/status", check=True).stdout
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
        assert re.search(r"^Seccomp:\s+2$", status, re.M)


def test_env_user_and_workdir(md, images, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROMFILE=1\n")
    with running(md, "ex-env", "-e", "FOO=container") as c:
        env = ex(md, "-e", "BAR=exec", "--env-file", str(env_file), c, "env", check=True).stdout
        lines = set(env.splitlines())
        assert {"FOO=container", "BAR=exec", "FROMFILE=1", "HOME=/root"} <= lines
        assert "HOSTNAME=" + ex(md, c, "hostname", check=True).stdout.strip() in lines
        assert "FOO=override" in ex(md, "-e", "FOO=override", c, "env", check=True).stdout
        r = ex(md, "-u", "nobody", c, "sh", "-c", "id; echo $HOME", check=True)
        assert r.stdout.startswith("uid=65534(nobody) gid=65534(nogroup)")
        assert re.search(r"^CapEff:\s+0+$", ex(md, "-u", "1000:1000", c, "cat",
                                                "/proc/self/status", check=True).stdout, re.M)
        assert ex(md, "-u", "1000:1000", c, "id", "-u", check=True).stdout == "1000\n"
        r = ex(md, "-u", "nosuchuser", c, "id")
        assert r.returncode == 126 and "unable to find user nosuchuser" in r.stderr
        assert ex(md, "-w", "/etc", c, "pwd", check=True).stdout == "/etc\n"
        assert ex(md, c, "pwd", check=True).stdout == "/\n"
        r = ex(md, "-w", "/nope", c, "pwd")
        assert r.returncode == 126 and 'chdir to cwd ("/nope")' in r.stderr
        r = ex(md, "-w", "relative", c, "pwd")
        assert r.returncode == 1 and "needs to be an absolute path" in r.stderr


def test_exit_codes(md, images):
    with running(md, "ex-codes") as c:
        assert ex(md, c, "true").returncode == 0
        assert ex(md, c, "sh", "-c", "exit 3").returncode == 3
        r = ex(md, c, "nosuchcommand")
        assert r.returncode == 127 and "executable file not found" in r.stderr
        r = ex(md, c, "/etc/passwd")
        assert r.returncode == 126 and "permission denied" in r.stderr
        r = ex(md, c, "/etc")
        assert r.returncode == 126 and "is a directory" in r.stderr
        assert ex(md, c, "sh", "-c", "kill -9 $$").returncode == 137
        r = ex(md, c)
        assert r.returncode == 125  # a usage error, as docker's


def test_exec_on_a_stopped_or_missing_container(md, images):
    md.run("create", "--name", "ex-created", "busybox", check=True)
    md.run("run", "--name", "ex-exited", "busybox", "true", check=True)
    try:
        for name in ("ex-created", "ex-exited"):
            cid = md.run("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
            r = ex(md, name, "true")
            assert r.returncode == 1, r
            assert r.stderr == f"Error: container {cid} is not running\n"
        r = ex(md, "ex-nosuch", "true")
        assert r.returncode == 1 and "No such container: ex-nosuch" in r.stderr
    finally:
        md.run("rm", "-f", "ex-created", "ex-exited")


def test_interactive_stdin(md, images):
    with running(md, "ex-stdin") as c:
        r = ex(md, "-i", c, "sh", "-c", "cat; echo; echo err >&2; exit 4", input="piped\n")
        assert (r.returncode, r.stdout, r.stderr) == (4, "piped\n\n", "err\n")
        # without -i the process reads /dev/null
        r = ex(md, c, "cat", input="ignored\n")
        assert (r.returncode, r.stdout) == (0, "")


def test_tty_through_a_real_pty(md, images):
    with running(md, "ex-tty") as c:
        argv = md.argv("exec", "-it", c, "sh")
        child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=30,
                              dimensions=(33, 101))
        try:
            child.expect_exact("/ # ")
            child.sendline("tty; stty size; echo $TERM")
            child.expect(r"/dev/pts/\d+\r\n33 101\r\nxterm\r\n")
            child.expect_exact("/ # ")
            child.sendline("exit 5")
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 5
        finally:
            if child.isalive():
                child.terminate(force=True)


def test_detach_returns_at_once_and_the_process_runs(md, images):
    with running(md, "ex-detach") as c:
        r = ex(md, "-d", c, "sh", "-c", "echo out; sleep 47")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        ps = ex(md, c, "ps", "-o", "args", check=True).stdout
        assert "sleep 47" in ps
        r = ex(md, "-d", c, "nosuchcommand")
        assert r.returncode == 127
    # the detached process died with the container (leak_check: no process left)


def test_helper_is_gone_and_no_host_fd_reaches_the_process(md, images):
    with running(md, "ex-fds") as c:
        r = ex(md, c, "ls", "-l", "/proc/self/fd", check=True)
        fds = {}
        for line in r.stdout.splitlines()[1:]:
            m = re.search(r" (\d+)(?: -> (.*))?$", line)
            assert m, line
            fds[int(m.group(1))] = m.group(2) or ""
        assert set(fds) <= {0, 1, 2, 3}, r.stdout  # 3: the directory ls is reading
        assert fds[0] == "/dev/null"
        assert fds[1].startswith("pipe:") and fds[2].startswith("pipe:")
        # the process's parent is outside its PID namespace (it is our CLI): nothing of the
        # helper is visible in the container, and its root and cwd are the container's
        status = ex(md, c, "sh", "-c", "cat /proc/self/status; ls /proc", check=True).stdout
        assert re.search(r"^PPid:\s+\d+$", status, re.M)
        r = ex(md, c, "sh", "-c", "readlink /proc/self/root; readlink /proc/self/cwd; "
               "for p in /proc/[0-9]*; do readlink $p/exe; done", check=True)
        lines = r.stdout.splitlines()
        assert lines[:2] == ["/", "/"]
        assert not [x for x in lines[2:] if "python" in x or "minidock" in x]
        # from the host: the exec'd process is the CLI's own child (the helper has exited)
        p = subprocess.Popen(md.argv("exec", c, "sleep", "31"), cwd=REPO)
        try:
            pid = wait_for_process(["sleep", "31"])
            assert ppid(pid) == p.pid
            # its cwd is the container's root directory (through /proc: another mount ns)
            root, cwd = os.stat(f"/proc/{pid}/root"), os.stat(f"/proc/{pid}/cwd")
            assert (cwd.st_dev, cwd.st_ino) == (root.st_dev, root.st_ino)
            assert (root.st_dev, root.st_ino) != (os.stat("/").st_dev, os.stat("/").st_ino)
            assert os.path.exists(f"/proc/{pid}/cwd/bin/busybox")
            assert not os.path.exists(f"/proc/{pid}/cwd/{REPO.name}")
            kids = [q for q in all_pids() if ppid(q) == p.pid]
            assert kids == [pid]
        finally:
            p.kill()
            p.wait()


def test_trace_shows_non_dumpable_and_fds_closed_before_joining(md, images):
    with running(md, "ex-trace") as c:
        r = ex(md, "--trace", c, "true", check=True)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("[exec-helper")]
        steps = [ln.split("] ", 1)[1] for ln in lines]
        first_setns = next(i for i, s in enumerate(steps) if s.startswith("setns("))
        assert steps[0].startswith("prctl(PR_SET_DUMPABLE, 0) = 0")
        assert any(s.startswith("close_range(") for s in steps[:first_setns])
        assert any("CLONE_NEWNS" in s for s in steps)
        assert any("CLONE_NEWPID" in s for s in steps)


def test_workdir_cannot_reach_a_host_directory(md, images):
    """CVE-2024-21626: runc leaked an fd of the host's /sys/fs/cgroup, and -w /proc/self/fd/7
    put the process's cwd on the host. Here no fd of the host is open when the process
    chdirs, so every such path fails or stays inside the container."""
    host_marker = "pyproject.toml"
    assert (REPO / host_marker).exists()
    with running(md, "ex-cve") as c:
        candidates = [f"/proc/self/fd/{n}" for n in range(0, 16)]
        candidates += [f"/proc/1/fd/{n}" for n in range(0, 8)]
        candidates += ["/proc/self/cwd", "/proc/1/cwd", "/proc/self/root/..", "/../../.."]
        for wd in candidates:
            argv = md.argv("exec", "-w", wd, c, "sh", "-c", "pwd -P; ls -a")
            r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                assert r.returncode == 126 and "chdir to cwd" in r.stderr, (wd, r)
                continue
            listing = r.stdout.splitlines()[1:]
            assert host_marker not in listing and "README.md" not in listing, (wd, r.stdout)
        # and the CLI's own cwd (the host repo) is never inherited
        r = subprocess.run(md.argv("exec", c, "sh", "-c", "pwd -P; ls"), cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("/\n")
        assert host_marker not in r.stdout.splitlines()


# -- host-side helpers -------------------------------------------------------------------


def all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return -1
    return int(data[data.rindex(")") + 2 :].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def wait_for_process(argv: list[str], timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in all_pids():
            if cmdline(pid) == argv:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no process {argv}")


def test_runtime_exec_runc_contract(md, images, tmp_path):
    with running(md, "ex-rt") as c:
        cid = md.run("inspect", "-f", "{{.Id}}", c, check=True).stdout.strip()
        r = md.run("runtime", "exec", "--cwd", "/etc", "-e", "X=1", "-u", "1000:1000", cid,
                   "sh", "-c", 'echo "$(pwd) $X $(id -u):$(id -g)"; exit 6')
        assert (r.returncode, r.stdout) == (6, "/etc 1 1000:1000\n"), r
        proc = {"args": ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status"],
                "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}}
        (tmp_path / "process.json").write_text(json.dumps(proc))
        r = md.run("runtime", "exec", "--process", tmp_path / "process.json", cid, check=True)
        assert r.stdout.split() == ["CapEff:", "00000000a80425fb", "Seccomp:", "2"]
        pid_file = tmp_path / "pid"
        # runc's contract: the process gets our stdio as is (so not md.run's capture pipes)
        subprocess.run(md.argv("runtime", "exec", "-d", "--pid-file", pid_file, cid, "sleep",
                               "33"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       check=True, timeout=20)
        pid = int(pid_file.read_text())
        assert cmdline(pid) == ["sleep", "33"]
        r = md.run("runtime", "exec", cid, "nosuchcommand")
        assert r.returncode == 127
