"""Layers written by GNU tar, for the member types Python's tarfile cannot write (sparse)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from tarbuild import resolver  # noqa: F401  (the autouse fixture: both resolvers)

from minidock.image.layer import CHUNK, apply_layer


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is needed to write sparse files")
def test_gnu_sparse_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as out:
        out.write(b"head")
        out.seek(5 * CHUNK)
        out.write(b"tail")
    tar_path = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", tar_path, "-C", src, "sparse"], check=True)
    raw = tar_path.read_bytes()
    dest = tmp_path / "diff"
    dest.mkdir()
    layer = apply_layer(io.BytesIO(raw), str(dest))
    assert (dest / "sparse").read_bytes() == (src / "sparse").read_bytes()
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
