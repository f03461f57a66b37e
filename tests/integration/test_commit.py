"""`diff` and `commit` on the real kernel: a container's overlay upper dir, read and made into an
image (whiteouts, opaque directories, hard links, symlinks, xattrs), then run, saved and loaded."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

# What the container does: add a tree, a hard link and a symlink; delete a file of the image;
# replace a directory of the image (rm -rf + mkdir: overlayfs makes it opaque); modify a file.
SCRIPT = ("mkdir -p /a/b && echo hi > /a/b/f && ln /a/b/f /a/hl && ln -s /etc/passwd /a/sl"
          " && rm /bin/ls && rm -rf /usr/sbin && mkdir /usr/sbin && echo new > /usr/sbin/new"
          " && echo extra >> /etc/group && mkdir /tmp/x")


@pytest.fixture
def changed(md, images):
    """A stopped container that ran SCRIPT; removed after the test, with its images."""
    name = "commit-src"
    md.run("run", "--name", name, "--network", "none", "busybox", "sh", "-c", SCRIPT,
           check=True)
    made: list[str] = []
    yield name, made
    md.run("rm", "-f", name)
    for ref in made:
        md.run("rmi", "-f", ref)


def upper_dir(md, name: str) -> Path:
    return Path(md.run("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name,
                       check=True).stdout.strip())


def saved_layers(md, ref: str, tmp_path: Path) -> list[dict[str, tarfile.TarInfo]]:
    """The entries of the image's layers as `save` writes them, base first; each layer's
    bytes must hash to its DiffID (the tar-split recorded at commit rebuilds the same tar)."""
    archive = tmp_path / "saved.tar"
    md.run("save", "-o", archive, ref, check=True)
    diff_ids = json.loads(md.run("image", "inspect", "-f", "{{json .RootFS.Layers}}", ref,
                                 check=True).stdout)
    out = []
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name, diff_id in zip(manifest[0]["Layers"], diff_ids, strict=True):
            data = t.extractfile(name).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
            with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                out.append({m.name: m for m in layer.getmembers()})
    return out


def test_diff_lists_adds_changes_and_deletes_in_walk_order(md, changed):
    name, _ = changed
    r = md.run("diff", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "A /a", "A /a/b", "A /a/b/f", "A /a/hl", "A /a/sl",
        "C /bin", "D /bin/ls",
        "C /etc/group",  # /etc itself was only copied up: same mode, size and mtime
        "C /tmp", "A /tmp/x",
        "C /usr", "D /usr/sbin", "A /usr/sbin/new",
    ]
    # the -init layer's files (hosts, hostname, resolv.conf) are not the container's changes
    assert md.run("container", "diff", name, check=True).stdout == r.stdout


def test_diff_of_a_running_container_and_errors(md, images):
    name = "diff-running"
    md.run("run", "-d", "--name", name, "busybox", "sh", "-c", "touch /root/new; sleep 60",
           check=True)
    try:
        for _ in range(100):
            out = md.run("diff", name, check=True).stdout
            if "A /root/new" in out:
                break
        assert out.splitlines() == ["C /root", "A /root/new"]
    finally:
        md.run("rm", "-f", name)
    r = md.run("diff", "no-such-container")
    assert (r.returncode, r.stderr) == (125, "Error: No such container: no-such-container\n")


def test_diff_never_looks_at_the_host_through_an_image_symlink(md, images, tmp_path):
    """The image has /s -> <a host directory that holds f>; a container replaces /s with a
    directory holding f. Looked up inside the image's layer, /s/f did not exist: A, not C."""
    host_dir = tmp_path / "host-only"
    host_dir.mkdir()
    (host_dir / "f").write_text("host\n")
    made = []
    try:
        md.run("run", "--name", "sl-src", "busybox", "ln", "-s", str(host_dir), "/s", check=True)
        md.run("commit", "sl-src", "symlinked:1", check=True)
        made.append("symlinked:1")
        md.run("run", "--name", "sl-dst", "symlinked:1", "sh", "-c",
               "rm /s && mkdir /s && echo c > /s/f", check=True)
        lines = md.run("diff", "sl-dst", check=True).stdout.splitlines()
        assert "A /s/f" in lines and "C /s/f" not in lines, lines
    finally:
        md.run("rm", "-f", "sl-src", "sl-dst")
        for ref in made:
            md.run("rmi", "-f", ref)


def test_commit_makes_docker_s_layer_and_config(md, changed, tmp_path):
    name, made = changed
    upper = upper_dir(md, name)
    # xattrs: security.capability is kept (Docker's rule), anything else is not
    cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # vfs_cap_data v2: cap_net_raw
    os.setxattr(upper / "a" / "b" / "f", "security.capability", cap)
    os.setxattr(upper / "a" / "b", "user.note", b"not kept")
    r = md.run("commit", "-m", "added stuff", "-a", "me <me@x>", name, "mine:v1")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    made.append("mine:v1")
    assert md.run("images", "-q", "--no-trunc", "mine:v1", check=True).stdout == image_id + "\n"

    base = md.run("image", "inspect", "-f", "{{json .}}", "busybox", check=True).stdout
    base_info = json.loads(base)
    info = json.loads(md.run("image", "inspect", "-f", "{{json .}}", "mine:v1",
                             check=True).stdout)
    assert info["Parent"] == base_info["Id"]
    assert (info["Comment"], info["Author"]) == ("added stuff", "me <me@x>")
    assert info["RootFS"]["Layers"][:-1] == base_info["RootFS"]["Layers"]
    assert len(info["RootFS"]["Layers"]) == len(base_info["RootFS"]["Layers"]) + 1
    assert info["Config"]["Cmd"] == ["sh", "-c", SCRIPT]

    config_file = Path(md.root) / "image/overlay2/imagedb/content/sha256" / image_id[7:]
    raw = config_file.read_bytes()
    config = json.loads(raw)
    assert list(config) == sorted(config)  # Docker 20.10 sorts the top-level keys
    cid = md.run("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
    container_config = json.loads(md.run("inspect", "-f", "{{json .Config}}", name,
                                         check=True).stdout)
    assert config["container"] == cid
    assert config["container_config"] == container_config
    assert list(config["config"]) == list(container_config)  # container.Config's field order
    assert config["history"][-1] == {"created": config["created"], "author": "me <me@x>",
                                     "created_by": "sh -c " + SCRIPT, "comment": "added stuff"}
    assert list(config["history"][-1]) == ["created", "author", "created_by", "comment"]

    entries = saved_layers(md, "mine:v1", tmp_path)[-1]
    assert sorted(entries) == [  # (tarfile drops a directory's trailing slash)
        "a", "a/b", "a/b/f", "a/hl", "a/sl", "bin", "bin/.wh.ls", "etc", "etc/group",
        "tmp", "tmp/x", "usr", "usr/sbin", "usr/sbin/.wh..wh..opq", "usr/sbin/new",
    ]
    wh = entries["bin/.wh.ls"]
    assert (wh.isreg(), wh.size, wh.mode) == (True, 0, 0o600)
    assert entries["usr/sbin/.wh..wh..opq"].isreg()
    assert entries["a/hl"].islnk() and entries["a/hl"].linkname == "a/b/f"
    assert entries["a/sl"].issym() and entries["a/sl"].linkname == "/etc/passwd"
    assert entries["a/b/f"].pax_headers.get("SCHILY.xattr.security.capability") is not None
    # and on the hard link's entry, as Docker writes it (its apply chowns the link, which
    # drops the inode's capability, then sets the entry's xattr again)
    assert entries["a/hl"].pax_headers == entries["a/b/f"].pax_headers
    assert not any("user.note" in k for k in entries["a/b"].pax_headers)
    assert not {"etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv"} & set(entries)


def test_the_committed_image_runs_with_its_changes_also_after_save_and_load(
        md, changed, tmp_path, md_dirs):
    name, made = changed
    md.run("commit", name, "mine:v2", check=True)
    made.append("mine:v2")
    check = ("ls /bin/ls 2>&1; cat /a/b/f; [ /a/b/f -ef /a/hl ] && echo same-inode;"
             " readlink /a/sl; ls /usr/sbin; tail -1 /etc/group")
    want = ("ls: /bin/ls: No such file or directory\nhi\nsame-inode\n/etc/passwd\nnew\n"
            "extra\n")
    r = md.run("run", "--rm", "mine:v2", "sh", "-c", check)
    assert (r.returncode, r.stdout) == (0, want), r.stderr
    # the same image saved and loaded into another root: the deletions are still deletions
    archive = tmp_path / "mine.tar"
    md.run("save", "-o", archive, "mine:v2", check=True)
    other = type(md)(root=str(md_dirs / "commit-other" / "root"),
                     run_root=str(md_dirs / "commit-other" / "run"))
    try:
        other.run("load", "-i", archive, check=True)
        r = other.run("run", "--rm", "mine:v2", "sh", "-c", check)
        assert (r.returncode, r.stdout) == (0, want), r.stderr
    finally:
        other.run("rmi", "-f", "mine:v2")


def test_commit_changes_pause_and_an_unchanged_container(md, images):
    name = "commit-running"
    md.run("run", "-d", "--name", name, "busybox", "sh", "-c",
           "echo made > /root/made; sleep 60", check=True)
    made = []
    try:
        for _ in range(100):
            if "A /root/made" in md.run("diff", name, check=True).stdout:
                break
        r = md.run("commit", "-c", 'CMD ["cat", "/root/made"]', "-c", "ENV A=1 B=2",
                   "-c", "WORKDIR /root", name, "mine:running")
        assert r.returncode == 0, r.stderr
        made.append("mine:running")
        # paused while read, running again after
        state = md.run("inspect", "-f", "{{.State.Status}}", name, check=True).stdout
        assert state == "running\n"
        cfg = json.loads(md.run("image", "inspect", "-f", "{{json .Config}}", "mine:running",
                                check=True).stdout)
        assert (cfg["Cmd"], cfg["WorkingDir"]) == (["cat", "/root/made"], "/root")
        assert {"A=1", "B=2"} <= set(cfg["Env"])
        r = md.run("run", "--rm", "mine:running")
        assert (r.returncode, r.stdout) == (0, "made\n"), r.stderr
        r = md.run("commit", "--pause=false", name, "mine:nopause")
        assert r.returncode == 0, r.stderr
        made.append("mine:nopause")
        # a bad -c is one line, exit 125, and no image
        before = md.run("images", "-q", check=True).stdout
        r = md.run("commit", "-c", "BOGUS x", name, "mine:bad")
        assert (r.returncode, r.stderr.count("\n")) == (125, 1), r.stderr
        assert "unknown instruction: BOGUS" in r.stderr
        assert md.run("images", "-q", check=True).stdout == before
        state = md.run("inspect", "-f", "{{.State.Status}}", name, check=True).stdout
        assert state == "running\n"
    finally:
        md.run("rm", "-f", name)

    # nothing changed: no new layer, an empty_layer history entry
    md.run("create", "--name", "commit-empty", "busybox", check=True)
    try:
        r = md.run("commit", "commit-empty", "mine:empty")
        assert r.returncode == 0, r.stderr
        made.append("mine:empty")
        layers = md.run("image", "inspect", "-f", "{{json .RootFS.Layers}}", "mine:empty",
                        check=True).stdout
        assert layers == md.run("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                "busybox", check=True).stdout
        raw = Path(md.root) / "image/overlay2/imagedb/content/sha256" / r.stdout.strip()[7:]
        assert json.loads(raw.read_bytes())["history"][-1]["empty_layer"] is True
    finally:
        md.run("rm", "-f", "commit-empty")
        for ref in made:
            md.run("rmi", "-f", ref)
    r = md.run("commit", "no-such-container")
    assert (r.returncode, r.stderr) == (125, "Error: No such container: no-such-container\n")
    r = subprocess.run(md.argv("commit", "x", "Bad:Ref"), capture_output=True, text=True)
    assert r.returncode == 125 and "invalid reference format" in r.stderr


def test_commit_freezes_a_running_container_while_it_reads_its_layer(md, images, monkeypatch):
    """The tar of the upper dir is written while the container is frozen (--pause, the
    default), or while it runs on (--pause=false); either way it runs on afterwards."""
    import helpers

    from minidock.engine.images import commit as committing
    from minidock.paths import Paths

    name = "commit-pause"
    md.run("run", "-d", "--name", name, "busybox", "sh", "-c", "echo x > /f; sleep 60",
           check=True)
    made: list[str] = []
    try:
        cid = md.run("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
        upper = upper_dir(md, name)
        assert helpers.wait_for(lambda: (upper / "f").exists())
        seen: list[bool] = []
        real = committing.diff_tar_stream

        def spy(path: str, ids=None):
            seen.append(helpers.freezer_says_frozen(cid))
            return real(path, ids)

        monkeypatch.setattr(committing, "diff_tar_stream", spy)
        paths = Paths(md.root, md.run_root)
        made.append(committing.commit(paths, committing.CommitOptions(container=name)))
        made.append(committing.commit(paths, committing.CommitOptions(container=name,
                                                                      pause=False)))
        assert seen == [True, False]
        assert not helpers.freezer_says_frozen(cid)
        assert md.run("inspect", "-f", "{{.State.Status}}", name,
                      check=True).stdout.strip() == "running"
        r = md.run("run", "--rm", made[0], "cat", "/f", check=True)
        assert r.stdout == "x\n"
    finally:
        md.run("rm", "-f", name)
        for image in made:
            md.run("rmi", "-f", image)
