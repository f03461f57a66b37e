"""A container's directory goes with its record last, so an rm killed half-way leaves a
container the next rm can still name and finish."""

from __future__ import annotations

import os

import pytest

from minidock.engine.containers import store


def test_the_record_files_go_last(tmp_path, monkeypatch):
    d = tmp_path / "c"
    (d / "checkpoints").mkdir(parents=True)
    for name in ("a-log.json", "config.v2.json", "hostconfig.json", "hosts", "zz"):
        (d / name).write_text("x")
    order: list[str] = []
    real = os.unlink

    def unlink(path, *args, **kwargs):
        order.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    store.remove_dir(str(d))
    assert not d.exists()
    assert order[-2:] == ["hostconfig.json", "config.v2.json"]


def test_a_removal_killed_before_the_record_leaves_it_readable(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir()
    for name in ("config.v2.json", "hostconfig.json", "hosts", "resolv.conf"):
        (d / name).write_text("x")
    calls = []

    def dies(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill, in the middle
        return os.remove(path)

    monkeypatch.setattr(os, "unlink", dies)
    with pytest.raises(KeyboardInterrupt):
        store.remove_dir(str(d))
    assert (d / "config.v2.json").exists() and (d / "hostconfig.json").exists()
