"""--runtime: the same engine over minidock's runtime and over runc, side by side.

A differential test: one image, one command line, two runtimes behind the OCIRuntime seam;
what the container sees of itself (capabilities, seccomp, mounts, /dev, ids, environment,
working directory, hostname, cgroup, namespaces, limits) must be the same, foreground, with a
terminal and detached. Then the lifecycle under runc (exec, logs, pause, top, stats, stop,
kill, rm, system check), the settings' ``runtimes``/``default-runtime``, and the one-line error
of a runtime that cannot run here.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pexpect
import pytest
from helpers import processes_of, wait_for

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")]

# What a container can see of itself, one fact a line (busybox's tools only).
FACTS = r"""
echo "id: $(id)"; echo "cwd: $(pwd)"; echo "hostname: $(hostname)"
grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status
env | sort
echo "-- cgroup"; cat /proc/self/cgroup
echo "-- mounts"; awk '{print $5, $9, $6}' /proc/self/mountinfo | sort
echo "-- dev"; ls -ln /dev /dev/pts /dev/mqueue /dev/shm | awk 'NF>5 {print $1,$3,$4,$5,$6,$NF}'
echo "-- limits"; tail -n +2 /proc/self/limits
echo "-- ns"; ls -l /proc/self/ns | awk 'NF>5 {print $(NF-2)}'
"""

# One deliberate difference: runc leaves the tmpfs under the cgroup mounts writable, minidock
# mounts it read-only as the spec asks (the cgroup mounts in it are read-only under both).
_CGROUP_TMPFS = re.compile(r"^(/sys/fs/cgroup tmpfs )r[ow],", re.M)


def normalized(text: str, cid: str) -> str:
    text = text.replace(cid, "<id>").replace(cid[:12], "<id>").replace("\r\n", "\n")
    return _CGROUP_TMPFS.sub(r"\1r?,", text)


def facts_of(md, runtime: str, *flags: str) -> str:
    r = md.run("run", "--name", f"facts-{runtime}", "--runtime", runtime, *flags, "-w", "/tmp",
               "-e", "FOO=bar", "-u", "1:2", "busybox", "sh", "-c", FACTS, check=True)
    cid = json.loads(md.run("inspect", f"facts-{runtime}", check=True).stdout)[0]["Id"]
    md.run("rm", f"facts-{runtime}", check=True)
    return normalized(r.stdout, cid)


def test_foreground_facts_match_runc(md, images):
    ours, theirs = facts_of(md, "minidock"), facts_of(md, "runc")
    assert "CapEff:\t0000000000000000" in ours  # uid 1: no effective capabilities
    assert "-- mounts" in ours and "/dev/pts devpts" in ours
    assert ours == theirs


def test_detached_facts_and_lifecycle_match_runc(md, images):
    out = {}
    for runtime in ("minidock", "runc"):
        name = f"d-{runtime}"
        cid = md.run("run", "-d", "--name", name, "--runtime", runtime, "busybox", "sh", "-c",
                     FACTS + "echo ready; exec sleep 1000", check=True).stdout.strip()
        assert wait_for(lambda n=name: "ready\n" in md.run("logs", n).stdout)
        out[runtime] = normalized(md.run("logs", name, check=True).stdout, cid)
        hc = json.loads(md.run("inspect", name, check=True).stdout)[0]["HostConfig"]
        assert hc["Runtime"] == runtime
        # exec joins it with its confinement, whichever runtime made it
        r = md.run("exec", "-u", "1", name, "sh", "-c", "grep CapEff /proc/self/status; pwd")
        assert r.returncode == 0 and r.stdout == "CapEff:\t0000000000000000\n/\n", r
        assert md.run("exec", name, "sh", "-c", "exit 3").returncode == 3
        r = md.run("exec", name, "nosuchcommand")
        assert r.returncode == 127 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        # pause, top, stats through the seam and the cgroup
        md.run("pause", name, check=True)
        assert "(Paused)" in md.run("ps", "--format", "{{.Status}}", "-f", f"name={name}").stdout
        r = md.run("exec", name, "true")
        assert r.returncode == 1 and "is paused" in r.stderr
        md.run("unpause", name, check=True)
        assert "sleep 1000" in md.run("top", name, check=True).stdout
        stats = md.run("stats", "--no-stream", "--format", "{{.PIDs}}", name, check=True)
        assert stats.stdout.strip() == "1"
        # SIGKILL: gone once kill returns
        md.run("kill", name, check=True)
        assert md.run("inspect", "-f", "{{.State.ExitCode}}", name, check=True
                      ).stdout.strip() == "137"
        assert not processes_of(cid)
        md.run("start", name, check=True)
        assert md.run("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        md.run("stop", "-t", "0", name, check=True)
        md.run("rm", name, check=True)
    assert out["minidock"] == out["runc"]
    assert md.run("system", "check", check=True).stdout == "No problems found.\n"
    for entry in os.listdir(md.run_root):
        if entry.startswith("runtime"):
            assert os.listdir(os.path.join(md.run_root, entry)) == [], entry


def _tty_facts(md, runtime: str) -> str:
    argv = md.argv("run", "-it", "--rm", "--runtime", runtime, "-h", "tty-facts", "busybox",
                   "sh")
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=30,
                          dimensions=(30, 100))
    try:
        child.expect_exact("/ # ")
        child.sendline("tty; stty size; id; grep -E '^Cap(Eff|Bnd)' /proc/self/status; "
                       "ls -ln /dev/console /dev/ptmx | awk '{print $1,$5,$6,$NF}'; exit 5")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 5
        return child.before.split("exit 5", 1)[1]
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_terminal_facts_match_runc(md, images):
    ours, theirs = _tty_facts(md, "minidock"), _tty_facts(md, "runc")
    assert "/dev/pts/0" in ours and "30 100" in ours
    assert ours == theirs


def test_configured_runtimes_and_default(md, images, tmp_path):
    runc = shutil.which("runc")
    (tmp_path / "config.json").write_text(json.dumps({
        "runtimes": {"myrunc": {"path": runc, "runtimeArgs": ["--log-format", "json"]}},
        "default-runtime": "myrunc"}))
    env = {"MINIDOCK_CONFIG_DIR": str(tmp_path)}
    info = md.run("info", env=env, check=True).stdout
    assert re.search(r"^ Runtimes: .*\bminidock\b.*\bmyrunc\b.*\brunc\b", info, re.M), info
    assert " Default Runtime: myrunc\n" in info
    r = md.run("run", "--name", "dflt", "busybox", "echo", "hi", env=env, check=True)
    assert r.stdout == "hi\n"
    assert md.run("inspect", "-f", "{{.HostConfig.Runtime}}", "dflt", env=env
                  ).stdout == "myrunc\n"
    md.run("rm", "dflt", env=env, check=True)
    # a path works too, and so do the names known without configuration
    r = md.run("run", "--rm", "--runtime", runc, "busybox", "echo", "by path", check=True)
    assert r.stdout == "by path\n"
    info = md.run("info", check=True).stdout
    assert " Default Runtime: minidock\n" in info


@pytest.mark.parametrize("runtime, error", [
    ("nosuch", "unknown or invalid runtime name: nosuch"),
    ("relative/path", "runtime path 'relative/path' must be absolute"),
    ("/etc/passwd", "runtime /etc/passwd: not an executable file"),
])
def test_bad_runtime_is_one_line_and_creates_nothing(md, images, runtime, error):
    before = md.run("ps", "-aq").stdout
    r = md.run("run", "--rm", "--runtime", runtime, "busybox", "true")
    assert r.returncode == 125
    assert r.stderr == f"Error: {error}\n"
    assert md.run("ps", "-aq").stdout == before


def test_crun_runs_or_says_in_one_line_why_not(md, images):
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    r = md.run("run", "--rm", "--runtime", "crun", "busybox", "echo", "hi")
    hybrid = os.path.isdir("/sys/fs/cgroup/memory") and os.path.exists(
        "/sys/fs/cgroup/unified/cgroup.controllers")
    if r.returncode == 0:
        assert r.stdout == "hi\n"
    else:
        # crun 1.x refuses hybrid cgroup hosts: one line naming the runtime, and a hint
        assert hybrid, r.stderr
        assert r.returncode == 125
        lines = r.stderr.splitlines()
        assert lines[0].startswith("Error: crun cannot run containers on this host's cgroup")
        assert lines[1:] == ["Hint: use another runtime here (--runtime minidock or runc)"]
    assert md.run("system", "check").stdout == "No problems found.\n"
