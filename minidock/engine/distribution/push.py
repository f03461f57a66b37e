"""``docker push``: an image of the store to a registry, layer by layer, then its manifest.

For each layer, cheapest first (docker's pushV2 does the same)::

    1. distribution metadata says blob B (same registry) holds this DiffID:
         same repository      -> HEAD it: there? "Layer already exists"
         other repository S   -> POST ?mount=B&from=S: 201 "Mounted from S"
    2. otherwise the layer is rebuilt from the store, byte for byte the tar it came from
       (minidock.image.export: tar-split + diff/, DiffID verified), gzip-compressed into a
       temp file, giving blob B; HEAD B (another image may have pushed it): there? done;
       else upload it: one PUT up to CHUNKED_THRESHOLD (16 MiB), chunked PATCHes above
    3. record B for the DiffID in the distribution metadata (the next push skips it)

then the config (HEAD, else a monolithic upload) and a Docker schema2 manifest, whose digest
is recorded locally as ``repo@digest`` (RepoDigests), as Docker does.

Only gzip blobs are reused: the schema2 manifest has no type for zstd, and a blob whose
compression is unknown could not be described. Layers upload one after another; a layer is
never held in memory (at most one chunk).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

from minidock.engine.distribution.client import registry_client
from minidock.engine.distribution.metadata import DistributionMetadata
from minidock.engine.distribution.progress import PullOutput
from minidock.errors import ImageNotFound, InvalidArgument, RegistryError
from minidock.image.reference import Reference, parse_reference
from minidock.image.store import ImageStore
from minidock.paths import Paths
from minidock.records import record

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Blobs up to this size go in one PUT; larger ones in PATCHes of this size
# (MINIDOCK_PUSH_CHUNK_SIZE overrides it, so tests can exercise chunked uploads).
CHUNKED_THRESHOLD = 16 << 20


def _chunk_size() -> int:
    value = os.environ.get("MINIDOCK_PUSH_CHUNK_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 0 else CHUNKED_THRESHOLD

_GZIP_MAGIC = b"\x1f\x8b"


@record(frozen=True)
class PushResult:
    reference: Reference
    digest: str
    size: int


@record(frozen=True)
class _Pushed:
    digest: str
    size: int


def _gzip_blob(client: Any, repo: str, digest: str, scopes: list[str]) -> bool:
    """Is the registry's blob ``digest`` gzip? (Two bytes, asked with a Range request.)"""
    resp = client.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=scopes,
                          headers={"Range": "bytes=0-1"})
    if resp.status not in (200, 206):
        resp.drain()
        return False
    head = resp.read(2)
    resp.close()
    return head == _GZIP_MAGIC


def _reuse(client: Any, meta: DistributionMetadata, ref: Reference, diff_id: str,
           scopes: list[str]) -> tuple[_Pushed, str] | None:
    """A blob the registry already has for this DiffID: (blob, what to print) or None."""
    for entry in reversed(meta.metadata(diff_id)):
        source = entry["SourceRepository"]
        digest = entry["Digest"]
        try:
            src = parse_reference(source)
        except InvalidArgument:
            continue
        if src.domain != ref.domain:
            continue
        if src.path == ref.path:
            size = client.blob_size(ref.path, digest, scopes)
            if size is not None and _gzip_blob(client, ref.path, digest, scopes):
                return _Pushed(digest, size), "Layer already exists"
            continue
        source_scopes = [f"repository:{src.path}:pull"]
        size = client.blob_size(src.path, digest, source_scopes)
        if size is None or not _gzip_blob(client, src.path, digest, source_scopes):
            continue
        location = client.mount_blob(ref.path, digest, src.path, scopes)
        if location is None:
            return _Pushed(digest, size), f"Mounted from {src.path}"
        # Not mountable (another registry policy): the session just opened is dropped
        # by the registry eventually; upload normally.
    return None


def push(paths: Paths, name: str, out: TextIO | None = None, quiet: bool = False,
         tty: bool | None = None) -> PushResult:
    """Push the image tagged ``name`` (default tag latest); returns the manifest digest."""
    from minidock.image.export import write_layer_blob

    parsed = parse_reference(name)
    if parsed.digest is not None:
        raise InvalidArgument(f"cannot push a digest reference: {name}")
    ref = parsed.with_default_tag()
    store = ImageStore(paths)
    image_id = store.lookup_reference(ref)
    if image_id is None or not store.image_exists(image_id):
        raise ImageNotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    config_bytes = store.get_config(image_id)
    layers = store.image_layers(image_id)
    output = PullOutput(out, quiet=quiet, tty=tty)
    output.line(f"The push refers to repository [{ref.name}]")

    client = registry_client(ref, push=True)
    scopes = [f"repository:{ref.path}:pull,push"]
    meta = DistributionMetadata(paths)
    try:
        # Docker lists layers top first, by DiffID.
        ids = [layer.diff_id[7:19] for layer in reversed(layers)]
        output.layers(ids, dict.fromkeys(ids, "Preparing"))
        pushed: dict[str, _Pushed] = {}
        for layer in layers:
            short = layer.diff_id[7:19]
            found = _reuse(client, meta, ref, layer.diff_id, scopes)
            if found is not None:
                blob, status = found
            else:
                def progress(n: int, total: int, short: str = short) -> None:
                    output.layer(short, "Pushing", n, total)

                blob, status = _push_layer(client, store, ref, layer.chain_id, scopes,
                                           write_layer_blob, paths, progress)
            pushed[layer.diff_id] = blob
            output.layer(short, status, final=True)
            meta_add(store, meta, layer.diff_id, blob.digest, ref.name)

        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        if client.blob_size(ref.path, config_digest, scopes) is None:
            location = client.start_upload(ref.path, scopes)
            client.upload_monolithic(ref.path, location, config_bytes, config_digest, scopes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config_bytes),
                       "digest": config_digest},
            "layers": [{"mediaType": DOCKER_LAYER, "size": pushed[layer.diff_id].size,
                        "digest": pushed[layer.diff_id].digest} for layer in layers],
        }
        body = json.dumps(manifest, indent=3).encode()
        digest = client.put_manifest(ref.path, ref.tag or "latest", body, DOCKER_MANIFEST,
                                     scopes)
    finally:
        client.close()
    with store.locked():
        if store.image_exists(image_id):
            store.add_reference(Reference(ref.domain, ref.path, digest=digest), image_id)
    output.line(f"{ref.tag}: digest: {digest} size: {len(body)}")
    return PushResult(ref, digest, len(body))


def meta_add(store: ImageStore, meta: DistributionMetadata, diff_id: str, digest: str,
             repo: str) -> None:
    with store.locked():
        meta.add(diff_id, digest, repo)


def _push_layer(
    client: Any,
    store: ImageStore,
    ref: Reference,
    chain_id: str,
    scopes: list[str],
    write_layer_blob: Callable[..., Any],
    paths: Paths,
    progress: Callable[[int, int], None],
) -> tuple[_Pushed, str]:
    """Rebuild the layer's tar, gzip it into a temp file, and upload it unless present."""
    os.makedirs(paths.tmp, 0o700, exist_ok=True)
    with tempfile.TemporaryFile(dir=paths.tmp) as f:
        blob = write_layer_blob(store, chain_id, f)  # LayerError if the DiffID cannot be rebuilt
        f.flush()
        if client.blob_size(ref.path, blob.digest, scopes) is not None:
            return _Pushed(blob.digest, blob.size), "Layer already exists"
        f.seek(0)
        location = client.start_upload(ref.path, scopes)
        chunk = _chunk_size()
        if blob.size <= chunk:
            data = f.read()
            if len(data) != blob.size:
                raise RegistryError(f"push layer {blob.diff_id}: temp file is short")
            client.upload_monolithic(ref.path, location, data, blob.digest, scopes)
        else:
            client.upload_chunked(ref.path, location, f.read, blob.size, blob.digest, scopes,
                                  chunk, lambda n: progress(n, blob.size))
        return _Pushed(blob.digest, blob.size), "Pushed"
