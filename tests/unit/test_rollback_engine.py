"""A failed engine step leaves nothing behind: a --rm container that cannot start is removed,
an import, load or pull that fails keeps none of the layers it registered (a pull after
Ctrl-C keeps the complete ones), ``-o FILE`` is written whole or not at all. No root, no
registry: image stores live in tmp_path and the registry client is faked (``Interrupted``
stands for any BaseException that is not a KeyboardInterrupt)."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rollback_helpers import Interrupted, raising

from minidock.engine.containers import monitor
from minidock.engine.images import archive, import_
from minidock.errors import ContainerRuntimeError, RegistryError
from minidock.image.reference import parse_reference
from minidock.image.store import ImageStore, chain_ids
from minidock.paths import Paths

pull = importlib.import_module("minidock.engine.distribution.pull")  # the package's pull()




def _paths(tmp_path: Path) -> Paths:
    return Paths(root=str(tmp_path / "root"), run_root=str(tmp_path / "run"))


def _tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        data = name.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 1_600_000_000
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- run -d --rm ---------------------------------------------------------------------------


@pytest.mark.parametrize("auto_remove", [True, False])
@pytest.mark.parametrize("exc", [ContainerRuntimeError("start: no"), Interrupted()])
def test_run_detached_removes_a_rm_container_that_cannot_start(
    monkeypatch: pytest.MonkeyPatch, auto_remove: bool, exc: BaseException
) -> None:
    removed: list[tuple[str, bool]] = []
    monkeypatch.setattr(monitor.ct, "create", lambda paths, opts: SimpleNamespace(id="c1"))
    monkeypatch.setattr(monitor.ct, "remove",
                        lambda paths, cid, force=False: removed.append((cid, force)))
    monkeypatch.setattr(monitor, "start_detached", raising(exc))
    opts = SimpleNamespace(auto_remove=auto_remove)
    with pytest.raises(type(exc)):
        monitor.run_detached(None, opts)  # type: ignore[arg-type]
    assert removed == ([("c1", True)] if auto_remove else [])
    monkeypatch.setattr(monitor, "start_detached", lambda paths, cid: "started")
    assert monitor.run_detached(None, opts) == "started"  # type: ignore[arg-type]
    assert len(removed) == (1 if auto_remove else 0)


# --- save -o -------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), Interrupted()])
def test_write_output_failing_write_leaves_no_file(tmp_path: Path, exc: BaseException) -> None:
    def write(f: Any) -> None:
        f.write(b"half")
        raise exc

    with pytest.raises(type(exc)):
        archive._write_output(str(tmp_path / "out.tar"), "save", write)
    assert os.listdir(tmp_path) == []
    archive._write_output(str(tmp_path / "out.tar"), "save", lambda f: f.write(b"whole"))
    assert os.listdir(tmp_path) == ["out.tar"]
    assert (tmp_path / "out.tar").read_bytes() == b"whole"


# --- import --------------------------------------------------------------------------------


@pytest.mark.parametrize("fail", ["build_import_config", "create_image"])
@pytest.mark.parametrize("exc", [RegistryError("no"), Interrupted()])
def test_import_failing_after_the_layer_releases_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str, exc: BaseException
) -> None:
    source = tmp_path / "rootfs.tar"
    source.write_bytes(_tar("a"))
    paths = _paths(tmp_path)
    if fail == "create_image":
        monkeypatch.setattr(ImageStore, "create_image", raising(exc))
    else:
        monkeypatch.setattr(import_, "build_import_config", raising(exc))
    with pytest.raises(type(exc)):
        import_.import_image(paths, str(source), "imported:latest")
    assert ImageStore(paths).list_layers() == []
    monkeypatch.undo()
    image_id = import_.import_image(paths, str(source), "imported:latest")
    assert ImageStore(paths).image_exists(image_id)


# --- load ----------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [RegistryError("no"), Interrupted()])
def test_load_failing_releases_the_layers_it_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    source = tmp_path / "archive.tar"
    source.write_bytes(_tar("manifest.json"))
    paths = _paths(tmp_path)

    def read_archive(self: Any, tf: Any) -> None:
        for name in ("a", "b"):
            layer = self.store.register_layer(io.BytesIO(_tar(name)))
            self.registered.append(layer.chain_id)
        raise exc

    monkeypatch.setattr(archive._Loader, "read_archive", read_archive)
    with pytest.raises(type(exc)):
        archive.load(paths, str(source))
    assert ImageStore(paths).list_layers() == []
    assert os.listdir(paths.tmp) == []  # the spool dir too


# --- pull ----------------------------------------------------------------------------------


class _Client:
    """Serves blobs from memory; records when it is closed."""

    def __init__(self, blobs: dict[str, bytes], events: list[str]) -> None:
        self.blobs = blobs
        self.events = events

    def download_blob(self, path: str, desc: Any, write: Any, cancelled: Any,
                      progress: Any) -> None:
        write(self.blobs[desc.digest])

    def close(self) -> None:
        self.events.append("close")


class _Output:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, diff_ids: list[str] | None = None
          ) -> tuple[ImageStore, list[str], list[str], Any]:
    """_fetch_layers of two layers; returns the store, the events (client closed, layers
    released), the real diff ids and a call that runs the pull."""
    paths = _paths(tmp_path)
    store = ImageStore(paths)
    blobs = [_tar("a"), _tar("b")]
    real_diff_ids = [_digest(b) for b in blobs]  # uncompressed: blob digest = DiffID
    manifest = SimpleNamespace(layers=[SimpleNamespace(digest=_digest(b), size=len(b))
                                       for b in blobs])
    events: list[str] = []
    client = _Client({_digest(b): b for b in blobs}, events)
    real_release = store.release_layer

    def release(chain: str) -> list[str]:
        events.append(f"release {chain}")
        return real_release(chain)

    monkeypatch.setattr(store, "release_layer", release)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": real_diff_ids}}).encode()

    def run() -> str:
        return pull._fetch_layers(store, client, parse_reference("registry.test/x:1"),
                                  manifest, diff_ids or real_diff_ids, config, _Output(),
                                  paths)  # type: ignore[arg-type]

    return store, events, real_diff_ids, run


def test_pull_with_a_wrong_diff_id_stops_downloads_then_releases_every_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(tmp_path)
    wrong = ["sha256:" + "0" * 64]
    good = [_digest(_tar("a"))]
    store, events, real, run = _pull(tmp_path, monkeypatch, diff_ids=good + wrong)
    with pytest.raises(RegistryError, match="its DiffID is"):
        run()
    top, base = chain_ids(real)[1], chain_ids(real)[0]
    assert events == ["close", f"release {top}", f"release {base}"]
    assert store.list_layers() == []
    assert os.listdir(paths.tmp) == []  # the work dir and its blob files


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Interrupted()])
def test_pull_interrupted_keeps_complete_layers_only_after_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    store, events, real, run = _pull(tmp_path, monkeypatch)
    monkeypatch.setattr(store, "create_image", raising(exc))
    with pytest.raises(type(exc)):
        run()
    assert events[0] == "close"
    kept = isinstance(exc, KeyboardInterrupt)
    assert sorted(store.list_layers()) == (sorted(chain_ids(real)) if kept else [])


def test_pull_that_succeeds_keeps_its_layers_and_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, events, real, run = _pull(tmp_path, monkeypatch)
    image_id = run()
    assert store.image_exists(image_id)
    assert events == []
    assert sorted(store.list_layers()) == sorted(chain_ids(real))
