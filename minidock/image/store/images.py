"""imagedb: image configs by id (re-checked against the id on every read) and their metadata.

    imagedb/content/sha256/<id-hex>    0600 config bytes; id = sha256(bytes)
    imagedb/metadata/sha256/<id-hex>/  parent, lastUpdated, builtLocally (all optional)

An image is a config whose rootfs.diff_ids name registered layers (layers.py), so this
room sits on the layers one: it checks them when an image is created and walks them for
an image's layers and size.
"""

from __future__ import annotations

import os
import shutil
import time

from minidock.errors import ImageNotFound, InvalidArgument, NotFound, StorageError
from minidock.image.reference import digest_hex, is_digest, validate_digest
from minidock.image.store.base import HEX64
from minidock.image.store.ids import chain_ids, image_id_of
from minidock.image.store.layers import MAX_LAYER_DEPTH, Layer, Layers
from minidock.jsonobj import parse_object
from minidock.storage.atomic import atomic_write, fsync_dir

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

MAX_CONFIG_SIZE = 16 << 20


def rfc3339nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano in UTC: nanoseconds with trailing zeros (and a bare ".") cut."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


class Images(Layers):
    """Image configs and metadata, over the layers they name."""

    def _content_path(self, image_id: str) -> str:
        return os.path.join(self.imagedb, "content", "sha256", digest_hex(image_id))

    def _metadata_dir(self, image_id: str) -> str:
        return os.path.join(self.imagedb, "metadata", "sha256", digest_hex(image_id))

    def image_exists(self, image_id: str) -> bool:
        return is_digest(image_id) and os.path.isfile(self._content_path(image_id))

    def list_images(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.imagedb, "content", "sha256"))
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n for n in names if HEX64.match(n))

    def get_config(self, image_id: str) -> bytes:
        """The image's config bytes, verified against the id."""
        path = self._content_path(image_id)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_SIZE + 1)
        except FileNotFoundError:
            raise ImageNotFound(f"No such image: {image_id}") from None
        if len(data) > MAX_CONFIG_SIZE or image_id_of(data) != image_id:
            raise StorageError(f"read image config {path}: content does not match its digest")
        return data

    def get_image_config(self, image_id: str) -> dict[str, Any]:
        return parse_object(self.get_config(image_id), f"parse image config {image_id}",
                            StorageError)

    @staticmethod
    def diff_ids_of(config: dict[str, Any]) -> list[str]:
        rootfs = config.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidArgument('image config: rootfs.type must be "layers"')
        diff_ids = rootfs.get("diff_ids") or []
        if not isinstance(diff_ids, list):
            raise InvalidArgument("image config: rootfs.diff_ids must be a list")
        return [validate_digest(d) for d in diff_ids]

    def _diff_ids(self, image_id: str) -> list[str]:
        return self.diff_ids_of(self.get_image_config(image_id))

    def create_image(self, config: bytes) -> str:
        """Store an image config whose layers are all registered; returns its id."""
        if len(config) > MAX_CONFIG_SIZE:
            raise InvalidArgument(f"image config is too large ({len(config)} bytes)")
        parsed = parse_object(config, "invalid image config")
        diff_ids = self.diff_ids_of(parsed)
        if len(diff_ids) > MAX_LAYER_DEPTH:
            raise InvalidArgument(f"image config has {len(diff_ids)} layers, the limit is "
                                  f"{MAX_LAYER_DEPTH}")
        image_id = image_id_of(config)
        with self.locked():
            for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
                try:
                    layer = self.get_layer(chain)
                except NotFound:
                    raise StorageError(f"create image {image_id}: layer {diff_id} (chain "
                                       f"{chain}) is not registered") from None
                if layer.diff_id != diff_id:
                    raise StorageError(f"create image {image_id}: layer {chain} has diff "
                                       f"{layer.diff_id}, want {diff_id}")
            self._ensure_dirs()
            if not self.image_exists(image_id):
                atomic_write(self._content_path(image_id), config, 0o600)
        return image_id

    def _delete_image_files(self, image_id: str) -> None:
        """Remove the image's config and metadata (its layers and references are not ours)."""
        path = self._content_path(image_id)
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
        shutil.rmtree(self._metadata_dir(image_id), ignore_errors=True)

    def image_layers(self, image_id: str) -> list[Layer]:
        """The image's layers, base first."""
        chains = chain_ids(self._diff_ids(image_id))
        return self.layer_chain(chains[-1]) if chains else []

    def top_layer(self, image_id: str) -> Layer | None:
        chains = chain_ids(self._diff_ids(image_id))
        return self.get_layer(chains[-1]) if chains else None

    def image_size(self, image_id: str) -> int:
        return sum(layer.size for layer in self.image_layers(image_id))

    def children(self, image_id: str) -> list[str]:
        """Images whose recorded parent is ``image_id`` (built or committed on top of it)."""
        return [i for i in self.list_images() if self.get_parent(i) == image_id]

    # --- image metadata (imagedb/metadata/sha256/<hex>/...) ---

    def _set_metadata(self, image_id: str, key: str, data: bytes) -> None:
        if not self.image_exists(image_id):
            raise ImageNotFound(f"No such image: {image_id}")
        d = self._metadata_dir(image_id)
        os.makedirs(d, 0o700, exist_ok=True)
        atomic_write(os.path.join(d, key), data, 0o600)

    def _get_metadata(self, image_id: str, key: str) -> bytes | None:
        try:
            with open(os.path.join(self._metadata_dir(image_id), key), "rb") as f:
                return f.read(4096)
        except FileNotFoundError:
            return None

    def set_last_updated(self, image_id: str, when: str | None = None) -> None:
        self._set_metadata(image_id, "lastUpdated", (when or rfc3339nano()).encode())

    def get_last_updated(self, image_id: str) -> str | None:
        raw = self._get_metadata(image_id, "lastUpdated")
        return raw.decode().strip() if raw else None

    def set_parent(self, image_id: str, parent_id: str) -> None:
        validate_digest(parent_id)
        self._set_metadata(image_id, "parent", parent_id.encode())

    def get_parent(self, image_id: str) -> str | None:
        raw = self._get_metadata(image_id, "parent")
        if not raw:
            return None
        value = raw.decode().strip()
        return value if is_digest(value) else None

    def set_built_locally(self, image_id: str) -> None:
        self._set_metadata(image_id, "builtLocally", b"\x01")

    def is_built_locally(self, image_id: str) -> bool:
        return self._get_metadata(image_id, "builtLocally") == b"\x01"
