"""``docker import``: one layer from a tarball (file, stdin or URL) made into an image.

    source (file | - | URL) --> register_layer (decompress, verify, extract, ChainID)
                            --> config {architecture, os, created, config <- --change,
                                        rootfs.diff_ids, history}
                            --> create_image (id = sha256(config bytes)) --> add_tag

The ``--change`` instructions are read by :mod:`minidock.dockerfile.instructions`.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from typing import Any, BinaryIO

from minidock.dockerfile.instructions import apply_changes
from minidock.engine.images.platform import host_platform
from minidock.errors import InvalidArgument
from minidock.image.reference import parse_tagged
from minidock.image.store import ImageStore, rfc3339nano
from minidock.paths import Paths


def _open_source(source: str, stdin: BinaryIO | None) -> tuple[BinaryIO, str]:
    """The stream to import and the name Docker records ("-" for stdin and local files)."""
    if source == "-":
        return (stdin if stdin is not None else sys.stdin.buffer), "-"
    if source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            resp = urllib.request.urlopen(source, timeout=60)
        except (urllib.error.URLError, OSError) as e:
            raise InvalidArgument(f"import from {source}: {e}") from e
        return resp, source
    try:
        return open(source, "rb"), "-"  # docker/cli uploads a local file as "-"
    except FileNotFoundError:
        raise InvalidArgument(f"open {source}: no such file or directory") from None
    except OSError as e:
        raise InvalidArgument(f"open {source}: {os.strerror(e.errno or 0).lower()}") from e


def build_import_config(
    diff_id: str,
    container_config: dict[str, Any],
    comment: str,
    created: str,
) -> bytes:
    """The config bytes of an imported image, keys in Docker's (Go struct) order."""
    arch, variant = host_platform()
    cfg: dict[str, Any] = {"comment": comment, "created": created, "config": container_config,
                           "architecture": arch}
    if variant:
        cfg["variant"] = variant
    cfg["os"] = "linux"
    cfg["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    cfg["history"] = [{"created": created, "comment": comment}]
    return json.dumps(cfg, separators=(",", ":"), ensure_ascii=False).encode()


def import_image(
    paths: Paths,
    source: str,
    reference: str | None = None,
    changes: list[str] | None = None,
    message: str | None = None,
    *,
    stdin: BinaryIO | None = None,
) -> str:
    """``docker import``: one layer from a tarball (any compression); returns the image id."""
    ref = parse_tagged(reference) if reference else None  # refuse bad input before reading
    container_config = apply_changes(changes or [])
    stream, source_name = _open_source(source, stdin)
    store = ImageStore(paths)
    try:
        # One lock around layer, image and tag: a concurrent rmi cannot collect the new
        # layer before the image that holds it exists.
        with store.locked(), ExitStack() as undo:
            layer = store.register_layer(stream)
            undo.callback(store.release_layer, layer.chain_id)
            comment = message or f"Imported from {source_name}"
            config = build_import_config(layer.diff_id, container_config, comment, rfc3339nano())
            image_id = store.create_image(config)
            if ref is not None:
                store.add_tag(ref, image_id)
            undo.pop_all()
    finally:
        if stream is not stdin and stream is not sys.stdin.buffer:
            stream.close()
    return image_id
