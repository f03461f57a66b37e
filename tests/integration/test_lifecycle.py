"""Container records, Docker's on-disk layout, and cleanup in every way a run can end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest
from helpers import wait_for

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(path)]




def test_create_start_ps_inspect_rm(md, images):
    cid = md.run("create", "--name", "lc1", "busybox", "sh", "-c", "echo started; exit 5",
                 check=True).stdout.strip()
    assert len(cid) == 64
    ps = md.run("ps", "-a").stdout.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                             "PORTS", "NAMES"]
    row = next(r for r in ps if r.startswith(cid[:12]))
    assert "Created" in row and row.rstrip().endswith("lc1") and "busybox" in row
    assert md.run("ps", "-q").stdout == ""
    assert cid[:12] in md.run("ps", "-aq").stdout
    r = md.run("start", "-a", "lc1")
    assert r.returncode == 5 and r.stdout == "started\n"
    doc = json.loads(md.run("inspect", "lc1", check=True).stdout)[0]
    assert doc["Id"] == cid and doc["Name"] == "/lc1"
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 5
    assert doc["State"]["Running"] is False and doc["State"]["Pid"] == 0
    assert doc["Path"] == "sh" and doc["Args"] == ["-c", "echo started; exit 5"]
    assert doc["Driver"] == "overlay2"
    data = doc["GraphDriver"]["Data"]
    for key in ("LowerDir", "UpperDir", "WorkDir", "MergedDir"):
        assert data[key].startswith(os.path.join(md.root, "overlay2")), key
    assert data["LowerDir"].split(":")[0].endswith("-init/diff")
    row = next(r for r in md.run("ps", "-a").stdout.splitlines() if r.startswith(cid[:12]))
    assert "Exited (5)" in row and "ago" in row
    # the container can be started again
    assert md.run("start", "-a", cid[:5]).returncode == 5
    assert md.run("rm", "lc1", check=True).stdout.strip() == "lc1"
    assert not os.path.exists(os.path.join(md.root, "containers", cid))
    r = md.run("inspect", cid)
    assert r.returncode != 0 and "No such container" in r.stderr


def test_docker_layout_of_a_container(md, images):
    cid = md.run("create", "busybox", "true", check=True).stdout.strip()
    try:
        cdir = os.path.join(md.root, "containers", cid)
        assert sorted(os.listdir(cdir)) == ["config.v2.json", "hostconfig.json", "hostname",
                                            "hosts", "resolv.conf"]
        cfg = json.load(open(os.path.join(cdir, "config.v2.json")))  # noqa: SIM115
        assert cfg["ID"] == cid and cfg["Driver"] == "overlay2"
        assert cfg["State"]["Status"] == "created"
        assert cfg["HostsPath"] == os.path.join(cdir, "hosts")
        mounts = os.path.join(md.root, "image", "overlay2", "layerdb", "mounts", cid)
        mount_id = open(os.path.join(mounts, "mount-id")).read()  # noqa: SIM115
        init_id = open(os.path.join(mounts, "init-id")).read()  # noqa: SIM115
        parent = open(os.path.join(mounts, "parent")).read()  # noqa: SIM115
        assert init_id == mount_id + "-init" and parent.startswith("sha256:")
        ov = os.path.join(md.root, "overlay2")
        for layer in (mount_id, init_id):
            assert {"diff", "link", "lower", "work"} <= set(os.listdir(os.path.join(ov, layer)))
        init_diff = os.path.join(ov, init_id, "diff")
        assert os.path.isfile(os.path.join(init_diff, ".dockerenv"))
        assert os.readlink(os.path.join(init_diff, "etc/mtab")) == "/proc/mounts"
    finally:
        md.run("rm", cid, check=True)


def test_copy_on_write_lands_in_the_upper_dir(md, images):
    cid = md.run("create", "busybox", "sh", "-c", "echo new > /etc/created-here; rm /bin/vi",
                 check=True).stdout.strip()
    try:
        assert md.run("start", "-a", cid).returncode == 0
        data = json.loads(md.run("inspect", cid).stdout)[0]["GraphDriver"]["Data"]
        upper = data["UpperDir"]
        assert open(os.path.join(upper, "etc/created-here")).read() == "new\n"  # noqa: SIM115
        wh = os.lstat(os.path.join(upper, "bin/vi"))
        assert os.major(wh.st_rdev) == 0 and os.minor(wh.st_rdev) == 0  # overlay whiteout
        lower_vi = [d for d in data["LowerDir"].split(":")
                    if os.path.lexists(os.path.join(d, "bin/vi"))]
        assert lower_vi  # still there in the image layer
    finally:
        md.run("rm", cid, check=True)


def test_rm_refuses_running_and_name_conflict(md, images):
    p = subprocess.Popen(md.argv("run", "--name", "busy1", "busybox", "sh", "-c",
                                 "echo ready; sleep 60"), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        r = md.run("rm", "busy1")
        assert r.returncode == 1 and "container is running" in r.stderr
        r = md.run("create", "--name", "busy1", "busybox")
        assert r.returncode == 125 and "is already in use" in r.stderr
        row = md.run("ps").stdout.splitlines()[1]
        assert "Up " in row and row.endswith("busy1")
        assert md.run("rm", "-f", "busy1").returncode == 0
        assert p.wait(timeout=30) == 137
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert md.run("ps", "-aq").stdout == ""


def test_failed_start_leaves_nothing_mounted(md, images):
    r = md.run("run", "--name", "fail1", "busybox", "nosuchcommand")
    assert r.returncode == 127
    doc = json.loads(md.run("inspect", "fail1").stdout)[0]
    assert doc["State"]["Status"] == "created" and doc["State"]["ExitCode"] == 127
    assert "executable file not found" in doc["State"]["Error"]
    assert mounts_under(md.root) == [] and mounts_under(md.run_root) == []
    assert os.listdir(os.path.join(md.run_root, "runtime")) == []
    md.run("rm", "fail1", check=True)
    r = md.run("run", "--rm", "busybox", "nosuchcommand")
    assert r.returncode == 127 and md.run("ps", "-aq").stdout == ""


def test_killed_cli_takes_the_container_with_it(md, images):
    p = subprocess.Popen(md.argv("run", "--rm", "--name", "orphan1", "busybox", "sh", "-c",
                                 "echo ready; sleep 100"), stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    doc = json.loads(md.run("inspect", "orphan1", check=True).stdout)[0]
    pid = doc["State"]["Pid"]
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}")), "container outlived its CLI"
    # the next command notices, records the exit and, as --rm asked, removes everything
    assert md.run("ps", "-aq").stdout == ""
    assert mounts_under(md.root) == []
    assert not any(os.path.isdir(os.path.join("/sys/fs/cgroup", c, "minidock", doc["Id"]))
                   for c in os.listdir("/sys/fs/cgroup"))


def test_killed_cli_without_rm_shows_exited(md, images):
    p = subprocess.Popen(md.argv("run", "--name", "orphan2", "busybox", "sh", "-c",
                                 "echo ready; sleep 100"), stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert wait_for(lambda: "Exited" in md.run("ps", "-a").stdout)
    doc = json.loads(md.run("inspect", "orphan2").stdout)[0]
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 255
    assert mounts_under(md.root) == []
    md.run("rm", "orphan2", check=True)


def test_container_prune(md, images):
    keep = subprocess.Popen(md.argv("run", "--name", "keeper", "busybox", "sh", "-c",
                                     "echo ready; sleep 60"), stdout=subprocess.PIPE, text=True)
    try:
        assert keep.stdout is not None and keep.stdout.readline() == "ready\n"
        a = md.run("create", "busybox", "true", check=True).stdout.strip()
        md.run("run", "--name", "done1", "busybox", "true", check=True)
        r = md.run("container", "prune", "-f", check=True)
        assert r.stdout.startswith("Deleted Containers:\n")
        assert a in r.stdout and "Total reclaimed space:" in r.stdout
        assert md.run("ps", "-aq").stdout.split() == [md.run("ps", "-q").stdout.strip()]
    finally:
        md.run("rm", "-f", "keeper")
        keep.wait(timeout=30)


def test_container_prune_filters(md, images):
    try:
        md.run("run", "--name", "pr-batch", "-l", "job=batch", "busybox", "sh", "-c",
               "head -c 12345 /dev/zero > /f", check=True)
        md.run("run", "--name", "pr-other", "-l", "job=other", "busybox", "true", check=True)
        r = md.run("container", "prune", "-f", "--filter", "label=job=batch", check=True)
        names = md.run("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert names == ["pr-other"], r.stdout
        # what its rw layer held, in docker/cli's units.HumanSize (4 significant digits)
        assert r.stdout.endswith("\n\nTotal reclaimed space: 12.35kB\n"), r.stdout
        # until: only containers created before then; an hour ago spares this one
        md.run("container", "prune", "-f", "--filter", "until=1h", check=True)
        assert md.run("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["pr-other"]
        md.run("container", "prune", "-f", "--filter", "until=0s", check=True)
        assert md.run("ps", "-aq").stdout == ""
        r = md.run("container", "prune", "-f", "--filter", "color=red")
        assert r.returncode == 125 and "invalid filter 'color'" in r.stderr
    finally:
        for n in ("pr-batch", "pr-other"):
            md.run("rm", "-f", n)


def test_info_and_version(md, images):
    r = md.run("info", check=True)
    assert " Storage Driver: overlay2" in r.stdout
    assert f" Minidock Root Dir: {md.root}" in r.stdout
    assert " Cgroup Version: " in r.stdout and " Kernel Version: " in r.stdout
    assert " Images: " in r.stdout
    assert md.run("version", check=True).stdout.startswith("Client:")


def test_foreground_run_is_logged_like_a_detached_one(md, images):
    r = md.run("run", "--name", "fg-log", "busybox", "sh", "-c",
               "echo out; echo err >&2; printf 'a<b>\\t'; printf partial")
    try:
        assert r.returncode == 0 and r.stdout == "out\na<b>\tpartial" and r.stderr == "err\n"
        cid = json.loads(md.run("inspect", "fg-log", check=True).stdout)[0]["Id"]
        with open(os.path.join(md.root, "containers", cid, f"{cid}-json.log")) as f:
            docs = [json.loads(line) for line in f]
        assert [d["stream"] for d in docs if d["stream"] == "stderr"] == ["stderr"]
        assert [d["log"] for d in docs if d["stream"] == "stdout"] == ["out\n", "a<b>\tpartial"]
        logs = md.run("logs", "fg-log", check=True)
        assert logs.stdout == r.stdout and logs.stderr == r.stderr
        with open(os.path.join(md.root, "containers", cid, f"{cid}-json.log")) as f:
            assert "\\u003cb\\u003e\\u0009" in f.read()  # moby's escaping
    finally:
        md.run("rm", "fg-log")


def test_ps_filters_last_and_latest(md, images):
    names = ["pf-created", "pf-zero", "pf-three", "pf-web"]
    try:
        md.run("create", "--name", "pf-created", "busybox", "true", check=True)
        md.run("run", "--name", "pf-zero", "-l", "tier=batch", "busybox", "true", check=True)
        md.run("run", "--name", "pf-three", "--label", "tier=batch", "busybox", "sh", "-c",
               "exit 3")
        md.run("run", "-d", "--name", "pf-web", "-l", "tier=front", "-l", "x", "busybox",
               "sleep", "1000", check=True)

        def ps(*args: str) -> list[str]:
            out = md.run("ps", "--format", "{{.Names}}", *args, check=True).stdout
            return out.split()

        assert ps() == ["pf-web"]
        assert ps("-a") == ["pf-web", "pf-three", "pf-zero", "pf-created"]  # newest first
        # a status filter looks at stopped containers without -a, as Docker's
        assert ps("-f", "status=exited") == ["pf-three", "pf-zero"]
        assert ps("-f", "status=exited", "-f", "status=created") == \
            ["pf-three", "pf-zero", "pf-created"]  # one key: OR
        assert ps("-f", "exited=3") == ["pf-three"]
        assert ps("-a", "-f", "label=tier=batch", "-f", "status=exited") == \
            ["pf-three", "pf-zero"]  # two keys: AND
        assert ps("-a", "-f", "label=x") == ["pf-web"]
        assert ps("-a", "-f", "name=^/pf-z") == ["pf-zero"]
        assert ps("-a", "-f", "name=web") == ["pf-web"]
        assert ps("-a", "-f", "ancestor=busybox") == ps("-a")
        assert ps("-a", "-f", "ancestor=no-such-image") == []
        assert ps("-a", "-f", "before=pf-three") == ["pf-zero", "pf-created"]
        assert ps("-a", "-f", "since=pf-zero") == ["pf-web", "pf-three"]
        cid = json.loads(md.run("inspect", "pf-zero", check=True).stdout)[0]["Id"]
        assert ps("-a", "-f", f"id={cid[:10]}") == ["pf-zero"]
        assert ps("-n", "2") == ["pf-web", "pf-three"]
        assert ps("-l") == ["pf-web"]
        assert md.run("ps", "-aq", "-f", "status=exited").stdout.split() == [
            json.loads(md.run("inspect", n, check=True).stdout)[0]["Id"][:12]
            for n in ("pf-three", "pf-zero")]
        for bad in ("status=sleeping", "exited=x", "color=red", "name=("):
            r = md.run("ps", "-f", bad)
            assert r.returncode == 125 and "filter" in r.stderr, (bad, r.stderr)
        labels = json.loads(md.run("inspect", "pf-web", check=True).stdout)[0]["Config"]["Labels"]
        assert labels == {"tier": "front", "x": ""}
    finally:
        for n in names:
            md.run("rm", "-f", n)


def test_ps_size(md, images):
    try:
        md.run("run", "--name", "sz", "busybox", "sh", "-c", "head -c 5000 /dev/zero > /big",
               check=True)
        out = md.run("ps", "-a", "-s", check=True).stdout.splitlines()
        assert out[0].split()[-1] == "SIZE"
        m = re.search(r"(\S+) \(virtual (\S+)\)$", out[1])
        assert m and m.group(1) == "5kB", out[1]  # what the container wrote
        image = json.loads(md.run("image", "inspect", "busybox", check=True).stdout)[0]["Size"]
        assert m.group(2).endswith("MB") and float(m.group(2)[:-2]) * 1e6 >= image * 0.99
        assert md.run("ps", "-a", "--format", "{{.Size}}", check=True).stdout.startswith("5kB")
    finally:
        md.run("rm", "sz")


def test_a_corrupt_record_is_named_and_the_rest_still_listed(md, images):
    good = md.run("create", "--name", "good", "busybox", "true", check=True).stdout.strip()
    bad = md.run("create", "--name", "bad", "busybox", "true", check=True).stdout.strip()
    record = os.path.join(md.root, "containers", bad, "config.v2.json")
    with open(record, "r+b") as f:  # a record cut short, as a full disk or an editor leaves it
        f.truncate(40)
    r = md.run("ps", "-a", "--format", "{{.Names}}")
    assert r.returncode == 0 and r.stdout == "good\n"
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"WARNING: container {bad[:12]} left out: container record "
                               f"{record}: "), r.stderr
    # (by name it is not found: the name was in the lost bytes)
    for argv in (["inspect", bad], ["start", bad[:12]], ["rm", bad]):
        r = md.run(*argv)
        assert r.returncode != 0 and "Traceback" not in r.stderr, (argv, r.stderr)
        assert record in r.stderr and r.stderr.count("\n") == 1, (argv, r.stderr)
    r = md.run("system", "check")
    assert r.returncode == 1 and record.rsplit("/", 1)[0] in r.stdout
    assert "unreadable record" in r.stdout
    # rm -f takes it away with what it held; the good one is untouched
    assert md.run("rm", "-f", bad, check=True).stdout == f"{bad}\n"
    assert not os.path.exists(os.path.dirname(record))
    assert md.run("system", "check", check=True).stdout == "No problems found.\n"
    assert md.run("ps", "-aq", "--no-trunc", check=True).stdout == f"{good}\n"
    md.run("rm", good, check=True)


def test_a_corrupt_runtime_state_is_named(md, images):
    cid = md.run("run", "-d", "busybox", "sleep", "100", check=True).stdout.strip()
    state = os.path.join(md.run_root, "runtime", cid, "state.json")
    with open(state, "rb") as f:
        saved = f.read()
    try:
        with open(state, "r+b") as f:
            f.truncate(10)
        for argv in (["exec", cid, "true"], ["top", cid]):
            r = md.run(*argv)
            assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
            assert r.stderr.count("\n") == 1 and f"runtime state {state}: " in r.stderr, \
                r.stderr
    finally:
        with open(state, "wb") as f:
            f.write(saved)
    md.run("rm", "-f", cid, check=True)
