"""What a container shares and its process limits: --pid/--ipc/--uts host and container:X,
--shm-size, --ulimit (never above this host's hard limit: no CAP_SYS_RESOURCE here),
--sysctl (namespaced keys only, Docker's refusals), --group-add; checked from inside."""

from __future__ import annotations

import json
import os
import resource
import socket

import helpers
import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


def inside(md, *args: str) -> str:
    return md.run("run", "--rm", "--network", "none", *args, check=True).stdout


def test_pid_ipc_and_uts_of_the_host(md, images):
    assert int(inside(md, "--pid", "host", "busybox", "sh", "-c", "ps -o pid | wc -l")) > 10
    assert inside(md, "--uts", "host", "busybox", "hostname").strip() == socket.gethostname()
    with open("/proc/self/mounts") as f:
        host_shm = next(line for line in f if " /dev/shm " in line)
    assert inside(md, "--ipc", "host", "busybox", "grep", " /dev/shm ",
                  "/proc/mounts") == host_shm  # the host's own, bound in
    own_ns = os.readlink("/proc/self/ns/ipc")
    assert inside(md, "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc").strip() == \
        own_ns
    r = md.run("run", "--rm", "--uts", "host", "-h", "x", "busybox", "true")
    assert r.returncode == 125 and "Conflicting options: hostname and the UTS mode" in r.stderr
    r = md.run("run", "--rm", "--pid", "bogus", "busybox", "true")
    assert r.returncode == 125 and "--pid: invalid PID mode" in r.stderr


def test_joining_another_containers_pid_and_ipc(md, images, detached):
    cid = detached("--name", "sharer", "--network", "none", "--ipc", "shareable",
                   "--shm-size", "32m", "busybox", "sh", "-c",
                   "echo from-the-donor > /dev/shm/note; sleep 300")
    md.run("exec", cid, "sh", "-c", "while [ ! -s /dev/shm/note ]; do sleep 0.05; done",
           check=True)
    out = inside(md, "--pid", "container:sharer", "--ipc", "container:sharer", "busybox",
                 "sh", "-c", "ps -o comm; cat /dev/shm/note; grep ' /dev/shm ' /proc/mounts; "
                 "readlink /proc/self/ns/ipc")
    pid = md.run("inspect", "-f", "{{.State.Pid}}", cid, check=True).stdout.strip()
    assert "sleep" in out.split() and out.split()[-1] == os.readlink(f"/proc/{pid}/ns/ipc")
    assert "from-the-donor" in out and "size=32768k" in out  # the donor's own /dev/shm
    shm = os.path.join(md.root, "containers", cid, "mounts", "shm")  # Docker's place for it
    assert os.path.ismount(shm) and os.path.exists(os.path.join(shm, "note"))
    plain = detached("--network", "none", "busybox", "sleep", "300")
    r = md.run("run", "--rm", "--network", "none", "--ipc", f"container:{plain}", "busybox",
               "true")
    assert r.returncode == 125 and f"can't join IPC of container {plain}: non-shareable IPC " \
        "(hint: use IpcMode:shareable for the donor container)" in r.stderr
    hc = json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", cid, check=True).stdout)
    assert hc["IpcMode"] == "shareable"
    md.run("stop", "-t", "0", cid)
    assert not os.path.exists(shm)  # unmounted and removed with the run
    r = md.run("run", "--rm", "--network", "none", "--pid", "container:sharer", "busybox",
               "true")
    assert r.returncode == 125 and \
        f"cannot join PID of a non running container: {cid}" in r.stderr


def test_ipc_none_and_a_private_cgroup_namespace(md, images):
    own = os.readlink("/proc/self/ns/ipc")
    out = inside(md, "--ipc", "none", "busybox", "sh", "-c",
                 "grep -c ' /dev/shm ' /proc/mounts; readlink /proc/self/ns/ipc").split()
    assert out[0] == "0" and out[1] != own  # its own IPC namespace, and no /dev/shm (Docker)
    host_ns = os.readlink("/proc/self/ns/cgroup")
    private = inside(md, "--cgroupns", "private", "busybox", "sh", "-c",
                     "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup").split()
    assert private[0] != host_ns
    assert all(line.endswith(":/") for line in private[1:])  # its cgroup is its root
    shared = inside(md, "--cgroupns", "host", "busybox", "sh", "-c",
                    "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup").split()
    assert shared[0] == host_ns
    assert all("/minidock/" in line for line in shared[1:] if not line.startswith("0::"))
    r = md.run("run", "--rm", "--cgroupns", "bogus", "busybox", "true")
    assert r.returncode == 125 and "--cgroupns: invalid CGROUP mode" in r.stderr


def test_exec_gets_the_added_groups_too(md, images, detached):
    cid = detached("--network", "none", "--group-add", "10", "busybox", "sleep", "300")
    assert md.run("exec", cid, "id", "-G", check=True).stdout.split() == ["0", "10"]
    assert "10" in md.run("exec", "-u", "1000", cid, "id", "-G", check=True).stdout.split()


def test_ulimits_shm_size_and_groups(md, images):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(512, hard)
    out = inside(md, "--ulimit", f"nofile={low // 2}:{low}", "--shm-size", "128m",
                 "--group-add", "10", "--group-add", "users", "busybox", "sh", "-c",
                 "ulimit -n; ulimit -Hn; grep ' /dev/shm ' /proc/mounts; id -G")
    lines = out.splitlines()
    assert lines[:2] == [str(low // 2), str(low)]
    assert "size=131072k" in lines[2] and lines[3].split() == ["0", "10", "100"]
    r = md.run("run", "--rm", "--network", "none", "--ulimit", f"nofile=100:{hard + 1}",
               "busybox", "true")
    assert r.returncode == 125 and "setrlimit RLIMIT_NOFILE" in r.stderr and \
        "CAP_SYS_RESOURCE" in r.stderr
    r = md.run("run", "--rm", "--ulimit", "nofile=10:5", "busybox", "true")
    assert r.returncode == 125 and "ulimit soft limit must be less than or equal to hard " \
        "limit: 10 > 5" in r.stderr
    cid = md.run("create", "--ulimit", "nofile=100:200", "busybox", "true",
                 check=True).stdout.strip()
    try:
        hc = json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", cid,
                               check=True).stdout)
        assert hc["Ulimits"] == [{"Name": "nofile", "Hard": 200, "Soft": 100}]
    finally:
        md.run("rm", "-f", cid)


def test_namespaced_sysctls_only(md, images):
    out = inside(md, "--sysctl", "kernel.shmmax=1000000", "--sysctl",
                 "net.ipv4.ip_unprivileged_port_start=80", "busybox", "cat",
                 "/proc/sys/kernel/shmmax", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert out.split() == ["1000000", "80"]
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read().strip() != "1000000"  # the host's own is untouched
    r = md.run("run", "--rm", "--sysctl", "vm.swappiness=1", "busybox", "true")
    assert r.returncode == 125 and "sysctl 'vm.swappiness=1' is not whitelisted" in r.stderr
    r = md.run("run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1",
               "busybox", "true")
    assert r.returncode == 125 and \
        'sysctl "net.ipv4.ip_forward" not allowed in host network namespace' in r.stderr
    assert md.run("ps", "-aq").stdout == ""


def test_init_is_pid_1_reaps_orphans_and_passes_signals_on(md, images, detached):
    r = md.run("run", "--rm", "--network", "none", "--init", "busybox", "sh", "-c",
               "ps -o pid,args | sed -n 2p; exit 3")
    assert r.returncode == 3 and r.stdout.split()[:3] == ["1", "/sbin/docker-init", "--"]
    orphans = "(sleep 0.2 &); exec sleep 300"  # PID 1's orphan ends: a zombie unless reaped
    plain = detached("--network", "none", "busybox", "sh", "-c", orphans)
    with_init = detached("--network", "none", "--init", "busybox", "sh", "-c", orphans)

    def zombies(cid: str) -> int:
        out = md.run("exec", cid, "ps", "-o", "stat", check=True).stdout
        return sum(line.startswith("Z") for line in out.splitlines())

    assert helpers.wait_for(lambda: zombies(plain) == 1, 10)
    assert zombies(with_init) == 0
    md.run("stop", with_init, check=True)  # SIGTERM reaches sleep, which is not PID 1 here
    state = json.loads(md.run("inspect", "-f", "{{json .State}}", with_init, check=True).stdout)
    assert state["ExitCode"] == 143
    assert md.run("inspect", "-f", "{{.HostConfig.Init}}", with_init).stdout.strip() == "true"
