"""minidock.build.context against Docker's classic builder: for every .dockerignore case in
tests/unit/dockerignore/cases.json, the files a build sees are those docker 20.10 sent (as
recorded by scripts/record-dockerignore: `COPY . /ctx` then `find`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minidock.build.context import context_files, ignore_patterns, read_ignore_file

SPEC = json.loads((Path(__file__).resolve().parent / "dockerignore" / "cases.json").read_text())


@pytest.fixture
def make_context(tmp_path: Path):
    def make(ignore: str) -> Path:
        ctx = tmp_path / "ctx"
        for path in SPEC["tree"]:
            full = ctx / path
            full.parent.mkdir(parents=True, exist_ok=True)
            full.touch()
        (ctx / "Dockerfile").write_text("FROM busybox\n")
        (ctx / ".dockerignore").write_text(ignore)
        return ctx
    return make


def test_every_case_is_recorded():
    assert set(SPEC["expected"]) == set(SPEC["cases"]) and len(SPEC["cases"]) >= 15


@pytest.mark.parametrize("name", sorted(SPEC["cases"]))
def test_sees_what_docker_sent(make_context, name: str):
    ctx = make_context(SPEC["cases"][name])
    got = context_files(str(ctx), ignore_patterns(str(ctx)))
    assert got == sorted(SPEC["expected"][name])


def test_reading_the_ignore_file():
    assert read_ignore_file("\ufeff# c\n  a/../b/  \n!/x//y\n\n/\n") == ["b", "!x/y", "/"]


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path):
    (tmp_path / ".dockerignore").write_text("a\n")
    (tmp_path / "Dockerfile.dev").write_text("FROM x\n")
    assert ignore_patterns(str(tmp_path), str(tmp_path / "Dockerfile.dev")) == ["a"]
    (tmp_path / "Dockerfile.dev.dockerignore").write_text("b\n")
    assert ignore_patterns(str(tmp_path), str(tmp_path / "Dockerfile.dev")) == ["b"]
