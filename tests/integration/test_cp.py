"""`cp` both ways on the real kernel: Docker's file/directory rules (checked against docker 20.10),
tar streams, ownership, links, stopped containers, and paths that try to leave the container."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

SETUP = ("mkdir -p /d/sub && echo f1 > /d/f1 && echo s > /d/sub/s && ln -s /etc/passwd /d/link"
         " && ln -s /d /dl && chown 1000:1000 /d/f1 && ln /d/f1 /d/hard && ln -s / /escape"
         " && ln -s /tmp /totmp && echo ready && exec sleep 600")


@pytest.fixture
def ctr(md, images):
    name = "cp-" + secrets.token_hex(3)
    p = subprocess.Popen(md.argv("run", "--rm", "--name", name, "--network", "none", "busybox",
                                 "sh", "-c", SETUP), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        yield name
    finally:
        md.run("rm", "-f", name)
        p.wait(timeout=30)


def fails(r, line: str) -> None:
    assert (r.returncode, r.stderr) == (125, f"Error: {line}\n"), r


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_copy_out_follows_docker_s_rules(md, ctr, tmp_path):
    os.chdir(tmp_path)
    md.run("cp", f"{ctr}:/d/f1", "out1", check=True)
    st = os.stat("out1")
    assert (Path("out1").read_text(), st.st_uid, st.st_gid) == ("f1\n", 0, 0)  # not chowned
    md.run("cp", f"{ctr}:/d", "outd", check=True)  # a new directory with d's contents
    assert listing(tmp_path / "outd") == ["f1", "hard", "link", "sub", "sub/s"]
    assert os.readlink("outd/link") == "/etc/passwd"  # symlinks are copied, not followed
    assert os.stat("outd/f1").st_ino == os.stat("outd/hard").st_ino
    md.run("cp", f"{ctr}:/d", "outd", check=True)  # into an existing directory: outd/d
    assert "d/sub/s" in listing(tmp_path / "outd")
    os.mkdir("e")
    md.run("cp", f"{ctr}:/d/.", "e", check=True)  # "/." copies the contents
    assert listing(tmp_path / "e") == ["f1", "hard", "link", "sub", "sub/s"]
    md.run("cp", f"{ctr}:/dl", "dl", check=True)
    assert os.readlink("dl") == "/d"
    md.run("cp", "-L", f"{ctr}:/dl", "dl2", check=True)
    assert (tmp_path / "dl2").is_dir() and (tmp_path / "dl2" / "f1").read_text() == "f1\n"
    # a symlink in the path resolves inside the container, whatever it points at
    md.run("cp", f"{ctr}:/escape/d/f1", "viaroot", check=True)
    assert Path("viaroot").read_text() == "f1\n"
    md.run("cp", f"{ctr}:/escape/etc/hostname", "hn", check=True)
    assert Path("hn").read_text() == md.run("inspect", "-f", "{{.Config.Hostname}}", ctr,
                                            check=True).stdout  # the container's own file
    # a tar on stdout, named after the source, with the owner inside the container
    out = subprocess.run(md.argv("cp", f"{ctr}:/d/f1", "-"), capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as t:
        (m,) = t.getmembers()
        assert (m.name, m.uid, m.gid, m.size) == ("f1", 1000, 1000, 3)
    fails(md.run("cp", f"{ctr}:/nosuch", "x"),
          f"Could not find the file /nosuch in container {ctr}")
    fails(md.run("cp", f"{ctr}:/d/f1/", "x"), "lstat /d/f1/: not a directory")
    fails(md.run("cp", f"{ctr}:/d/f1", "nodir/"), "no such directory")
    fails(md.run("cp", f"{ctr}:/d/f1", "nodir/x"),
          f'invalid output path: directory "{tmp_path}/nodir" does not exist')
    Path("afile").touch()
    fails(md.run("cp", f"{ctr}:/d", "afile"), "cannot copy directory")


def test_copy_in_follows_docker_s_rules_and_stays_inside(md, ctr, tmp_path):
    hd = tmp_path / "hd"
    (hd / "sub").mkdir(parents=True)
    (hd / "h").write_text("h\n")
    (hd / "sub" / "hs").write_text("hs\n")
    os.chown(hd / "h", 1234, 1234)
    os.symlink("/etc/hostname", hd / "hl")
    os.link(hd / "h", hd / "hh")

    def sh(cmd: str) -> str:
        return md.run("exec", ctr, "sh", "-c", cmd, check=True).stdout

    md.run("cp", hd / "h", f"{ctr}:/d/", check=True)
    assert sh("stat -c '%u:%g %s' /d/h") == "1234:1234 2\n"  # docker 20.10 keeps the owner
    md.run("cp", hd, f"{ctr}:/newdir", check=True)
    assert sh("cd /newdir && find . | sort") == ".\n./h\n./hh\n./hl\n./sub\n./sub/hs\n"
    assert sh("readlink /newdir/hl; [ /newdir/h -ef /newdir/hh ] && echo same") == \
        "/etc/hostname\nsame\n"
    md.run("cp", hd, f"{ctr}:/d", check=True)
    assert sh("ls /d/hd") == "h\nhh\nhl\nsub\n"
    md.run("cp", f"{hd}/.", f"{ctr}:/d/sub", check=True)
    assert sh("ls /d/sub") == "h\nhh\nhl\ns\nsub\n"
    # a tar on stdin, into a directory
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as t:
        info = tarfile.TarInfo("fromtar")
        info.size = 3
        t.addfile(info, io.BytesIO(b"ft\n"))
    r = md.run("cp", "-", f"{ctr}:/d", input=data.getvalue())
    assert r.returncode == 0, r.stderr
    assert sh("cat /d/fromtar") == "ft\n"
    fails(md.run("cp", "-", f"{ctr}:/d/f1", input=data.getvalue()),
          f'destination "{ctr}:/d/f1" must be a directory')
    fails(md.run("cp", hd / "h", f"{ctr}:/nodir/x"),
          f"Could not find the file /nodir in container {ctr}")
    fails(md.run("cp", hd, f"{ctr}:/d/f1"), "cannot copy directory")
    fails(md.run("cp", tmp_path / "nosuch", f"{ctr}:/d"),
          f"lstat {tmp_path}/nosuch: no such file or directory")
    # symlinks in the destination resolve inside the container: /totmp -> /tmp is its /tmp,
    # /escape -> / its root; nothing lands on the host
    marker = "cp-marker-" + secrets.token_hex(4)
    (tmp_path / marker).write_text("m\n")
    md.run("cp", tmp_path / marker, f"{ctr}:/totmp/", check=True)
    md.run("cp", tmp_path / marker, f"{ctr}:/escape/", check=True)
    assert sh(f"cat /tmp/{marker} /{marker}") == "m\nm\n"
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/{marker}")


def test_copy_into_a_directory_that_is_swapped_for_a_symlink_stays_inside(md, ctr, tmp_path):
    """The container keeps swapping /d/race between a directory and a symlink to /; every
    copy lands inside the container, never in the host's /."""
    marker = "cp-race-" + secrets.token_hex(4)
    (tmp_path / marker).write_text("r\n")
    swap = subprocess.Popen(md.argv(
        "exec", ctr, "sh", "-c",
        "mkdir -p /d/race; i=0; while [ $i -lt 3000 ]; do mv /d/race /d/racex;"
        " ln -s / /d/race; rm /d/race; mv /d/racex /d/race; i=$((i+1)); done"))
    try:
        for _ in range(20):
            md.run("cp", tmp_path / marker, f"{ctr}:/d/race/")  # may fail mid-swap: fine
            assert not os.path.exists(f"/{marker}")
    finally:
        swap.kill()
        swap.wait()
    assert not os.path.exists(f"/{marker}")


def test_copy_with_a_stopped_container(md, images, tmp_path):
    name = "cp-stopped"
    md.run("create", "--name", name, "busybox", check=True)
    try:
        (tmp_path / "in").write_text("in\n")
        md.run("cp", tmp_path / "in", f"{name}:/root/in", check=True)
        md.run("cp", f"{name}:/root/in", tmp_path / "back", check=True)
        assert (tmp_path / "back").read_text() == "in\n"
        r = md.run("start", "-a", name)  # the file is in the container's filesystem
        assert r.returncode == 0
        assert md.run("diff", name, check=True).stdout == "C /root\nA /root/in\n"
    finally:
        md.run("rm", "-f", name)
    r = md.run("cp", tmp_path / "in", "/local/path")
    fails(r, "must specify at least one container source")
