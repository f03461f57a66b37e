"""Docker's overlay2 + image store layout, file for file, on a real kernel.

Needs root and overlayfs (markers below). Every test works in its own data root under tmp_path; the
``paths`` fixture unmounts whatever is left mounted below it, even when a test fails.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from minidock import linux
from minidock.engine import images as engine
from minidock.errors import Conflict, MinidockError, StorageError
from minidock.image.store import ImageStore, chain_ids
from minidock.linux import trace
from minidock.paths import Paths
from minidock.storage.overlay2 import MAX_DEPTH, Overlay2Driver

# tests/conftest.py skips (or, in strict mode, fails) these where root or overlayfs is missing.
pytestmark = [pytest.mark.root, pytest.mark.overlay]

HEX64 = re.compile(r"^[a-f0-9]{64}$")
LINK = re.compile(r"^[A-Z2-7]{26}$")


# --- helpers -------------------------------------------------------------------------------


def _mounts_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mnt)
            if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
                out.append(mnt)
    return out


@pytest.fixture
def paths(tmp_path: Any) -> Iterator[Paths]:
    p = Paths(root=str(tmp_path / "root"), run_root=str(tmp_path / "run"))
    try:
        yield p
    finally:
        for mnt in sorted(_mounts_under(str(tmp_path)), key=len, reverse=True):
            try:
                linux.umount2(mnt, linux.MNT_DETACH)
            except OSError:
                pass


def make_tar(entries: list[tuple[str, str, Any]], compress: str | None = None) -> bytes:
    """entries: (name, kind, payload) with kind file (bytes), dir, symlink (target), char."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                info.mode = 0o644
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            if kind == "exe":
                info.mode = 0o755
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            tf.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress == "gzip" else raw


def run_cli(p: Paths, *args: str, stdin: bytes | None = None,
            ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "minidock", "--root", p.root, "--run-root", p.run_root, *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True, text=True, timeout=120,
        encoding="latin-1",
    )
    if ok:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stderr}"
    return proc


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_dirs(p: Paths) -> set[str]:
    try:
        return {n for n in os.listdir(p.overlay2) if n != "l"}
    except FileNotFoundError:
        return set()


def register(store: ImageStore, tar: bytes, parent: str | None = None) -> Any:
    return store.register_layer(io.BytesIO(tar), parent)


def image_config(diff_ids: list[str], **extra: Any) -> bytes:
    cfg = {"architecture": "amd64", "os": "linux", "config": {}, **extra,
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    return json.dumps(cfg, separators=(",", ":")).encode()


BASE = [
    ("bin", "dir", None),
    ("bin/hello", "exe", b"#!/bin/sh\necho hello\n"),
    ("etc", "dir", None),
    ("etc/motd", "file", b"welcome\n"),
    ("etc/motd.link", "symlink", "motd"),
    ("etc/gone", "file", b"to be whited out\n"),
]


# --- import through the CLI: the whole layout ----------------------------------------------


def test_import_writes_dockers_layout(paths: Paths, tmp_path: Any) -> None:
    raw = make_tar(BASE)
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(raw))
    out = run_cli(paths, "import", "-c", 'CMD ["/bin/hello"]', "-c", "ENV A=1", "-m", "hi",
                  str(src), "minitest:1.0").stdout
    image_id = out.strip()
    assert re.fullmatch(r"sha256:[a-f0-9]{64}", image_id)
    diff_id = sha256(raw)  # DiffID = digest of the *uncompressed* tar

    # overlay2/
    home = paths.overlay2
    assert mode_of(home) == 0o710
    assert mode_of(os.path.join(home, "l")) == 0o700
    (cache_id,) = layer_dirs(paths)
    assert HEX64.match(cache_id)
    layer = os.path.join(home, cache_id)
    assert mode_of(layer) == 0o710
    assert sorted(os.listdir(layer)) == ["diff", "link"]  # a base layer: nothing else
    assert mode_of(os.path.join(layer, "diff")) == 0o755
    lid = read(os.path.join(layer, "link"))
    assert LINK.match(lid)
    assert os.listdir(os.path.join(home, "l")) == [lid]
    assert os.readlink(os.path.join(home, "l", lid)) == f"../{cache_id}/diff"
    assert read(os.path.join(layer, "diff", "etc", "motd")) == "welcome\n"
    assert os.readlink(os.path.join(layer, "diff", "etc", "motd.link")) == "motd"
    assert mode_of(os.path.join(layer, "diff", "bin", "hello")) == 0o755

    # layerdb/sha256/<chainid>/ : diff, size, cache-id (no parent for a base layer)
    store_root = paths.image_store
    chain = diff_id
    ldir = os.path.join(store_root, "layerdb", "sha256", chain[7:])
    assert sorted(os.listdir(ldir)) == ["cache-id", "diff", "size", "tar-split.json.gz"]
    assert read(os.path.join(ldir, "diff")) == diff_id
    assert read(os.path.join(ldir, "cache-id")) == cache_id
    store = ImageStore(paths)
    assert int(read(os.path.join(ldir, "size"))) == store.driver.diff_size(cache_id)
    assert int(read(os.path.join(ldir, "size"))) == len(b"#!/bin/sh\necho hello\n") + len(
        b"welcome\n") + len("motd") + len(b"to be whited out\n")
    assert os.listdir(os.path.join(store_root, "layerdb", "tmp")) == []

    # imagedb: content = config bytes, id = sha256(content), 0600
    content = os.path.join(store_root, "imagedb", "content", "sha256", image_id[7:])
    assert mode_of(content) == 0o600
    with open(content, "rb") as f:
        config_bytes = f.read()
    assert sha256(config_bytes) == image_id
    config = json.loads(config_bytes)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    assert config["os"] == "linux"
    assert config["architecture"] == engine.host_platform()[0]
    assert config["config"] == {"Env": ["A=1"], "Cmd": ["/bin/hello"]}
    assert config["comment"] == "hi"
    assert config["history"] == [{"created": config["created"], "comment": "hi"}]
    meta = os.path.join(store_root, "imagedb", "metadata", "sha256", image_id[7:])
    assert os.listdir(meta) == ["lastUpdated"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z",
                        read(os.path.join(meta, "lastUpdated")))

    # repositories.json
    refs = os.path.join(store_root, "repositories.json")
    assert mode_of(refs) == 0o600
    assert json.loads(read(refs)) == {"Repositories": {"minitest": {"minitest:1.0": image_id}}}
    assert _mounts_under(paths.root) == []


def test_import_from_stdin_without_tag(paths: Paths) -> None:
    raw = make_tar(BASE)
    image_id = run_cli(paths, "import", "-", stdin=raw).stdout.strip()
    config = ImageStore(paths).get_image_config(image_id)
    assert config["comment"] == "Imported from -"
    assert config["history"][0]["comment"] == "Imported from -"
    assert ImageStore(paths).references(image_id) == []
    assert run_cli(paths, "images", "-a").stdout.splitlines()[1].startswith(
        "<none>       <none>    " + image_id[7:19])


def test_same_layer_is_stored_once(paths: Paths, tmp_path: Any) -> None:
    src = tmp_path / "l.tar"
    src.write_bytes(make_tar(BASE))
    a = run_cli(paths, "import", str(src), "a").stdout.strip()
    b = run_cli(paths, "import", str(src), "b").stdout.strip()
    assert a != b  # the configs differ in "created"
    assert len(layer_dirs(paths)) == 1
    assert len(os.listdir(os.path.join(paths.overlay2, "l"))) == 1
    assert len(ImageStore(paths).list_layers()) == 1
    # Removing one image keeps the shared layer; removing the other removes it.
    assert run_cli(paths, "rmi", "a").stdout.splitlines() == ["Untagged: a:latest",
                                                             f"Deleted: {a}"]
    assert len(layer_dirs(paths)) == 1
    lines = run_cli(paths, "rmi", "b").stdout.splitlines()
    assert lines[:2] == ["Untagged: b:latest", f"Deleted: {b}"]
    assert lines[2].startswith("Deleted: sha256:")
    assert layer_dirs(paths) == set()


def test_concurrent_imports_keep_the_store_consistent(paths: Paths, tmp_path: Any) -> None:
    src = tmp_path / "l.tar"
    src.write_bytes(make_tar(BASE))
    cmd = [sys.executable, "-m", "minidock", "--root", paths.root, "--run-root", paths.run_root,
           "import", str(src)]
    procs = [subprocess.Popen([*cmd, f"t{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = ImageStore(paths)
    assert len(store.list_images()) == 4
    assert len(store.list_layers()) == 1
    assert len(layer_dirs(paths)) == 1
    repos = json.loads(read(store.refs_file))["Repositories"]
    assert sorted(repos) == ["t0", "t1", "t2", "t3"]


# --- a two-layer chain through the store API -----------------------------------------------


def test_two_layer_chain(paths: Paths) -> None:
    store = ImageStore(paths)
    base = register(store, make_tar(BASE))
    top_tar = make_tar([("etc", "dir", None), ("etc/.wh.gone", "file", b""),
                        ("etc/new", "file", b"new\n")])
    top = register(store, top_tar, base.chain_id)
    assert top.diff_id == sha256(top_tar)
    assert top.chain_id == chain_ids([base.diff_id, top.diff_id])[-1]
    assert top.parent == base.chain_id

    ldir = os.path.join(paths.image_store, "layerdb", "sha256", top.chain_id[7:])
    assert sorted(os.listdir(ldir)) == ["cache-id", "diff", "parent", "size", "tar-split.json.gz"]
    assert read(os.path.join(ldir, "parent")) == base.chain_id

    home = paths.overlay2
    base_dir, top_dir = os.path.join(home, base.cache_id), os.path.join(home, top.cache_id)
    assert sorted(os.listdir(top_dir)) == ["diff", "link", "lower", "work"]
    assert mode_of(os.path.join(top_dir, "work")) == 0o700
    base_link = read(os.path.join(base_dir, "link"))
    assert read(os.path.join(top_dir, "lower")) == f"l/{base_link}"
    assert sorted(os.listdir(base_dir)) == ["committed", "diff", "link"]
    assert mode_of(os.path.join(base_dir, "committed")) == 0o600
    assert os.path.getsize(os.path.join(base_dir, "committed")) == 0
    # the whiteout is an overlay whiteout: a 0/0 character device
    wh = os.lstat(os.path.join(top_dir, "diff", "etc", "gone"))
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0

    image_id = store.create_image(image_config([base.diff_id, top.diff_id]))
    assert store.image_size(image_id) == base.size + top.size
    info = engine.inspect_image(paths, image_id[7:19])
    assert info["GraphDriver"] == {
        "Data": {
            "LowerDir": f"{base_dir}/diff",
            "MergedDir": f"{top_dir}/merged",
            "UpperDir": f"{top_dir}/diff",
            "WorkDir": f"{top_dir}/work",
        },
        "Name": "overlay2",
    }
    assert info["RootFS"] == {"Type": "layers", "Layers": [base.diff_id, top.diff_id]}
    assert info["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}

    # Mounting the top layer (not committed: rw) shows the union with the whiteout applied.
    merged = store.driver.get(top.cache_id)
    try:
        assert merged == f"{top_dir}/merged" and os.path.ismount(merged)
        assert sorted(os.listdir(os.path.join(merged, "etc"))) == ["motd", "motd.link", "new"]
        assert store.driver.get(top.cache_id) == merged  # idempotent
    finally:
        store.driver.put(top.cache_id)
    assert not os.path.exists(f"{top_dir}/merged")

    # The base layer is committed and has no lower: get() is just its diff dir.
    assert store.driver.get(base.cache_id) == f"{base_dir}/diff"

    # Deleting the image removes both layers, top first.
    assert store.delete_image(image_id) == [top.chain_id, base.chain_id]
    assert layer_dirs(paths) == set()
    assert os.listdir(os.path.join(home, "l")) == []
    assert store.list_layers() == []
    assert _mounts_under(paths.root) == []


def test_committed_layer_with_lowers_mounts_read_only(paths: Paths) -> None:
    store = ImageStore(paths)
    a = register(store, make_tar([("a", "file", b"a")]))
    b = register(store, make_tar([("b", "file", b"b")]), a.chain_id)
    register(store, make_tar([("c", "file", b"c")]), b.chain_id)  # commits b
    merged = store.driver.get(b.cache_id)
    try:
        assert sorted(os.listdir(merged)) == ["a", "b"]
        with pytest.raises(OSError) as e:
            open(os.path.join(merged, "x"), "w").close()
        assert e.value.errno == errno.EROFS
    finally:
        store.driver.put(b.cache_id)
    assert not os.path.ismount(os.path.join(paths.overlay2, b.cache_id, "merged"))


def test_layer_kept_while_another_layer_uses_it(paths: Paths) -> None:
    store = ImageStore(paths)
    a = register(store, make_tar([("a", "file", b"a")]))
    b = register(store, make_tar([("b", "file", b"b")]), a.chain_id)
    assert store.release_layer(a.chain_id) == []  # b's parent
    assert store.release_layer(b.chain_id) == [b.chain_id, a.chain_id]
    assert layer_dirs(paths) == set()


def test_failed_apply_leaves_nothing(paths: Paths) -> None:
    store = ImageStore(paths)
    base = register(store, make_tar(BASE))
    before_dirs = layer_dirs(paths)
    before_links = set(os.listdir(os.path.join(paths.overlay2, "l")))
    good = make_tar([("x", "file", b"x" * 5000)])
    for bad in (b"not a tar at all" * 64, good[: len(good) // 2],
                make_tar([("../escape", "file", b"x")])):
        with pytest.raises(MinidockError):
            register(store, bad, base.chain_id)
        assert layer_dirs(paths) == before_dirs
        assert set(os.listdir(os.path.join(paths.overlay2, "l"))) == before_links
        assert os.listdir(os.path.join(paths.image_store, "layerdb", "tmp")) == []
        assert store.list_layers() == [base.chain_id]
    assert not os.path.exists(os.path.join(str(paths.root), "escape"))


def test_create_image_requires_registered_layers(paths: Paths) -> None:
    store = ImageStore(paths)
    with pytest.raises(StorageError, match="is not registered"):
        store.create_image(image_config(["sha256:" + "e" * 64]))
    assert store.list_images() == []


def test_corrupt_config_is_detected(paths: Paths) -> None:
    store = ImageStore(paths)
    base = register(store, make_tar(BASE))
    image_id = store.create_image(image_config([base.diff_id]))
    path = os.path.join(paths.image_store, "imagedb", "content", "sha256", image_id[7:])
    with open(path, "ab") as f:
        f.write(b" ")
    with pytest.raises(StorageError, match="does not match its digest"):
        store.get_config(image_id)


# --- container rw layers -------------------------------------------------------------------


def test_rw_layer_with_init_layer(paths: Paths) -> None:
    store = ImageStore(paths)
    base = register(store, make_tar(BASE))
    image_id = store.create_image(image_config([base.diff_id]))
    cid = secrets.token_hex(32)
    mount_id = store.create_rw_layer(cid, image_id)
    assert HEX64.match(mount_id)
    mdir = os.path.join(paths.image_store, "layerdb", "mounts", cid)
    assert sorted(os.listdir(mdir)) == ["init-id", "mount-id", "parent"]
    assert read(os.path.join(mdir, "mount-id")) == mount_id
    assert read(os.path.join(mdir, "init-id")) == f"{mount_id}-init"
    assert read(os.path.join(mdir, "parent")) == base.chain_id

    home = paths.overlay2
    init_dir, rw_dir = os.path.join(home, f"{mount_id}-init"), os.path.join(home, mount_id)
    assert sorted(os.listdir(init_dir)) == ["committed", "diff", "link", "lower", "work"]
    assert sorted(os.listdir(rw_dir)) == ["diff", "link", "lower", "work"]
    init_link = read(os.path.join(init_dir, "link"))
    base_link = read(os.path.join(home, base.cache_id, "link"))
    assert read(os.path.join(rw_dir, "lower")) == f"l/{init_link}:l/{base_link}"
    init_diff = os.path.join(init_dir, "diff")
    for d in ("dev/pts", "dev/shm", "proc", "sys"):
        assert stat.S_ISDIR(os.lstat(os.path.join(init_diff, d)).st_mode)
        assert mode_of(os.path.join(init_diff, d)) == 0o755
    for f in (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"):
        st = os.lstat(os.path.join(init_diff, f))
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and mode_of(
            os.path.join(init_diff, f)) == 0o755
    assert os.readlink(os.path.join(init_diff, "etc", "mtab")) == "/proc/mounts"
    assert not os.path.exists(os.path.join(init_dir, "merged"))  # unmounted after setup

    assert store.rw_layer_metadata(cid) == {
        "LowerDir": f"{init_dir}/diff:{home}/{base.cache_id}/diff",
        "MergedDir": f"{rw_dir}/merged",
        "UpperDir": f"{rw_dir}/diff",
        "WorkDir": f"{rw_dir}/work",
    }

    merged = store.mount_rw_layer(cid)
    try:
        assert merged == f"{rw_dir}/merged"
        assert os.path.ismount(merged)
        assert read(os.path.join(merged, "etc", "motd")) == "welcome\n"
        assert os.path.isfile(os.path.join(merged, ".dockerenv"))
        assert os.path.isfile(os.path.join(merged, "etc", "hosts"))
        assert os.path.isdir(os.path.join(merged, "dev", "pts"))
        assert os.readlink(os.path.join(merged, "etc", "mtab")) == "/proc/mounts"
        with open(os.path.join(merged, "written"), "w") as out:
            out.write("by the container\n")
        assert read(os.path.join(rw_dir, "diff", "written")) == "by the container\n"
        assert store.rw_layer_size(cid) == len("by the container\n")
    finally:
        store.unmount_rw_layer(cid)
    assert not os.path.exists(merged)

    # The image cannot be deleted from under the container's layers: they are still used.
    assert store.release_layer(base.chain_id) == []
    store.remove_rw_layer(cid)
    assert layer_dirs(paths) == {base.cache_id}
    assert os.listdir(os.path.join(paths.image_store, "layerdb", "mounts")) == []
    assert len(os.listdir(os.path.join(home, "l"))) == 1
    assert _mounts_under(paths.root) == []


def test_init_layer_does_not_follow_image_symlinks(paths: Paths, tmp_path: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "outside2").mkdir()
    evil = make_tar([
        ("etc", "symlink", str(outside)),
        ("dev", "symlink", str(tmp_path / "outside2")),
        (".dockerenv", "symlink", str(outside / "dockerenv")),
        ("proc", "symlink", "/"),
    ])
    store = ImageStore(paths)
    layer = register(store, evil)
    image_id = store.create_image(image_config([layer.diff_id]))
    cid = secrets.token_hex(32)
    store.create_rw_layer(cid, image_id)
    assert os.listdir(outside) == []
    assert os.listdir(tmp_path / "outside2") == []
    merged = store.mount_rw_layer(cid)
    try:
        assert stat.S_ISDIR(os.lstat(os.path.join(merged, "etc")).st_mode)
        assert sorted(os.listdir(os.path.join(merged, "etc"))) == [
            "hostname", "hosts", "mtab", "resolv.conf"]
        assert stat.S_ISREG(os.lstat(os.path.join(merged, ".dockerenv")).st_mode)
        assert os.listdir(os.path.join(merged, "proc")) == []
    finally:
        store.unmount_rw_layer(cid)
        store.remove_rw_layer(cid)


def test_image_without_layers_gets_base_init_layer(paths: Paths) -> None:
    store = ImageStore(paths)
    image_id = store.create_image(image_config([]))
    cid = secrets.token_hex(32)
    mount_id = store.create_rw_layer(cid, image_id)
    assert "parent" not in os.listdir(os.path.join(paths.image_store, "layerdb", "mounts", cid))
    merged = store.mount_rw_layer(cid)
    try:
        assert os.path.isfile(os.path.join(merged, ".dockerenv"))
        assert os.path.ismount(merged)
    finally:
        store.unmount_rw_layer(cid)
    store.remove_rw_layer(cid)
    assert mount_id not in layer_dirs(paths)


# --- deep chains: the relative-path mount --------------------------------------------------


def test_deep_chain_mounts_with_relative_paths(paths: Paths, tmp_path: Any) -> None:
    store = ImageStore(paths)
    n = 70
    parent = None
    diff_ids = []
    for i in range(n):
        layer = register(store, make_tar([(f"f{i:02d}", "file", str(i).encode())]), parent)
        parent = layer.chain_id
        diff_ids.append(layer.diff_id)
    image_id = store.create_image(image_config(diff_ids))
    cid = secrets.token_hex(32)
    store.create_rw_layer(cid, image_id)
    rw = store.get_rw_layer(cid)
    # absolute mount data would not fit in a page: the fallback is what makes this work
    lowers = read(os.path.join(paths.overlay2, rw.mount_id, "lower")).split(":")
    assert len(lowers) == n + 1
    abs_len = sum(len(os.path.join(paths.overlay2, lower)) + 1 for lower in lowers)
    assert abs_len > os.sysconf("SC_PAGE_SIZE")

    trace_file = tmp_path / "trace"
    fd = os.open(trace_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    trace.enable(fd)
    try:
        merged = store.mount_rw_layer(cid)
    finally:
        trace.enable(-1)
        os.close(fd)
    try:
        names = set(os.listdir(merged))
        assert {f"f{i:02d}" for i in range(n)} <= names
        assert ".dockerenv" in names
        assert read(os.path.join(merged, "f42")) == "42"
    finally:
        store.unmount_rw_layer(cid)
    text = trace_file.read_text()
    assert f'chdir("{paths.overlay2}")' in text
    assert f'"{rw.mount_id}/merged", \'overlay\'' in text
    assert "lowerdir=l/" in text
    assert len(store.rw_layer_metadata(cid)["LowerDir"].split(":")) == n + 1

    store.remove_rw_layer(cid)
    assert run_cli(paths, "rmi", image_id).stdout.count("Deleted: ") == n + 1
    assert layer_dirs(paths) == set()
    assert os.listdir(os.path.join(paths.overlay2, "l")) == []
    assert _mounts_under(paths.root) == []


def test_driver_max_depth(paths: Paths) -> None:
    driver = Overlay2Driver(paths.overlay2)
    driver.create("d0")
    for i in range(1, MAX_DEPTH + 1):
        driver.create(f"d{i}", f"d{i - 1}")
    assert len(driver.lower_ids(f"d{MAX_DEPTH}")) == MAX_DEPTH
    assert driver.lower_ids("d2") == ["d1", "d0"]
    with pytest.raises(StorageError, match="max depth exceeded"):
        driver.create("too-deep", f"d{MAX_DEPTH}")
    assert not driver.exists("too-deep")
    assert len(os.listdir(os.path.join(paths.overlay2, "l"))) == MAX_DEPTH + 1


def test_mount_error_names_action_and_path(paths: Paths) -> None:
    driver = Overlay2Driver(paths.overlay2)
    driver.create("lo")
    driver.create("up", "lo")
    os.rmdir(os.path.join(paths.overlay2, "up", "work"))  # overlay refuses a missing workdir
    with pytest.raises(StorageError) as e:
        driver.get("up")
    assert str(e.value).startswith(f"mount overlay on {paths.overlay2}/up/merged: ")
    assert not os.path.exists(os.path.join(paths.overlay2, "up", "merged"))
    driver.remove("up")
    driver.remove("lo")
    assert layer_dirs(paths) == set()


# --- CLI output: images, tag, rmi, inspect -------------------------------------------------


def test_images_tag_rmi_inspect_output(paths: Paths, tmp_path: Any) -> None:
    src = tmp_path / "l.tar"
    src.write_bytes(make_tar(BASE))
    image_id = run_cli(paths, "import", str(src), "busybox").stdout.strip()
    short = image_id[7:19]
    run_cli(paths, "tag", "busybox", "localhost:5000/tools/bb:v1")
    run_cli(paths, "tag", short, "other")

    lines = run_cli(paths, "images").stdout.splitlines()
    # tabwriter: each column is its widest cell + 3 (at least 10); the last is not padded
    assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert lines[0].index("TAG") == len("localhost:5000/tools/bb") + 3
    assert lines[0].index("IMAGE ID") - lines[0].index("TAG") == 10
    rows = sorted(line.split(None, 2)[:2] for line in lines[1:])
    assert rows == [["busybox", "latest"], ["localhost:5000/tools/bb", "v1"],
                    ["other", "latest"]]
    for line in lines[1:]:
        assert re.search(rf" {short} +(Less than a second|\d+ seconds?) ago +50B$", line), line
    assert run_cli(paths, "images", "-q").stdout.split() == [short] * 3
    assert image_id in run_cli(paths, "images", "--no-trunc").stdout
    filtered = run_cli(paths, "images", "other").stdout.splitlines()
    assert len(filtered) == 2 and filtered[1].startswith("other ")
    assert run_cli(paths, "image", "ls", "-q").stdout.split() == [short] * 3

    info = json.loads(run_cli(paths, "image", "inspect", "busybox", short).stdout)
    assert len(info) == 2 and info[0] == info[1]
    variant = ["Variant"] if engine.host_platform()[1] else []
    assert list(info[0]) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created",
                             "Author", "Config", "Architecture", *variant, "Os", "Size",
                             "GraphDriver", "RootFS", "Metadata"]
    assert info[0]["Id"] == image_id
    assert info[0]["RepoTags"] == ["busybox:latest", "localhost:5000/tools/bb:v1",
                                   "other:latest"]
    assert info[0]["Size"] == 50
    assert info[0]["GraphDriver"]["Name"] == "overlay2"
    fmt = run_cli(paths, "image", "inspect", "-f", "{{.Id}} {{json .RootFS.Type}}", "busybox")
    assert fmt.stdout == f'{image_id} "layers"\n'

    missing = run_cli(paths, "image", "inspect", "nope", ok=False)
    assert missing.returncode == 125
    assert "No such image: nope" in missing.stderr

    assert run_cli(paths, "rmi", "other").stdout == "Untagged: other:latest\n"
    # by id with two tags left: Docker refuses without -f
    refused = run_cli(paths, "rmi", short, ok=False)
    assert refused.returncode == 125
    assert (f"conflict: unable to delete {short} (must be forced) - image is referenced in "
            "multiple repositories") in refused.stderr
    out = run_cli(paths, "rmi", "-f", short).stdout.splitlines()
    assert out[:2] == ["Untagged: busybox:latest", "Untagged: localhost:5000/tools/bb:v1"]
    assert out[2] == f"Deleted: {image_id}"
    assert out[3].startswith("Deleted: sha256:")
    assert run_cli(paths, "images").stdout.splitlines()[1:] == []
    assert json.loads(read(os.path.join(paths.image_store, "repositories.json"))) == {
        "Repositories": {}}
    assert layer_dirs(paths) == set()

    gone = run_cli(paths, "rmi", "busybox", ok=False)
    assert gone.returncode == 125 and "No such image: busybox" in gone.stderr
    bad = run_cli(paths, "tag", "x", "Bad/Name", ok=False)
    assert bad.returncode == 125


def test_rmi_of_image_a_container_uses(paths: Paths, tmp_path: Any) -> None:
    src = tmp_path / "l.tar"
    src.write_bytes(make_tar(BASE))
    image_id = run_cli(paths, "import", str(src), "busybox").stdout.strip()
    cid = "1a2b3c4d5e6f" + "0" * 52

    def users(i: str) -> list[str]:
        return [cid] if i == image_id else []

    with pytest.raises(Conflict) as e:
        engine.remove_image(paths, "busybox", False, users)
    assert str(e.value) == (
        'conflict: unable to remove repository reference "busybox" (must force) - container '
        f"1a2b3c4d5e6f is using its referenced image {image_id[7:19]}"
    )
    with pytest.raises(Conflict, match="image is being used by container 1a2b3c4d5e6f"):
        engine.remove_image(paths, image_id, True, users)
    # force: untag only, the image (and its layer) stay for the container
    assert engine.remove_image(paths, "busybox", True, users) == ["Untagged: busybox:latest"]
    assert ImageStore(paths).image_exists(image_id)
    assert len(layer_dirs(paths)) == 1
    (chain,) = ImageStore(paths).list_layers()
    assert engine.remove_image(paths, image_id, False, lambda i: []) == [
        f"Deleted: {image_id}", f"Deleted: {chain}"]
    assert ImageStore(paths).list_images() == []


def test_missing_overlayfs_gives_a_hint(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = Overlay2Driver(paths.overlay2)
    driver.create("lo")
    driver.create("up", "lo")

    def no_overlay(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr("minidock.storage.overlay2.linux.mount", no_overlay)
    with pytest.raises(StorageError) as e:
        driver.get("up")
    assert str(e.value) == f"mount overlay on {paths.overlay2}/up/merged: no such device"
    assert e.value.hint == "overlayfs is not available in this kernel: modprobe overlay"


def test_remove_rw_layer_while_mounted(paths: Paths) -> None:
    store = ImageStore(paths)
    base = register(store, make_tar(BASE))
    image_id = store.create_image(image_config([base.diff_id]))
    cid = secrets.token_hex(32)
    store.create_rw_layer(cid, image_id)
    merged = store.mount_rw_layer(cid)
    assert os.path.ismount(merged)
    with pytest.raises(Conflict):
        store.create_rw_layer(cid, image_id)
    store.remove_rw_layer(cid)
    assert _mounts_under(paths.root) == []
    assert layer_dirs(paths) == {base.cache_id}
    store.remove_rw_layer(cid)  # idempotent
