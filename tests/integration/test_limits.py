"""Resource limits that bite, on whatever cgroup layout this host has (v1 here; the cgroup v2
guest runs this file too, scripts/test-cgroup-v2.sh): the OOM killer and State.OOMKilled,
--pids-limit against a fork loop, --cpus throttling in cpu.stat, `update` on a live
container, the cgroup files each flag writes, Docker's refusals and HostConfig, and many
parallel runs creating and removing cgroups under the shared /minidock parent."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import helpers
import pytest

from minidock.cgroups import detect_version

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

ROOT = "/sys/fs/cgroup"
HOG = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"


def cgroup_file(cid: str, controller: str, name: str) -> str:
    """A file of the container's cgroup: /sys/fs/cgroup/minidock/<id>/NAME on v2, the
    controller's hierarchy on v1."""
    if detect_version(ROOT) == 2:
        return os.path.join(ROOT, "minidock", cid, name)
    return os.path.join(ROOT, controller, "minidock", cid, name)


def read(cid: str, controller: str, name: str) -> str:
    with open(cgroup_file(cid, controller, name)) as f:
        return f.read().strip()


def host_config(md, cid: str) -> dict:
    return json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", cid, check=True).stdout)


def test_a_memory_hog_is_oom_killed_with_137_and_inspect_says_so(md, images):
    r = md.run("run", "--name", "hog", "--network", "none", "-m", "16m", "--memory-swap", "16m",
               "busybox", "sh", "-c", HOG, timeout=120)
    try:
        assert r.returncode == 137, r.stderr
        state = json.loads(md.run("inspect", "-f", "{{json .State}}", "hog", check=True).stdout)
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
    finally:
        md.run("rm", "-f", "hog")
    r = md.run("run", "--name", "calm", "--network", "none", "-m", "16m", "busybox", "true")
    try:
        assert r.returncode == 0
        assert md.run("inspect", "-f", "{{.State.OOMKilled}}", "calm").stdout.strip() == "false"
    finally:
        md.run("rm", "-f", "calm")


def test_pids_limit_stops_a_fork_loop(md, images, detached):
    cid = detached("--network", "none", "--pids-limit", "10", "busybox", "sleep", "300")
    assert read(cid, "pids", "pids.max") == "10"
    r = md.run("exec", cid, "sh", "-c",
               "for i in $(seq 30); do sleep 30 & done 2>&1; echo started", timeout=60)
    assert "can't fork" in r.stdout + r.stderr, r.stdout + r.stderr
    assert int(read(cid, "pids", "pids.current")) <= 10
    assert host_config(md, cid)["PidsLimit"] == 10


def test_cpus_is_a_cfs_quota_that_throttles(md, images, detached):
    cid = detached("--network", "none", "--cpus", "0.1", "busybox", "sh", "-c",
                   "while :; do :; done")
    if detect_version(ROOT) == 2:
        assert read(cid, "cpu", "cpu.max") == "10000 100000"
    else:
        assert read(cid, "cpu", "cpu.cfs_quota_us") == "10000"
        assert read(cid, "cpu", "cpu.cfs_period_us") == "100000"

    def throttled() -> int:
        stat = dict(line.split() for line in read(cid, "cpu", "cpu.stat").splitlines())
        return int(stat["nr_throttled"])

    assert helpers.wait_for(lambda: throttled() > 2, 10)
    assert host_config(md, cid)["NanoCpus"] == 100000000


def test_update_raises_limits_of_a_live_container(md, images, detached):
    cid = detached("--name", "upd", "--network", "none", "-m", "64m", "busybox", "sleep", "300")
    v2 = detect_version(ROOT) == 2
    memory_file = ("memory", "memory.max" if v2 else "memory.limit_in_bytes")
    assert read(cid, *memory_file) == str(64 << 20)
    r = md.run("update", "-m", "128m", "--memory-swap", "256m", "--pids-limit", "40",
               "--cpus", "0.5", "upd")
    assert r.returncode == 0 and r.stdout == "upd\n", r.stderr
    assert read(cid, *memory_file) == str(128 << 20)
    assert read(cid, "pids", "pids.max") == "40"
    if v2:
        assert read(cid, "memory", "memory.swap.max") in (str(128 << 20), "max")
        assert read(cid, "cpu", "cpu.max") == "50000 100000"
    else:
        assert read(cid, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
        assert read(cid, "cpu", "cpu.cfs_quota_us") == "50000"
    hc = host_config(md, cid)
    assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["NanoCpus"]) == (
        128 << 20, 256 << 20, 40, 500000000)
    usage = md.run("stats", "--no-stream", "--format", "{{.MemUsage}}", cid,
                   check=True).stdout.strip()
    assert usage.endswith("/ 128MiB"), usage
    # Docker's rule: a memory limit above the swap limit needs the swap limit too
    r = md.run("update", "-m", "512m", "upd")
    assert r.returncode == 1 and r.stderr.strip() == (
        f"Error response from daemon: Cannot update container {cid}: Memory limit should be "
        "smaller than already set memoryswap limit, update the memoryswap at the same time")
    assert read(cid, *memory_file) == str(128 << 20)


def test_update_of_a_stopped_container_takes_effect_at_its_start(md, images):
    cid = md.run("create", "--network", "none", "busybox", "sleep", "300",
                 check=True).stdout.strip()
    try:
        assert md.run("update", "--pids-limit", "25", cid).returncode == 0
        md.run("start", cid, check=True)
        assert read(cid, "pids", "pids.max") == "25"
    finally:
        md.run("rm", "-f", cid)


def _a_disk() -> tuple[str, str]:
    """(/dev path, major:minor) of a whole block device of this machine."""
    for name in sorted(os.listdir("/sys/block")):
        dev = f"/dev/{name}"
        if os.path.exists(dev) and not name.startswith(("ram", "zram")):
            with open(f"/sys/block/{name}/dev") as f:
                return dev, f.read().strip()
    raise AssertionError("no block device in /sys/block")


def test_each_flag_writes_its_cgroup_file(md, images, detached):
    dev, numbers = _a_disk()
    cid = detached("--network", "none", "--cpu-shares", "512", "--memory-reservation", "32m",
                   "--cpuset-cpus", "0", "--device-write-bps", f"{dev}:1mb",
                   "--device-read-bps", f"{dev}:2mb", "busybox", "sleep", "300")
    assert read(cid, "cpuset", "cpuset.cpus") == "0"
    if detect_version(ROOT) == 2:
        assert read(cid, "cpu", "cpu.weight") == "20"  # runc's conversion of 512 shares
        assert read(cid, "memory", "memory.low") == str(32 << 20)
        assert f"{numbers} rbps=2097152 wbps=1048576" in read(cid, "io", "io.max")
    else:
        assert read(cid, "cpu", "cpu.shares") == "512"
        assert read(cid, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
        assert read(cid, "blkio", "blkio.throttle.write_bps_device") == f"{numbers} 1048576"
        assert read(cid, "blkio", "blkio.throttle.read_bps_device") == f"{numbers} 2097152"
    hc = host_config(md, cid)
    assert hc["BlkioDeviceWriteBps"] == [{"Path": dev, "Rate": 1048576}]
    assert (hc["CpuShares"], hc["MemoryReservation"], hc["CpusetCpus"]) == (512, 32 << 20, "0")


def test_swappiness_and_oom_kill_disable_on_v1_are_dropped_on_v2(md, images):
    """v1 has memory.swappiness and memory.oom_control; v2 has neither: Docker drops the
    values with its warnings there."""
    r = md.run("run", "-d", "--network", "none", "-m", "64m", "--memory-swappiness", "10",
               "--oom-kill-disable", "busybox", "sleep", "300", check=True)
    cid = r.stdout.strip()
    try:
        hc = host_config(md, cid)
        if detect_version(ROOT) == 2:
            assert "Memory swappiness discarded." in r.stderr
            assert "OomKillDisable discarded." in r.stderr
            assert (hc["MemorySwappiness"], hc["OomKillDisable"]) == (None, False)
        else:
            assert read(cid, "memory", "memory.swappiness") == "10"
            control = read(cid, "memory", "memory.oom_control").split()
            assert control[:2] == ["oom_kill_disable", "1"]
            assert (hc["MemorySwappiness"], hc["OomKillDisable"]) == (10, True)
    finally:
        md.run("rm", "-f", cid)


def test_hostconfig_and_refusals_as_dockers(md, images):
    cid = md.run("create", "--network", "none", "-m", "512m", "busybox", "true",
                 check=True).stdout.strip()
    try:
        hc = host_config(md, cid)
        assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["OomKillDisable"]) == (
            512 << 20, 1 << 30, None, False)
        assert hc["BlkioDeviceReadBps"] == [] and hc["MemorySwappiness"] is None
    finally:
        md.run("rm", "-f", cid)
    r = md.run("run", "--rm", "--network", "none", "-m", "4m", "busybox", "true")
    assert r.returncode == 125 and "Minimum memory limit allowed is 6MB" in r.stderr
    r = md.run("run", "--rm", "--network", "none", "--memory", "abc", "busybox", "true")
    assert r.returncode == 125 and \
        'invalid argument "abc" for "-m, --memory" flag: invalid size: \'abc\'' in r.stderr
    r = md.run("update", "busybox-nope")
    assert r.returncode == 1 and r.stderr.strip() == \
        "you must provide one or more flags when using this command"
    r = md.run("update", "--pids-limit", "5", "nosuch")
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr
    assert md.run("ps", "-aq").stdout == ""


def test_parallel_runs_share_the_minidock_parent_cgroup(md, images):
    """20 callers, 10 runs each: cgroups made and removed under /minidock all the while.
    (When the last container removed the parent, a create at that moment got ENODEV.)"""
    def caller(_: int) -> list[str]:
        failures = []
        for _ in range(10):
            r = md.run("run", "--rm", "--network", "none", "busybox", "true", timeout=120)
            if r.returncode != 0:
                failures.append(r.stderr.strip())
        return failures

    with ThreadPoolExecutor(20) as pool:
        failures = [f for batch in pool.map(caller, range(20)) for f in batch]
    assert failures == [], failures[:5]
