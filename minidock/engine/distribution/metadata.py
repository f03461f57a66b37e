"""Docker's distribution metadata: which registry blob each layer came from, or went to.

Pull writes it; push reads it to skip blobs a registry has and to mount them across
repositories (see :class:`DistributionMetadata` for the files).
"""

from __future__ import annotations

import json
import os

from minidock.errors import InvalidArgument
from minidock.image.reference import digest_hex, validate_digest
from minidock.paths import Paths


class DistributionMetadata:
    """Which registry blob each DiffID came from, as Docker records it::

        distribution/v2metadata-by-diffid/sha256/<diffid hex>
            [{"Digest":"sha256:<blob>","SourceRepository":"docker.io/library/ubuntu","HMAC":""}]
        distribution/diffid-by-digest/sha256/<blob hex>      sha256:<diffid>

    Push reads it to skip blobs a registry already has and to mount them across
    repositories; pull writes it. Files are replaced atomically, under the store lock.
    """

    MAX_ENTRIES = 50

    def __init__(self, paths: Paths) -> None:
        self.root = os.path.join(paths.image_store, "distribution")

    def _path(self, kind: str, digest: str) -> str:
        return os.path.join(self.root, kind, "sha256", digest_hex(digest))

    def metadata(self, diff_id: str) -> list[dict[str, str]]:
        try:
            with open(self._path("v2metadata-by-diffid", diff_id), "rb") as f:
                doc = json.loads(f.read(1 << 20))
        except (FileNotFoundError, ValueError):
            return []
        if not isinstance(doc, list):
            return []
        return [
            {"Digest": e["Digest"], "SourceRepository": str(e.get("SourceRepository", "")),
             "HMAC": str(e.get("HMAC", ""))}
            for e in doc if isinstance(e, dict) and isinstance(e.get("Digest"), str)
        ]

    def diff_id(self, blob_digest: str) -> str | None:
        try:
            with open(self._path("diffid-by-digest", blob_digest)) as f:
                value = f.read(100).strip()
        except FileNotFoundError:
            return None
        try:
            return validate_digest(value)
        except InvalidArgument:
            return None

    def add(self, diff_id: str, blob_digest: str, source_repository: str) -> None:
        from minidock.storage.atomic import atomic_write

        validate_digest(diff_id)
        validate_digest(blob_digest)
        entries = [e for e in self.metadata(diff_id)
                   if not (e["Digest"] == blob_digest
                           and e["SourceRepository"] == source_repository)]
        entries.append({"Digest": blob_digest, "SourceRepository": source_repository,
                        "HMAC": ""})
        entries = entries[-self.MAX_ENTRIES:]
        for kind, digest, body in (
            ("v2metadata-by-diffid", diff_id, json.dumps(entries, separators=(",", ":"))),
            ("diffid-by-digest", blob_digest, diff_id),
        ):
            path = self._path(kind, digest)
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            atomic_write(path, body.encode(), 0o600)
