"""--userns remap and config.json's userns-remap: the container's root is an unprivileged host
uid (dockremap's range in /etc/subuid), the rootfs is seen through idmapped layers so disk keeps
the container's ids, and what the container could reach as root on the host it no longer can.
Checked from inside and from the host."""

from __future__ import annotations

import json
import os
import pwd
import subprocess

import helpers
import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.idmap]


def _dockremap_exists() -> bool:
    try:
        pwd.getpwnam("dockremap")
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module", autouse=True)
def dockremap():
    """``default`` makes the dockremap user and its ranges, as Docker does; a user the tests
    made goes again (with its group and its /etc/subuid and /etc/subgid lines)."""
    existed = _dockremap_exists()
    yield
    if existed or not _dockremap_exists():
        return
    subprocess.run(["userdel", "dockremap"], capture_output=True, check=False)
    subprocess.run(["groupdel", "dockremap"], capture_output=True, check=False)
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            lines = f.readlines()
        kept = [line for line in lines if not line.startswith("dockremap:")]
        if kept != lines:
            with open(path, "w") as f:
                f.writelines(kept)


def _range_start(path: str = "/etc/subuid") -> int:
    with open(path) as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == "dockremap":
                return int(start)
    raise AssertionError(f"no dockremap range in {path}")


def _pidns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_container_root_is_an_unprivileged_host_uid(md, images, detached):
    cid = detached("--userns", "remap", "--network", "none", "busybox", "sleep", "300")
    start, gstart = _range_start(), _range_start("/etc/subgid")
    with open("/etc/subuid") as f:
        assert f"dockremap:{start}:65536\n" in f.read()
    pid = int(md.run("inspect", "-f", "{{.State.Pid}}", cid, check=True).stdout)
    status = _status(pid)
    assert status["Uid"].split() == [str(start)] * 4
    assert status["Gid"].split() == [str(gstart)] * 4
    assert md.run("inspect", "-f", "{{.HostConfig.UsernsMode}}", cid,
                  check=True).stdout.strip() == "remap"
    out = md.run("exec", cid, "sh", "-c",
                 "id -u; cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g' / /bin/sh "
                 "/etc/hosts; grep CapEff /proc/self/status", check=True).stdout.split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(start), "65536"]
    assert out[2].split() == ["0", str(gstart), "65536"]
    assert out[3:6] == ["0:0"] * 3  # the image's root files and the hosts file: its own root
    assert out[6].split()[1] == "00000000a80425fb"  # Docker's default set, in its namespace
    exec_pid = md.run("exec", "-d", cid, "sleep", "200", check=True)
    assert exec_pid.returncode == 0
    pidns = os.readlink(f"/proc/{pid}/ns/pid")
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pidns(p) == pidns]
    assert len(members) == 2  # the sleep and the exec'd one
    assert {_status(p)["Uid"].split()[0] for p in members} == {str(start)}


def test_what_root_may_do_inside_and_what_it_may_not(md, images, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    (secret / "key").write_text("host root only\n")
    os.chmod(secret / "key", 0o600)
    r = md.run("run", "--rm", "--userns", "remap", "--network", "none",
               "-v", f"{secret}:/host", "busybox", "sh", "-c",
               "echo x > /etc/hosts && echo hosts-ok; "
               "touch /made && chown 1234:55 /made && stat -c %u:%g /made; "
               "cat /host/key || echo key-denied; stat -c host-dir=%u:%g /host; "
               "mknod /tmp/mem c 1 1 2>&1 || echo mknod-denied; "
               "mount -t tmpfs t /mnt 2>&1 || echo mount-denied; "
               "ls -ln /dev/null", check=True)
    out = r.stdout
    assert "hosts-ok" in out and "1234:55" in out
    assert "key-denied" in out and "host root only" not in out
    assert "host-dir=65534:65534" in out  # a -v host dir: the host's owner, unmapped
    assert "mknod-denied" in out and "mount-denied" in out
    assert "crw-rw-rw-" in out  # the host's /dev/null, bound in (mknod is refused)


def test_disk_keeps_the_containers_ids_so_commit_and_cp_need_no_translation(
        md, images, detached, tmp_path):
    cid = detached("--userns", "remap", "--network", "none", "-w", "/work", "-v",
                   "remapvol:/data", "busybox", "sh", "-c",
                   "touch /data/v /work/w && chown 7:8 /work/w && sleep 300")
    upper = md.run("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", cid,
                   check=True).stdout.strip()
    for _ in range(100):
        if os.path.exists(os.path.join(upper, "work", "w")) and \
                os.stat(os.path.join(upper, "work", "w")).st_uid == 7:
            break
        subprocess.run(["sleep", "0.05"], check=True)
    st = os.stat(os.path.join(upper, "work", "w"))
    assert (st.st_uid, st.st_gid) == (7, 8)
    assert os.stat(os.path.join(upper, "work")).st_uid == 0  # -w made as the container's root
    vol = json.loads(md.run("volume", "inspect", "remapvol", check=True).stdout)[0]
    assert os.stat(os.path.join(vol["Mountpoint"], "v")).st_uid == 0
    # cp into the running container: written through the mapping, owners kept
    src = tmp_path / "in"
    src.mkdir()
    (src / "f").write_text("f\n")
    os.chown(src / "f", 1000, 1000)
    md.run("cp", str(src), f"{cid}:/in", check=True)
    tar = subprocess.run(["tar", "-C", str(src), "--owner=42", "--group=43", "-cf", "-", "f"],
                         capture_output=True, check=True).stdout
    md.run("cp", "-", f"{cid}:/tmp", input=tar, check=True)
    assert md.run("exec", cid, "stat", "-c", "%u:%g", "/in/f", "/tmp/f",
                  check=True).stdout.split() == ["1000:1000", "42:43"]
    assert os.stat(os.path.join(upper, "in", "f")).st_uid == 1000
    md.run("commit", cid, "remapped:1", check=True)
    try:
        r = md.run("run", "--rm", "--network", "none", "remapped:1", "stat", "-c", "%u:%g",
                   "/work/w", "/in/f", check=True)
        assert r.stdout.split() == ["7:8", "1000:1000"]  # a plain container sees the same
    finally:
        md.run("rmi", "remapped:1")
        md.run("rm", "-f", cid)
        md.run("volume", "rm", "remapvol")


def test_config_userns_remap_for_every_container_and_host_to_opt_out(md, images, tmp_path,
                                                                   monkeypatch):
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text('{"userns-remap": "default"}\n')
    monkeypatch.setenv("MINIDOCK_CONFIG_DIR", str(config))
    start = None
    r = md.run("run", "--rm", "--network", "none", "busybox", "cat", "/proc/self/uid_map",
               check=True)
    start = _range_start()
    assert r.stdout.split() == ["0", str(start), "65536"]
    r = md.run("run", "--rm", "--userns", "host", "--network", "none", "busybox", "cat",
               "/proc/self/uid_map", check=True)
    assert r.stdout.split() == ["0", "0", "4294967295"]
    # --network host: sysfs cannot be mounted from the user namespace, the host's is bound
    r = md.run("run", "--rm", "--network", "host", "busybox", "sh", "-c",
               "ls /sys/class/net | grep -c . ; grep ' /sys ' /proc/mounts", check=True)
    assert int(r.stdout.split()[0]) >= 1 and " ro," in r.stdout
    r = md.run("run", "--rm", "--privileged", "busybox", "true")
    assert r.returncode == 125
    assert "privileged mode is incompatible with user namespaces" in r.stderr
    assert md.run("run", "--rm", "--privileged", "--userns", "host", "--network", "none",
                  "busybox", "true").returncode == 0
    (config / "config.json").write_text('{"userns-remap": "nosuchuser"}\n')
    r = md.run("run", "--rm", "busybox", "true")
    assert r.returncode == 125 and r.stderr.strip().endswith(
        "userns-remap: no such user: nosuchuser"), r.stderr
    assert "Traceback" not in r.stderr


def test_bad_userns_values_are_refused(md, images):
    r = md.run("run", "--rm", "--userns", "bogus", "busybox", "true")
    assert r.returncode == 125 and "--userns: invalid USER mode" in r.stderr
    r = md.run("run", "--rm", "--userns", "remap", "--pid", "host", "busybox", "true")
    assert r.returncode == 125 and "--pid=host needs --userns=host" in r.stderr
    r = md.run("run", "--rm", "--userns", "remap", "--network", "none", "--cgroupns", "host",
               "busybox", "true")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # v2: cgroup2 is not mountable
        assert r.returncode == 125 and "--cgroupns=host needs --userns=host" in r.stderr
    else:  # v1: the runtime binds the container's own cgroup directories
        assert r.returncode == 0, r.stderr
    # --ipc host: mqueue cannot be mounted from the namespace, the host's is bound (if any)
    r = md.run("run", "--rm", "--userns", "remap", "--network", "none", "--ipc", "host",
               "busybox", "grep", "-c", " /dev/mqueue ", "/proc/mounts")
    assert r.stdout.strip() == ("1" if os.path.ismount("/dev/mqueue") else "0"), r.stderr
    assert md.run("ps", "-aq").stdout.strip() == ""  # nothing half-created


def test_chowned_copies_where_idmapped_layers_are_not_used(md, images, detached, tmp_path,
                                                           monkeypatch):
    """Docker's way (and the way on kernels before 5.19): the layers copied under
    <root>/<uid>.<gid>/overlay2 with their owners in the range; the container's upper dir
    shifted while it runs, back when it stops; commit of a running one says its own ids."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.json").write_text(
        '{"userns-remap": "default", "userns-remap-layers": "copy"}\n')
    monkeypatch.setenv("MINIDOCK_CONFIG_DIR", str(config))
    cid = detached("--network", "none", "busybox", "sh", "-c",
                   "touch /w && chown 7:8 /w && touch /ready && sleep 300")
    start, gstart = _range_start(), _range_start("/etc/subgid")
    md.run("exec", cid, "sh", "-c", "while [ ! -e /ready ]; do sleep 0.05; done", check=True)
    out = md.run("exec", cid, "sh", "-c", "id -u; stat -c %u:%g / /bin/sh /w",
                 check=True).stdout.split()
    assert out == ["0", "0:0", "0:0", "7:8"]
    remapped = os.path.join(md.root, f"{start}.{gstart}", "overlay2")
    image_layers = [d for d in os.listdir(remapped) if d != "l" and not d.endswith("-init")]
    assert image_layers, os.listdir(remapped)
    busybox = os.path.join(remapped, image_layers[0], "diff", "bin", "busybox")
    assert (os.stat(busybox).st_uid, os.stat(busybox).st_gid) == (start, gstart)
    upper = md.run("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", cid,
                   check=True).stdout.strip()
    assert os.stat(os.path.join(upper, "w")).st_uid == start + 7  # while it runs
    assert os.path.exists(os.path.join(os.path.dirname(upper), "userns-shift"))
    exported = subprocess.run(md.argv("export", cid), capture_output=True, check=True).stdout
    listing = subprocess.run(["tar", "--numeric-owner", "-tvf", "-"], input=exported,
                             capture_output=True, check=True).stdout.decode().splitlines()
    assert next(line for line in listing if line.endswith(" w")).split()[1] == "7/8"
    assert next(line for line in listing if line.endswith(" bin/busybox")).split()[1] == "0/0"
    copied = subprocess.run(md.argv("cp", f"{cid}:/w", "-"), capture_output=True,
                            check=True).stdout  # cp's tar, likewise
    listing = subprocess.run(["tar", "--numeric-owner", "-tvf", "-"], input=copied,
                             capture_output=True, check=True).stdout.decode().split()
    assert listing[1] == "7/8"
    md.run("commit", cid, "copied:1", check=True)  # running: the tar says its own ids
    try:
        r = md.run("run", "--rm", "--userns", "host", "--network", "none", "copied:1",
                   "stat", "-c", "%u:%g", "/w", check=True)
        assert r.stdout.split() == ["7:8"]
        md.run("stop", "-t", "0", cid, check=True)
        marker = os.path.join(os.path.dirname(upper), "userns-shift")
        assert helpers.wait_for(lambda: not os.path.exists(marker), 10)  # gone after the shift
        assert os.stat(os.path.join(upper, "w")).st_uid == 7  # shifted back when stopped
        # a copy is made once per layer; removing the layer removes its copies
        before = set(os.listdir(remapped))
        md.run("run", "--rm", "--network", "none", "copied:1", "true", check=True)
        made = set(os.listdir(remapped)) - before
        assert len(made) == 1  # copied:1's own layer (each run's -init copy goes with it)
    finally:
        md.run("rmi", "copied:1")
    assert set(os.listdir(remapped)) == before
