"""Crashes and concurrency: a CLI killed at any moment, a host reboot, 20 calls at once, and
``system check [--repair]`` finding and mending what they leave."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import container_cgroups
from helpers import freezer_says_frozen, monitor_of, processes_of, wait_for

from minidock.image.store import ImageStore
from minidock.paths import Paths

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


def all_ids(md) -> list[str]:
    return md.run("ps", "-aq", "--no-trunc", check=True).stdout.split()


def inspect_all(md) -> list[dict]:
    ids = all_ids(md)
    if not ids:
        return []
    return json.loads(md.run("inspect", *ids, check=True).stdout)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def assert_truthful(md) -> None:
    """What ps/inspect say matches the host: a container said to run has its init alive
    and its cgroup; one said not to run has no process, cgroup, runtime state or bundle."""
    docs = inspect_all(md)  # (ps and inspect make the records true first)
    cgroups = container_cgroups()
    for doc in docs:
        cid, st = doc["Id"], doc["State"]
        mine = [d for d in cgroups if d.endswith("/" + cid)]
        if st["Running"]:
            assert alive(st["Pid"]), (cid, st)
            assert mine, f"{cid} runs without a cgroup"
        else:
            assert st["Pid"] == 0, st
            assert not mine, mine
            assert not os.path.exists(os.path.join(md.run_root, "runtime", cid))
            assert not os.path.exists(os.path.join(md.run_root, "bundles", cid))
            merged = doc["GraphDriver"]["Data"]["MergedDir"]
            assert not os.path.ismount(merged), merged


def check(md) -> subprocess.CompletedProcess:
    return md.run("system", "check")


@pytest.fixture
def cleanup_all(md):
    yield
    for cid in all_ids(md):
        md.run("rm", "-f", cid)
    for cid in all_ids(md):
        assert wait_for(lambda c=cid: not processes_of(c), 10)


def test_system_check_is_clean_on_a_healthy_root(md, detached):
    detached("busybox", "sleep", "1000")
    r = check(md)
    assert r.returncode == 0 and r.stdout == "No problems found.\n", r.stdout


def test_system_check_reports_and_repairs_a_killed_monitor(md, images, cleanup_all):
    cid = md.run("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
    init = json.loads(md.run("inspect", cid, check=True).stdout)[0]["State"]["Pid"]
    os.kill(monitor_of(cid), signal.SIGKILL)
    assert wait_for(lambda: not [p for p, c in processes_of(cid).items()
                                 if "minidock-monitor" in c])
    r = check(md)  # looks, changes nothing: the init still runs
    assert r.returncode == 1, r.stdout
    kinds = {line.split()[0] for line in r.stdout.splitlines()[1:-1]}
    assert kinds == {"CONTAINER", "MOUNT", "STATE", "BUNDLE"}, r.stdout
    assert "no monitor watches it" in r.stdout and f"host pid {init}" in r.stdout
    assert alive(init)
    r = md.run("system", "check", "--repair")
    assert r.returncode == 0 and r.stdout.endswith("Repaired; 0 problem(s) left.\n"), r.stdout
    assert not alive(init)
    assert "Exited (255)" in md.run("ps", "-a").stdout
    assert_truthful(md)
    assert check(md).returncode == 0


def test_system_check_repairs_store_debris(md, images, cleanup_all):
    """What a kill -9 in mid-pull or mid-create leaves: an overlay2 dir nothing names, a
    staging file, a layer no image uses, a container directory without its record."""
    store = os.path.join(md.root, "image", "overlay2", "layerdb")
    orphan = os.path.join(md.root, "overlay2", "ab" * 32)
    os.makedirs(os.path.join(orphan, "diff"))
    with open(os.path.join(store, "tmp", "staging-1"), "w") as f:
        f.write("half")
    # a layer a pull registered before it was killed, with no image made on it yet
    layers = ImageStore(Paths(md.root, md.run_root))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("unused-file")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"data"))
    buf.seek(0)
    unused = os.path.join(store, "sha256", layers.register_layer(buf).chain_id[7:])
    half = os.path.join(md.root, "containers", "cd" * 32)
    os.makedirs(half)
    # the per-boot leftovers of a container that no longer exists: its locks and socket
    lock = os.path.join(md.run_root, "locks", "ee" * 32 + ".monitor")
    sock = os.path.join(md.run_root, "attach", "ee" * 32 + ".sock")
    for path in (lock, sock):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    r = check(md)
    assert r.returncode == 1
    assert "layer no image or container uses" in r.stdout
    assert "lock file of a container that does not exist" in r.stdout
    assert "attach socket without a monitor" in r.stdout
    for path in (orphan, os.path.join(store, "tmp", "staging-1"), half, unused, lock, sock):
        assert path in r.stdout, r.stdout
    r = md.run("system", "check", "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    for path in (orphan, os.path.join(store, "tmp", "staging-1"), half, unused, lock, sock):
        assert not os.path.exists(path)
    assert check(md).returncode == 0
    # the images are untouched
    assert md.run("run", "--rm", "busybox", "true").returncode == 0


def simulate_reboot(md, cids: list[str]) -> None:
    """What a host reboot does to minidock: every process gone, nothing mounted, no cgroup,
    and the per-boot run root (tmpfs /run) empty. The data root stays."""
    for cid in cids:
        for pid in processes_of(cid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the monitors
    for d in sorted(container_cgroups()):
        if os.path.basename(d) not in cids:
            continue
        with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
            for pid in f.read().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            with contextlib.suppress(OSError), open(os.path.join(d, name), "w") as f:
                f.write(value)  # a frozen task dies only once it runs (v1)
    for d in sorted(container_cgroups()):
        if os.path.basename(d) in cids:
            assert wait_for(lambda d=d: _rmdir(d), 10), d
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4] for ln in f if ln.split()[4].startswith(md.root + "/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=True)
    subprocess.run(["rm", "-rf", md.run_root], check=True)
    os.makedirs(md.run_root)


def _rmdir(d: str) -> bool:
    try:
        os.rmdir(d)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def test_host_reboot_leaves_a_truthful_ps_and_rm_still_cleans_up(md, images, cleanup_all):
    running = md.run("run", "-d", "--name", "rb-run", "busybox", "sleep", "1000",
                     check=True).stdout.strip()
    paused = md.run("run", "-d", "--name", "rb-paused", "busybox", "sleep", "1000",
                    check=True).stdout.strip()
    md.run("pause", paused, check=True)
    md.run("create", "--name", "rb-created", "busybox", "true", check=True)
    md.run("run", "--name", "rb-exited", "busybox", "sh", "-c", "exit 3")
    simulate_reboot(md, [running, paused])
    # before anyone looks, the records still say running: check names them
    r = check(md)
    assert r.returncode == 1 and r.stdout.count("no monitor watches it") == 2, r.stdout
    ps = {ln.split()[-1]: ln for ln in md.run("ps", "-a", check=True).stdout.splitlines()[1:]}
    assert "Exited (255)" in ps["rb-run"] and "Exited (255)" in ps["rb-paused"], ps
    assert "Created" in ps["rb-created"] and "Exited (3)" in ps["rb-exited"], ps
    assert md.run("ps", "-q").stdout == ""
    assert_truthful(md)
    assert check(md).returncode == 0
    # the containers start again after the reboot, and rm removes every trace
    md.run("start", "rb-run", check=True)
    assert json.loads(md.run("inspect", "rb-run", check=True).stdout)[0]["State"]["Running"]
    for name in ("rb-run", "rb-paused", "rb-created", "rb-exited"):
        md.run("rm", "-f", name, check=True)
    assert not os.listdir(os.path.join(md.root, "containers"))
    assert not os.listdir(os.path.join(md.root, "image", "overlay2", "layerdb", "mounts"))
    assert check(md).returncode == 0


# Where a CLI may die: before, during and after create, mount, runtime create/start, the
# bridge's setup (the helper's lease, nft table, netns entry, veth: its pdeathsig ends it
# with the CLI) and the record's updates. Fixed delays, spread over the ~150 ms a run takes.
KILL_DELAYS = (0.0, 0.03, 0.06, 0.09, 0.12, 0.15, 0.2, 0.3, 0.5)


@pytest.mark.parametrize("command", [
    ("run", "busybox", "sleep", "1000"),
    ("run", "-d", "busybox", "sleep", "1000"),
    ("run", "-p", "80", "busybox", "sleep", "1000"),
    ("run", "-d", "-p", "80", "busybox", "sleep", "1000"),
    ("create", "busybox", "true"),
])
def test_cli_killed_at_any_moment(md, images, cleanup_all, command):
    for delay in KILL_DELAYS:
        p = subprocess.Popen(md.argv(*command), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait()
    time.sleep(0.5)  # let a monitor that was already forked get its container going
    assert_truthful(md)
    repair_then_remove_all(md)
    assert check(md).returncode == 0


def repair_then_remove_all(md) -> None:
    """`system check --repair` mends what the kills left; then ps/inspect are truthful, a
    second check finds nothing, and every container left can be removed."""
    r = md.run("system", "check", "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_truthful(md)
    assert check(md).returncode == 0
    for cid in all_ids(md):
        md.run("rm", "-f", cid, check=True)
    bridge = Path("/run/minidock-network/bridge.json")
    if bridge.exists():  # the bridge holds nothing for containers that are gone
        doc = json.loads(bridge.read_text())
        assert not doc.get("leases") and not doc.get("ports"), doc
    assert not [n for n in os.listdir("/run/netns") if n.startswith("md-")] \
        if os.path.isdir("/run/netns") else True


def test_pause_and_unpause_killed_at_any_moment(md, detached):
    cid = detached("busybox", "sleep", "1000")
    for delay in KILL_DELAYS:
        for verb in ("pause", "unpause"):
            p = subprocess.Popen(md.argv(verb, cid), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(delay)
            p.kill()
            p.wait()
            st = json.loads(md.run("inspect", cid, check=True).stdout)[0]["State"]
            # never a frozen container said to run (the other way round, unpause mends)
            if freezer_says_frozen(cid):
                assert st["Status"] == "paused", (verb, delay, st)
            assert st["Running"]
    if json.loads(md.run("inspect", cid, check=True).stdout)[0]["State"]["Paused"]:
        md.run("unpause", cid, check=True)
    assert not freezer_says_frozen(cid)
    assert json.loads(md.run("inspect", cid, check=True).stdout)[0]["State"]["Status"] == \
        "running"
    assert check(md).returncode == 0


def test_rm_killed_then_rm_again(md, images, cleanup_all):
    for delay in KILL_DELAYS:
        cid = md.run("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
        p = subprocess.Popen(md.argv("rm", "-f", cid), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait()
        md.run("rm", "-f", cid)  # finishes the job (or finds it done)
        assert cid not in all_ids(md)
        assert wait_for(lambda cid=cid: not processes_of(cid), 10)
    assert check(md).returncode == 0, check(md).stdout


def test_rm_finishes_a_removal_killed_after_the_rw_layer_went(md, images, cleanup_all):
    """An rm killed between deleting the rw layer and deleting the record (the window the
    timing loop above hits only now and then under load): the next rm must finish the job,
    not stop at "no rw layer"."""
    cid = md.run("create", "busybox", check=True).stdout.strip()
    ImageStore(Paths(root=md.root, run_root=md.run_root)).remove_rw_layer(cid)
    r = md.run("rm", "-f", cid)
    assert (r.returncode, r.stderr) == (0, ""), r
    assert cid not in all_ids(md)
    assert check(md).returncode == 0, check(md).stdout


def test_rm_of_a_removed_container_takes_its_left_lock_files(md, images, cleanup_all):
    """An rm killed after the record went (but before its lock files did): rm -f of that id
    says there is no such container, as Docker, and takes the lock files away."""
    cid = md.run("create", "busybox", check=True).stdout.strip()
    md.run("rm", cid, check=True)
    locks = [os.path.join(md.run_root, "locks", f"{cid}{suffix}")
             for suffix in (".lock", ".monitor")]
    for path in locks:
        open(path, "w").close()
    assert check(md).returncode != 0  # system check sees them
    r = md.run("rm", "-f", cid)
    assert r.returncode == 1 and f"No such container: {cid}" in r.stderr
    assert not any(os.path.exists(p) for p in locks)
    assert check(md).returncode == 0, check(md).stdout


def test_twenty_parallel_calls(md, images, cleanup_all):
    pre = [md.run("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
           for _ in range(6)]
    calls = (
        [("run", "-d", "busybox", "sleep", "1000")] * 5
        + [("run", "--rm", "busybox", "true")] * 2
        + [("ps", "-a")] * 3
        + [("stop", "-t", "0", pre[0]), ("stop", "-t", "0", pre[1])]
        + [("rm", "-f", pre[2]), ("rm", "-f", pre[3])]
        + [("exec", pre[4], "true")] * 3
        + [("inspect", pre[5]), ("create", "busybox"), ("images",)]
    )
    assert len(calls) == 20
    procs = [subprocess.Popen(md.argv(*c), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in calls]
    results = [(c, p.communicate(timeout=120), p.returncode)
               for c, p in zip(calls, procs, strict=True)]
    for c, (_out, err), code in results:
        assert code == 0, f"{c}: exit {code}: {err}"
    new = [out.strip() for c, (out, _), _ in results if c[:2] == ("run", "-d")]
    ids = all_ids(md)
    assert set(new) <= set(ids) and pre[2] not in ids and pre[3] not in ids
    docs = inspect_all(md)
    names = [d["Name"] for d in docs]
    assert len(names) == len(set(names)), names
    states = {d["Id"]: d["State"] for d in docs}
    assert not states[pre[0]]["Running"] and not states[pre[1]]["Running"]
    assert all(states[cid]["Running"] for cid in [*new, pre[4], pre[5]])
    assert_truthful(md)
    assert check(md).returncode == 0, check(md).stdout


def _cgroup_parent() -> str:
    """Where this host keeps container cgroups: one v1 hierarchy, or the v2 tree."""
    v1 = "/sys/fs/cgroup/pids"
    return os.path.join(v1 if os.path.isdir(v1) else "/sys/fs/cgroup", "minidock")


def test_system_check_repairs_leftover_cgroups(md, images, cleanup_all):
    cid = md.run("create", "busybox", "true", check=True).stdout.strip()
    parent = _cgroup_parent()
    os.makedirs(parent, exist_ok=True)
    mine = os.path.join(parent, cid)  # a cgroup of a container that does not run
    stranger = os.path.join(parent, "ef" * 32)  # nobody's, empty, old
    young = os.path.join(parent, "12" * 32)  # nobody's, empty, just made: maybe being created
    try:
        for d in (mine, stranger, young):
            os.mkdir(d)
        os.utime(stranger, (time.time() - 3600, time.time() - 3600))
        r = check(md)
        assert r.returncode == 1
        assert f"container {cid[:12]} is not running" in r.stdout
        assert stranger in r.stdout and "empty, and no container of this root" in r.stdout
        assert young not in r.stdout
        r = md.run("system", "check", "--repair")
        assert r.returncode == 0, r.stdout + r.stderr
        assert not os.path.exists(mine) and not os.path.exists(stranger)
        assert os.path.isdir(young)
    finally:
        for d in (mine, stranger, young):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def test_build_killed_at_any_moment(md, images, cleanup_all, tmp_path):
    """A build SIGKILLed in a COPY (its scratch rw layer mounted) or a RUN (its container
    running): `system check --repair` finds and removes what it left, and the next build
    works."""
    (tmp_path / "big").write_bytes(os.urandom(1 << 20) * 48)
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY big /big\nRUN echo started; "
                                         "sleep 1000\n")
    store = ImageStore(Paths(md.root, md.run_root))
    for delay in (*KILL_DELAYS, 0.8, 1.2):
        p = subprocess.Popen(md.argv("build", "--no-cache", tmp_path), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if delay == 1.2:  # for sure inside the RUN step
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith("started"):
                    break
        else:
            time.sleep(delay)
        p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()
    repair_then_remove_all(md)
    # no rw layer is left without its container, nothing stays mounted
    assert set(store.list_rw_layers()) == set(all_ids(md)) == set()
    assert os.listdir(os.path.join(md.run_root, "builds")) == []  # the builds' own files
    assert md.root not in Path("/proc/self/mountinfo").read_text()
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY big /big\n")
    r = md.run("build", "-q", tmp_path, check=True)
    md.run("rmi", r.stdout.strip(), check=True)
    assert check(md).returncode == 0
