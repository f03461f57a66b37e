"""A failed step of the image store, layer apply and export, or a registry request leaves
nothing behind: no staging dir, no overlay2 dir or tar-split file, no open descriptor, no
busy connection. No root and no mount: the failing step is made to fail (``Interrupted``
stands for a KeyboardInterrupt, which is undone too)."""

from __future__ import annotations

import errno
import http.client
import io
import json
import os
from pathlib import Path

import pytest
from rollback_helpers import Interrupted, open_fds, raising
from tarbuild import d, entry, make_tar

from minidock.errors import LayerError, StorageError
from minidock.image import export, layer
from minidock.image.distribution.transport import Transport
from minidock.image.layer import apply_layer
from minidock.image.store import ImageStore
from minidock.paths import Paths
from minidock.settings import EngineConfig


def _store(tmp_path: Path) -> ImageStore:
    return ImageStore(Paths(root=str(tmp_path / "root"), run_root=str(tmp_path / "run")))


def _tar(*names: str) -> io.BytesIO:
    return io.BytesIO(make_tar(d("etc"), *(entry(f"etc/{n}", data=n.encode()) for n in names)))


def _overlay2_dirs(store: ImageStore) -> set[str]:
    return set(os.listdir(store.driver.home)) - {"l"}


def _leftovers(store: ImageStore) -> list[str]:
    """What a failed step may leave: staging dirs and tar-split files in layerdb/tmp."""
    return os.listdir(os.path.join(store.layerdb, "tmp"))


# --- the store ---------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "full"), Interrupted()])
def test_commit_dir_failing_write_removes_the_staging_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    from minidock.image.store import base

    store = _store(tmp_path)
    store._ensure_dirs()
    real_write = base.write_file_synced
    calls = []

    def write(path: str, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
        calls.append(path)
        if len(calls) == 2:  # the first file is written, the second fails
            raise exc
        real_write(path, data, mode, sync)

    monkeypatch.setattr(base, "write_file_synced", write)
    final = os.path.join(store.layerdb, "sha256", "f" * 64)
    with pytest.raises(type(exc)):
        store._commit_dir({"a": "1", "b": "2"}, final)
    assert not os.path.lexists(final)
    assert _leftovers(store) == []


@pytest.mark.parametrize("exc", [StorageError("no room"), Interrupted()])
def test_register_layer_failing_commit_leaves_no_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    store = _store(tmp_path)
    monkeypatch.setattr(store, "_commit_dir", raising(exc))
    with pytest.raises(type(exc)):
        store.register_layer(_tar("a"))
    assert _overlay2_dirs(store) == set()
    assert os.listdir(os.path.join(store.driver.home, "l")) == []
    assert _leftovers(store) == []  # the tar-split file too
    assert store.list_layers() == []


def test_register_layer_failing_driver_create_leaves_no_tar_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    monkeypatch.setattr(store.driver, "create", raising(StorageError("create layer: no")))
    with pytest.raises(StorageError):
        store.register_layer(_tar("a"))
    assert _leftovers(store) == []


def test_register_layer_twice_drops_the_second_copy(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.register_layer(_tar("a"))
    again = store.register_layer(_tar("a"))
    assert again == first
    assert _overlay2_dirs(store) == {first.cache_id}
    assert _leftovers(store) == []
    assert os.path.isfile(store.tar_split_path(first.chain_id))


@pytest.mark.parametrize("exc", [StorageError("no room"), Interrupted()])
def test_create_rw_layer_failing_commit_removes_both_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    store = _store(tmp_path)
    base_layer = store.register_layer(_tar("a"))
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [base_layer.diff_id]}}
    image_id = store.create_image(json.dumps(config).encode())
    links = set(os.listdir(os.path.join(store.driver.home, "l")))
    # No mount without root: the -init layer is filled in its diff dir instead.
    monkeypatch.setattr(store.driver, "get", lambda layer_id, volatile=False:
                        store.driver.diff_path(layer_id))
    monkeypatch.setattr(store.driver, "put", lambda layer_id: None)
    real_create = store.driver.create
    made = []

    def create(layer_id: str, parent: str | None = None) -> None:
        real_create(layer_id, parent)
        made.append(layer_id)

    monkeypatch.setattr(store.driver, "create", create)
    monkeypatch.setattr(store, "_commit_dir", raising(exc))
    with pytest.raises(type(exc)):
        store.create_rw_layer("c" * 64, image_id)
    assert len(made) == 2  # the -init layer and the rw layer were made, then removed
    assert _overlay2_dirs(store) == {base_layer.cache_id}
    assert set(os.listdir(os.path.join(store.driver.home, "l"))) == links


# --- layer apply -------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [OSError(errno.EPERM, "no"), Interrupted()])
def test_apply_layer_failing_directory_chmod_leaks_no_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    import stat

    real_fchmod = os.fchmod

    def fchmod(fd: int, mode: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise exc
        real_fchmod(fd, mode)

    root = tmp_path / "root"
    root.mkdir()
    # "a/b/" creates the missing parent "a" (_create_dir), then "a/b" itself (_mkdir).
    for tar in (make_tar(d("a/b")), make_tar(d("a"))):
        before = open_fds()
        monkeypatch.setattr(layer.os, "fchmod", fchmod)
        with pytest.raises(LayerError if isinstance(exc, OSError) else Interrupted):
            apply_layer(io.BytesIO(tar), str(root))
        monkeypatch.undo()
        assert open_fds() == before


# --- export --------------------------------------------------------------------------------


def test_dir_cache_walk_into_a_missing_dir_keeps_no_fd(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x")
    root_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dirs = export._DirCache(root_fd)
        before = open_fds()
        with pytest.raises(FileNotFoundError):
            dirs.open(b"a/missing/f")
        assert open_fds() == before
        fd = dirs.open(b"a/b/f")
        assert os.read(fd, 1) == b"x"
        os.close(fd)
        dirs.close()
        assert open_fds() == before
    finally:
        os.close(root_fd)


# --- the registry transport ------------------------------------------------------------------


class _Conn:
    def __init__(self, fail: BaseException | None) -> None:
        self.fail = fail
        self.closed = False

    def request(self, *args: object, **kwargs: object) -> None:
        if self.fail is not None:
            raise self.fail

    def getresponse(self) -> object:
        return type("Resp", (), {"status": 200, "reason": "OK", "headers": {}})()

    def close(self) -> None:
        self.closed = True


def _transport(monkeypatch: pytest.MonkeyPatch, conns: list[tuple[_Conn, bool]]) -> Transport:
    t = Transport(EngineConfig(certs_dir="/nonexistent"))

    def connection(scheme: str, netloc: str, verify: bool) -> tuple[_Conn, bool]:
        conn, reused = conns.pop(0)
        t._busy[conn] = (scheme, netloc, verify)  # type: ignore[index]
        return conn, reused

    monkeypatch.setattr(t, "_connection", connection)
    return t


def test_request_on_a_stale_kept_alive_connection_retries_on_a_new_one(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    stale, fresh = _Conn(http.client.RemoteDisconnected("closed")), _Conn(None)
    t = _transport(monkeypatch, [(stale, True), (fresh, False)])
    resp = t.request("GET", "http://r.test/v2/", {}, None, True)
    assert resp.status == 200
    assert stale.closed and stale not in t._busy  # type: ignore[comparison-overlap]
    assert not fresh.closed and fresh in t._busy  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("exc", [ConnectionResetError(), Interrupted()])
def test_request_failing_releases_the_connection(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    first, second = _Conn(http.client.RemoteDisconnected("closed")), _Conn(exc)
    t = _transport(monkeypatch, [(first, True), (second, False)])
    with pytest.raises(type(exc)):
        t.request("GET", "http://r.test/v2/", {}, None, True)
    assert first.closed and second.closed
    assert t._busy == {}
    fresh = _Conn(ConnectionResetError())  # not kept alive: no retry
    t = _transport(monkeypatch, [(fresh, False)])
    with pytest.raises(ConnectionResetError):
        t.request("GET", "http://r.test/v2/", {}, None, True)
    assert fresh.closed and t._busy == {}
