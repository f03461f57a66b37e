"""`minidock runtime` honours runc's CLI contract: the same bundle runs under runc (and
crun, where installed) and under minidock, and the container sees the same world."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from minidock import cgroups
from minidock.engine import spec as specgen
from minidock.engine.spec.user import ExecUser

pytestmark = [pytest.mark.root, pytest.mark.cgroup, pytest.mark.images]

SCRIPT = ("hostname; id; echo $$; grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status; "
          "ls /dev | tr '\\n' ' '; echo; cat /proc/self/mounts | cut -d' ' -f2,3 | sort | "
          "grep -vE '^/sys/fs/cgroup/' | tr '\\n' ' '")


@pytest.fixture
def bundle(tmp_path, test_images):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    subprocess.run(["tar", "-xf", os.path.join(test_images, "busybox.tar"), "-C", str(rootfs)],
                   check=True)
    doc = specgen.base_spec("rootfs", ["sh", "-c", SCRIPT], ["PATH=/bin"], "/",
                            ExecUser(0, 0), "contract", False)
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path


# crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"): compare with it
# where it can run at all, so that the test never has to be skipped.
REFERENCES = ["runc"] + (["crun"] if cgroups.mode() != "hybrid" else [])


@pytest.mark.parametrize("other", REFERENCES)
def test_same_bundle_same_world(bundle, tmp_path, other):
    assert shutil.which(other), f"{other} is not installed (scripts/test.sh installs it)"
    ours = [sys.executable, "-m", "minidock", "runtime"]
    results = {}
    for name, prefix in (("minidock", ours), (other, [other])):
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["linux"]["cgroupsPath"] = f"/minidock/contract-{name}"
        (bundle / "config.json").write_text(json.dumps(cfg))
        state = str(tmp_path / f"state-{name}")
        proc = subprocess.Popen([*prefix, "--root", state, "create", "--bundle", str(bundle),
                                 f"contract-{name}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            # create returns at once; the init keeps create's stdout pipe open
            assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
            st = json.loads(subprocess.run([*prefix, "--root", state, "state",
                                            f"contract-{name}"], capture_output=True,
                                           text=True, check=True).stdout)
            assert st["status"] == "created"
            subprocess.run([*prefix, "--root", state, "start", f"contract-{name}"],
                           check=True, timeout=60)
            assert proc.stdout is not None
            results[name] = proc.stdout.read()
        finally:
            subprocess.run([*prefix, "--root", state, "delete", "--force", f"contract-{name}"],
                           capture_output=True)
    ours_lines = results["minidock"].splitlines()
    theirs = results[other].splitlines()
    assert ours_lines[0] == theirs[0] == "contract"
    assert ours_lines[1] == theirs[1]  # uid/gid
    assert ours_lines[2] == theirs[2] == "1"  # pid 1 in its own namespace
    assert ours_lines[3:6] == theirs[3:6]  # capabilities
    assert set(ours_lines[6].split()) == set(theirs[6].split())  # /dev
    assert ours_lines[7].split() == theirs[7].split()  # mount points and types


def test_state_and_errors(bundle, tmp_path):
    base = [sys.executable, "-m", "minidock", "runtime", "--root", str(tmp_path / "st")]
    r = subprocess.run([*base, "state", "nope"], capture_output=True, text=True)
    assert r.returncode == 125 and "does not exist" in r.stderr
    r = subprocess.run([*base, "create", "--bundle", str(tmp_path / "missing"), "x"],
                       capture_output=True, text=True)
    assert r.returncode == 125 and "config.json" in r.stderr


@pytest.mark.parametrize("name", ["minidock", "runc"])
def test_pause_resume_ps_as_runc(bundle, tmp_path, name):
    """pause, resume and ps have runc's verbs and answers (runc is the reference)."""
    assert shutil.which("runc"), "runc is not installed (scripts/test.sh installs it)"
    prefix = [sys.executable, "-m", "minidock", "runtime"] if name == "minidock" else ["runc"]
    cid = f"pause-{name}"
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["args"] = ["sleep", "1000"]
    cfg["linux"]["cgroupsPath"] = f"/minidock/{cid}"
    (bundle / "config.json").write_text(json.dumps(cfg))
    base = [*prefix, "--root", str(tmp_path / "state")]

    def run(*args: str) -> str:
        return subprocess.run([*base, *args], capture_output=True, text=True, check=True,
                              timeout=60).stdout

    proc = subprocess.Popen([*base, "create", "--bundle", str(bundle), cid],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        run("start", cid)
        pid = json.loads(run("state", cid))["pid"]
        assert json.loads(run("ps", "--format", "json", cid)) == [pid]
        run("pause", cid)
        assert json.loads(run("state", cid))["status"] == "paused"
        v1 = f"/sys/fs/cgroup/freezer/minidock/{cid}/freezer.state"
        if os.path.exists(v1):
            with open(v1) as f:
                assert f.read().strip() == "FROZEN"
        else:
            with open(f"/sys/fs/cgroup/minidock/{cid}/cgroup.events") as f:
                assert "frozen 1" in f.read().splitlines()
        r = subprocess.run([*base, "pause", cid], capture_output=True, text=True)
        assert r.returncode != 0  # already paused
        run("resume", cid)
        assert json.loads(run("state", cid))["status"] == "running"
    finally:
        subprocess.run([*base, "delete", "--force", cid], capture_output=True)
    try:  # gone, or a zombie waiting for whoever inherited it (maybe this test process)
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    except FileNotFoundError:
        pass
