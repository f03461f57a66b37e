"""minidock.build.sources against Docker's classic builder: the COPY source hashes in the
history lines docker 20.10 wrote for tests/unit/copyhash/cases.json (recorded by
scripts/record-copy-hashes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minidock.build.context import context_files, ignore_patterns
from minidock.build.sources import source_hash, sources_hash

SPEC = json.loads((Path(__file__).resolve().parent / "copyhash" / "cases.json").read_text(),)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ctx = tmp_path_factory.mktemp("ctx")
    os.chmod(ctx, 0o755)
    for entry in SPEC["tree"]:
        full = ctx / entry["path"]
        full.parent.mkdir(parents=True, exist_ok=True)
        if "symlink" in entry:
            os.symlink(entry["symlink"], full)
        else:
            full.write_text(entry["content"])
            os.chmod(full, int(entry["mode"], 8))
    for path, mode in SPEC["dirs"].items():
        os.chmod(ctx / path, int(mode, 8))
    (ctx / ".dockerignore").write_text(SPEC["dockerignore"])
    return ctx


@pytest.mark.parametrize("sources", SPEC["copies"])
def test_copy_hash_is_docker_s(context: Path, sources: str):
    seen = context_files(str(context), ignore_patterns(str(context)))
    hashes = []
    for src in sources.split():
        below = [p for p in seen if p.startswith(src + "/")]
        hashes.append(source_hash(str(context), src, below))
    created_by = f"/bin/sh -c #(nop) COPY {sources_hash(hashes)} in /dst/ "
    assert created_by == SPEC["expected"][sources]


def test_touching_a_file_keeps_its_hash_changing_it_does_not(tmp_path: Path):
    f = tmp_path / "f"
    f.write_text("one\n")
    before = source_hash(str(tmp_path), "f")
    os.utime(f, (1, 1))
    assert source_hash(str(tmp_path), "f") == before  # mtime is not part of the key
    f.write_text("two\n")
    assert source_hash(str(tmp_path), "f") != before
    os.symlink("/f", tmp_path / "abs")  # an absolute link resolves inside the context
    assert source_hash(str(tmp_path), "abs") == source_hash(str(tmp_path), "f")
