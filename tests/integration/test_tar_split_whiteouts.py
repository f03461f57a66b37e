"""tar-split round trip of a layer with whiteouts and opaque markers, as root.

The whiteout devices alone need no privilege (tests/unit/test_tar_split.py); the opaque
marker does: it becomes the ``trusted.overlay.opaque`` xattr, and the kernel lets only
CAP_SYS_ADMIN set ``trusted.*`` attributes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from tarbuild import d, entry, make_tar

from minidock.image.export import assemble_tar_split
from minidock.image.layer import apply_layer

pytestmark = pytest.mark.root


def roundtrip(tmp_path: Path, data: bytes) -> tuple[bytes, list[dict]]:
    """Apply ``data`` with a tar-split; the tar rebuilt from it, and the record's entries."""
    dest = tmp_path / "layer"
    dest.mkdir()
    split = io.BytesIO()
    applied = apply_layer(io.BytesIO(data), str(dest), tar_split=split)
    assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    raw = gzip.decompress(split.getvalue())
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    try:
        out = b"".join(assemble_tar_split(io.BytesIO(raw), fd))
    finally:
        os.close(fd)
    return out, [json.loads(line) for line in raw.splitlines()]


def test_whiteouts_come_back_as_written(tmp_path: Path) -> None:
    data = make_tar(d("a"), entry("a/.wh..wh..opq"), entry("a/.wh.gone"), entry(".wh.top"),
                    entry("a/kept", tarfile.REGTYPE, b"kept"))
    out, split = roundtrip(tmp_path, data)
    assert out == data
    # The markers' bytes are segments: their file entries have no size, nothing is read back.
    assert all(not e.get("size") for e in split if ".wh." in e.get("name", ""))
