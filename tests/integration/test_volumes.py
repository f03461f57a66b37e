"""Volumes and mounts on the real kernel: named volumes that outlive their containers, binds,
the image's VOLUMEs filled from the image (copy-up) and removed with `rm -v`/`--rm`, tmpfs and
--read-only, --volumes-from, `volume create/ls/inspect/rm/prune` with Docker's words and
shapes (recorded from docker 20.10 here), and mount targets that cannot leave the rootfs
through a symlink in the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


def mounts(md, ref: str) -> list[dict]:
    return json.loads(md.run("inspect", "-f", "{{json .Mounts}}", ref, check=True).stdout)


def volumes(md) -> list[str]:
    return md.run("volume", "ls", "-q", check=True).stdout.split()


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="minidock-bind-", dir="/var/tmp")
    Path(d, "f").write_text("hi\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def built(md, images, tmp_path):
    """Images built for a test, removed after it."""
    tags = []

    def build(tag: str, dockerfile: str) -> str:
        ctx = tmp_path / tag.replace(":", "_")
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        md.run("build", "-q", "-t", tag, str(ctx), check=True)
        tags.append(tag)
        return tag

    yield build
    for tag in tags:
        md.run("rmi", "-f", tag)


def test_a_named_volume_outlives_its_containers(md, images):
    assert md.run("volume", "create", "myvol", check=True).stdout == "myvol\n"
    try:
        r = md.run("run", "--name", "vn", "--network", "none", "-v", "myvol:/data", "busybox",
                   "sh", "-c", "echo hello > /data/x; ls /data", check=True)
        assert r.stdout == "x\n"
        assert mounts(md, "vn") == [{
            "Type": "volume", "Name": "myvol", "Source": f"{md.root}/volumes/myvol/_data",
            "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True,
            "Propagation": ""}]
        assert json.loads(md.run("inspect", "-f", "{{json .HostConfig.Binds}}", "vn",
                                 check=True).stdout) == ["myvol:/data"]
        r = md.run("run", "--rm", "--network", "none", "-v", "myvol:/data:ro", "busybox", "sh",
                   "-c", "cat /data/x; touch /data/y 2>&1; echo rc=$?", check=True)
        assert r.stdout == "hello\ntouch: /data/y: Read-only file system\nrc=1\n"
        r = md.run("volume", "rm", "myvol")
        cid = md.run("inspect", "-f", "{{.Id}}", "vn", check=True).stdout.strip()
        assert r.returncode == 1 and r.stderr == (
            f"Error response from daemon: remove myvol: volume is in use - [{cid}]\n")
        r = md.run("run", "--rm", "--network", "none", "--volumes-from", "vn", "busybox", "cat",
                   "/data/x", check=True)
        assert r.stdout == "hello\n"
        r = md.run("run", "--rm", "--network", "none", "--volumes-from", "vn:ro", "busybox",
                   "sh", "-c", "touch /data/z 2>&1", check=False)
        assert "Read-only file system" in r.stdout
    finally:
        md.run("rm", "-f", "vn")
    assert md.run("volume", "rm", "myvol").stdout == "myvol\n"
    assert "myvol" not in volumes(md)


def test_a_bind_mount_shows_the_host_and_ro_holds(md, images, host_dir):
    r = md.run("run", "--name", "vb", "--network", "none", "-v", f"{host_dir}:/h:ro", "busybox",
               "sh", "-c", "cat /h/f; touch /h/g 2>&1", check=False)
    try:
        assert r.stdout == "hi\ntouch: /h/g: Read-only file system\n"
        assert mounts(md, "vb") == [{"Type": "bind", "Source": host_dir, "Destination": "/h",
                                     "Mode": "ro", "RW": False, "Propagation": "rprivate"}]
    finally:
        md.run("rm", "-f", "vb")
    new = os.path.join(host_dir, "made")  # a missing -v source is made, as Docker's
    md.run("run", "--rm", "--network", "none", "-v", f"{new}:/x", "busybox", "touch", "/x/y",
           check=True)
    assert os.path.exists(os.path.join(new, "y"))


def test_the_images_volume_is_filled_from_the_image_and_goes_with_rm_v(md, built):
    tag = built("withvol:1", "FROM busybox\nRUN mkdir -p /data && echo seeded > /data/seed "
                "&& chown 1000:1000 /data\nVOLUME /data\n")
    before = set(volumes(md))
    r = md.run("run", "--name", "vi", "--network", "none", tag, "sh", "-c",
               "cat /data/seed; stat -c %u /data", check=True)
    try:
        assert r.stdout == "seeded\n1000\n"
        (point,) = mounts(md, "vi")
        assert (point["Type"], point["Destination"], point["Mode"], point["RW"]) == (
            "volume", "/data", "", True)
        assert len(point["Name"]) == 64 and set(volumes(md)) - before == {point["Name"]}
        assert json.loads(md.run("inspect", "-f", "{{json .Config.Volumes}}", "vi",
                                 check=True).stdout) == {"/data": {}}
    finally:
        md.run("rm", "-v", "vi", check=True)
    assert set(volumes(md)) == before
    md.run("run", "--rm", "--network", "none", "-v", "/anon", "busybox", "true", check=True)
    assert set(volumes(md)) == before  # --rm takes its anonymous volumes along


def test_tmpfs_mounts_and_a_read_only_root(md, images):
    r = md.run("run", "--name", "vt", "--network", "none", "--tmpfs", "/tt:rw,size=2m,mode=1777",
               "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "--read-only", "busybox", "sh",
               "-c", "grep -E ' /(tt|t) ' /proc/mounts; touch /x 2>&1; touch /tt/y && echo ok",
               check=False)
    try:
        lines = r.stdout.splitlines()
        assert lines[2:] == ["touch: /x: Read-only file system", "ok"], r.stdout
        for line, where, size in ((lines[0], "/t", "1024k"), (lines[1], "/tt", "2048k")):
            _, target, kind, options, *_ = line.split()
            assert (target, kind) == (where, "tmpfs")  # (some kernels add inode64)
            assert {"rw", "nosuid", "nodev", "noexec", f"size={size}"} <= set(options.split(","))
        hc = json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", "vt",
                               check=True).stdout)
        assert (hc["Tmpfs"], hc["ReadonlyRootfs"]) == ({"/tt": "rw,size=2m,mode=1777"}, True)
        assert mounts(md, "vt") == [{"Type": "tmpfs", "Source": "", "Destination": "/t",
                                     "Mode": "", "RW": True, "Propagation": ""}]
    finally:
        md.run("rm", "-f", "vt")


def test_volume_commands_as_dockers(md, images):
    assert md.run("volume", "create", "--label", "a=b", "lv", check=True).stdout == "lv\n"
    anon = md.run("volume", "create", check=True).stdout.strip()
    try:
        assert len(anon) == 64
        assert md.run("volume", "create", "lv").stdout == "lv\n"  # exists: kept as it is
        r = md.run("volume", "create", "bad/name")
        assert r.returncode == 1 and r.stderr == (
            'Error response from daemon: create bad/name: "bad/name" includes invalid '
            'characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. '
            "If you intended to pass a host directory, use absolute path\n")
        ls = md.run("volume", "ls", check=True).stdout.splitlines()
        assert ls[0] == "DRIVER    VOLUME NAME" and f"local     {anon}" in ls
        doc = json.loads(md.run("volume", "inspect", "lv", check=True).stdout)
        assert doc[0]["Labels"] == {"a": "b"} and doc[0]["Options"] is None
        assert (doc[0]["Driver"], doc[0]["Scope"], doc[0]["Mountpoint"]) == (
            "local", "local", f"{md.root}/volumes/lv/_data")
        r = md.run("volume", "inspect", "nope")
        assert r.returncode == 1 and r.stdout == "[]\n" and \
            r.stderr == "Error response from daemon: get nope: no such volume\n"
        r = md.run("volume", "rm", "nope")
        assert r.returncode == 1 and r.stderr == \
            "Error response from daemon: get nope: no such volume\n"
        assert md.run("volume", "rm", "-f", "nope").returncode == 0
        Path(md.root, "volumes", "lv", "_data", "f").write_text("1234567890123")
        r = md.run("volume", "prune", "-f", check=True)
        assert r.stdout.startswith("Deleted Volumes:\n") and r.stdout.endswith(
            "\nTotal reclaimed space: 13B\n")
        assert {"lv", anon} <= set(r.stdout.splitlines())
    finally:
        md.run("volume", "rm", "-f", "lv", anon)
    assert volumes(md) == []


@pytest.mark.parametrize("flags, message", [
    (("-v", "rel:ctr"), "invalid volume specification: 'rel:ctr': invalid mount config for "
                        "type \"volume\": invalid mount path: 'ctr' mount path must be absolute"),
    (("-v", "/a:/b:xx"), "invalid mode: xx"),
    (("--mount", "type=bind,target=/x"),
     'invalid mount config for type "bind": field Source must not be empty'),
    (("--mount", "type=bind,source=/nonexistent-md,target=/x"),
     'invalid mount config for type "bind": bind source path does not exist: '
     "/nonexistent-md"),
    (("-v", "a1:/x", "-v", "b1:/x"), "Duplicate mount point: /x"),
])
def test_bad_mounts_are_one_line_and_125(md, images, flags, message):
    r = md.run("run", "--rm", "--network", "none", *flags, "busybox", "true")
    assert r.returncode == 125 and message in r.stderr, r.stderr
    assert md.run("ps", "-aq").stdout == ""
    md.run("volume", "rm", "-f", "a1")


def test_mount_targets_through_symlinks_stay_in_the_rootfs(md, built, host_dir):
    """-v targets under symlinks the image or the container's layer plants (to /etc, to
    ../../..) land inside the container's root; nothing is mounted on the host's paths."""
    tag = built("evil:1", "FROM busybox\nRUN ln -s /etc /evil\n")
    marker = f"md-escape-{os.getpid()}"
    cid = md.run("create", "--network", "none", "-v", f"{host_dir}:/evil/{marker}",
                 "-v", f"{host_dir}:/up/{marker}", tag, "sh", "-c",
                 f"cat /etc/{marker}/f /{marker}/f", check=True).stdout.strip()
    try:
        # (minidock's own layer writers refuse such a link: planted straight in the upper dir,
        # as a layer made elsewhere could carry it)
        upper = md.run("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", cid,
                       check=True).stdout.strip()
        os.symlink("../../../../../..", os.path.join(upper, "up"))
        r = md.run("start", "-a", cid, check=True)
        assert r.stdout == "hi\nhi\n"
        assert not os.path.exists(f"/etc/{marker}") and not os.path.exists(f"/{marker}")
    finally:
        md.run("rm", "-f", cid)


def test_a_volume_with_the_local_drivers_options_is_mounted_while_used(md, images):
    r = md.run("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=10m",
               "tv", check=True)
    data = f"{md.root}/volumes/tv/_data"
    try:
        doc = json.loads(md.run("volume", "inspect", "tv", check=True).stdout)[0]
        assert doc["Options"] == {"device": "tmpfs", "o": "size=10m", "type": "tmpfs"}
        r = md.run("run", "--rm", "--network", "none", "-v", "tv:/data", "busybox", "sh", "-c",
                   "grep ' /data ' /proc/mounts", check=True)
        assert r.stdout.split()[2] == "tmpfs" and "size=10240k" in r.stdout
        assert not os.path.ismount(data)  # unmounted when its last user ended
        cid = md.run("run", "-d", "--network", "none", "-v", "tv:/data", "busybox", "sleep",
                     "300", check=True).stdout.strip()
        assert os.path.ismount(data)
        md.run("rm", "-f", cid, check=True)
        assert not os.path.ismount(data)
        for opts, message in ((("-o", "foo=bar"), 'create x1: invalid option key: "foo"'),
                              (("-o", "device=tmpfs"),
                               'create x1: missing required option: "type"')):
            r = md.run("volume", "create", *opts, "x1")
            assert r.returncode == 1 and r.stderr == f"Error response from daemon: {message}\n"
    finally:
        md.run("volume", "rm", "-f", "tv")


@pytest.fixture
def propagation_dirs(tmp_path):
    """Two tmpfs mounts, one made shared (as systemd makes /) and one private, unmounted with
    all below them after."""
    made = []
    try:
        for name, how in (("shared", "--make-shared"), ("private", "--make-private")):
            d = tmp_path / name
            d.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "mdprop", str(d)], check=True)
            made.append(d)
            subprocess.run(["mount", how, str(d)], check=True)
        yield made[0], made[1]
    finally:
        for d in made:
            subprocess.run(["umount", "-R", str(d)], check=False)


def test_bind_propagation_as_docker(md, images, detached, propagation_dirs):
    """rshared: mounts go both ways; rslave: from the host in only; rprivate (the default):
    neither. Docker's refusals for a source that is not shared (or slave)."""
    shared_dir, private = propagation_dirs
    results = {}
    for mode in ("rshared", "rslave", "rprivate"):
        for d in ("in", "out"):
            (shared_dir / mode / d).mkdir(parents=True)
        cid = detached("--privileged", "--network", "none", "-v",
                       f"{shared_dir / mode}:/p:{mode}", "busybox", "sh", "-c",
                       "mount -t tmpfs inside /p/in && touch /p/in/made-inside /ready; "
                       "sleep 300")
        md.run("exec", cid, "sh", "-c", "while [ ! -e /ready ]; do sleep 0.05; done",
               check=True)
        subprocess.run(["mount", "-t", "tmpfs", "outside", str(shared_dir / mode / "out")],
                       check=True)
        inside = md.run("exec", cid, "grep", "-c", " /p/out ", "/proc/self/mountinfo").stdout
        results[mode] = ((shared_dir / mode / "in" / "made-inside").exists(),
                         inside.strip() == "1")
        md.run("rm", "-f", cid, check=True)
    assert results == {"rshared": (True, True), "rslave": (False, True),
                       "rprivate": (False, False)}
    r = md.run("run", "--rm", "--network", "none", "-v", f"{private}:/p:rshared", "busybox",
               "true")
    assert r.returncode == 125 and f"path {private} is mounted on {private} but it is not a " \
        "shared mount" in r.stderr, r.stderr
    r = md.run("run", "--rm", "--network", "none", "--mount",
               f"type=bind,source={private},target=/p,bind-propagation=rslave", "busybox",
               "true")
    assert r.returncode == 125 and "but it is not a shared or slave mount" in r.stderr
