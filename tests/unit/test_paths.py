"""Paths: defaults, flags, environment, and the layout derived from the two roots."""

from __future__ import annotations

import os

import pytest

from minidock.paths import DEFAULT_ROOT, DEFAULT_RUN_ROOT, Paths


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIDOCK_ROOT", raising=False)
    monkeypatch.delenv("MINIDOCK_RUN_ROOT", raising=False)


def test_defaults_mirror_docker() -> None:
    p = Paths.from_env()
    assert (p.root, p.run_root) == (DEFAULT_ROOT, DEFAULT_RUN_ROOT)
    assert p.root == "/var/lib/minidock"
    assert p.run_root == "/run/minidock"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDOCK_ROOT", "/srv/md")
    monkeypatch.setenv("MINIDOCK_RUN_ROOT", "/run/md")
    p = Paths.from_env()
    assert (p.root, p.run_root) == ("/srv/md", "/run/md")


def test_arguments_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDOCK_ROOT", "/srv/md")
    monkeypatch.setenv("MINIDOCK_RUN_ROOT", "/run/md")
    p = Paths.from_env(root="/a", run_root="/b")
    assert (p.root, p.run_root) == ("/a", "/b")


def test_empty_values_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDOCK_ROOT", "")
    p = Paths.from_env(root="", run_root=None)
    assert (p.root, p.run_root) == (DEFAULT_ROOT, DEFAULT_RUN_ROOT)


def test_relative_paths_become_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    p = Paths.from_env(root="data", run_root="./state/../run")
    assert p.root == os.path.join(str(tmp_path), "data")
    assert p.run_root == os.path.join(str(tmp_path), "run")


def test_layout_follows_docker_overlay2() -> None:
    p = Paths(root="/r", run_root="/rr")
    assert p.overlay2 == "/r/overlay2"
    assert p.image_store == "/r/image/overlay2"
    assert p.containers == "/r/containers"
    assert p.bundles.startswith("/rr/")
    assert p.runtime_state.startswith("/rr/")
    assert p.locks.startswith("/rr/")
