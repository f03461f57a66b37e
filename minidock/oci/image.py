"""Image manifests and indexes (OCI image-spec, Docker distribution schema 2), read and checked.

Pure data: media types, the typed forms of a manifest, an index and their descriptors, and
:func:`parse_manifest`, which turns untrusted bytes into them or refuses. The size and depth
limits here bound what a registry (or an archive) can make minidock parse::

    index  (OCI image index / Docker manifest list)
      manifests[]: Descriptor(mediaType, digest, size, platform)   one per os/arch[/variant]
         -> manifest (OCI image manifest / Docker schema 2)
              config:   Descriptor   -> the image config (os, architecture, rootfs.diff_ids)
              layers[]: Descriptor   -> tar, tar+gzip or tar+zstd blobs, bottom first

Spec: https://github.com/opencontainers/image-spec (manifest.md, image-index.md,
descriptor.md).
"""

from __future__ import annotations

import re
from typing import Any

from minidock.errors import RegistryError
from minidock.jsonobj import parse_object
from minidock.records import field, record

# --- media types and limits ----------------------------------------------------------------

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# Layers minidock can apply (layer.py sniffs the compression by magic number anyway). The
# "foreign"/"nondistributable" kinds are fetched from the registry like any other blob.
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_FOREIGN_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

# containerd and distribution limit manifests to 4 MiB; configs get more room (long
# histories), still far below what could exhaust memory.
MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 8 << 20
MAX_JSON_DEPTH = 64
MAX_LAYERS = 125

# The one digest algorithm minidock accepts (image/reference.py holds the same rule for
# references typed by users; this module may not import it).
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


# --- JSON documents --------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def check_json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before json.loads recurses into it."""
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', data)):
        if m.group(0) in b"[{":
            depth += 1
            if depth > limit:
                raise RegistryError(f"JSON document nested deeper than {limit} levels")
        else:
            depth -= 1


def load_json(data: bytes, what: str) -> dict[str, Any]:
    """An untrusted JSON object (a manifest, an image config), depth-checked first."""
    check_json_depth(data)
    return parse_object(data, f"invalid {what}", RegistryError)


def media_type_of(content_type: str | None) -> str | None:
    """The bare, lowercased media type of a Content-Type header (its parameters dropped)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


# --- platforms -----------------------------------------------------------------------------

# Machine names that are not the image-spec's (GOARCH) names: the one table, for registry
# data, --platform and this machine's own uname (engine.images.host_platform).
_ARCH_ALIASES = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "i386": ("386", None),
    "i686": ("386", None), "armv8l": ("arm", "v8"), "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"), "loongarch64": ("loong64", None),
}


def goarch(machine: str) -> tuple[str, str | None]:
    """A machine name (``uname -m``) as the image-spec's architecture and variant."""
    p = Platform("linux", machine).normalized()
    return p.architecture, p.variant


@record(frozen=True)
class Platform:
    """The ``platform`` of an index entry (and of an image config): os/arch[/variant]."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def normalized(self) -> Platform:
        """containerd's Normalize: aliases resolved, arm64 -> v8 and arm -> v7 by default."""
        arch, variant = self.architecture.lower(), (self.variant or None)
        if arch in _ARCH_ALIASES:
            arch, implied = _ARCH_ALIASES[arch]
            variant = variant or implied
        if variant is not None:
            variant = variant.lower()
            if not variant.startswith("v") and variant.isdigit():
                variant = "v" + variant
        if arch == "arm64" and variant in (None, "v8", "v8.0"):
            variant = "v8"  # "arm64 without variant = v8" (image-spec)
        elif arch == "arm" and variant is None:
            variant = "v7"
        elif arch == "amd64" and variant == "v1":
            variant = None
        return Platform(self.os.lower(), arch, variant)


# --- manifests and indexes -----------------------------------------------------------------


@record(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@record(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@record(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise RegistryError(f"invalid manifest: {where} is not an object")
    media_type = obj.get("mediaType")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise RegistryError(f"invalid manifest: {where} has no mediaType")
    if not isinstance(digest, str):
        raise RegistryError(f"invalid manifest: {where} has no digest")
    if not digest.startswith("sha256:"):
        raise RegistryError(f"invalid manifest: {where}: unsupported digest {digest[:80]!r}")
    if not _DIGEST.match(digest):
        raise RegistryError(f"invalid manifest: {where}: invalid digest {digest[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"invalid manifest: {where} has an invalid size {size!r}")
    platform = None
    raw_platform = obj.get("platform")
    if isinstance(raw_platform, dict):
        os_, arch = raw_platform.get("os"), raw_platform.get("architecture")
        variant = raw_platform.get("variant")
        if isinstance(os_, str) and isinstance(arch, str):
            platform = Platform(os_, arch, variant if isinstance(variant, str) and variant
                                else None)
    annotations = obj.get("annotations")
    return Descriptor(
        media_type, digest, size, platform,
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict)
        else {},
    )


def parse_manifest(data: bytes, content_type: str | None = None) -> ImageManifest | ImageIndex:
    """Validate a manifest or index (schema 2 / OCI) and return its typed form.

    The kind comes from the body's ``mediaType``, else the Content-Type, else the shape of
    the document. Refused: schema 1, unknown media types, a document that has both
    ``manifests`` and ``layers`` (ambiguous: which one would a client use?), a body
    ``mediaType`` contradicting the Content-Type, layer and config media types minidock
    cannot use, more than MAX_LAYERS layers.
    """
    if len(data) > MAX_MANIFEST_SIZE:
        raise RegistryError(f"manifest too large: {len(data)} bytes (limit {MAX_MANIFEST_SIZE})")
    doc = load_json(data, "manifest")
    header_type = media_type_of(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise RegistryError("invalid manifest: mediaType is not a string")
    if header_type in SCHEMA1 or body_type in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RegistryError("schema 1 manifests are not supported (the image is too old; "
                            "push it again with a current client)")
    if doc.get("schemaVersion") != 2:
        raise RegistryError(f"invalid manifest: schemaVersion {doc.get('schemaVersion')!r}, "
                            "want 2")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise RegistryError("invalid manifest: it has both manifests and layers/config")
    known = INDEX_TYPES | MANIFEST_TYPES
    if body_type and header_type in known and body_type != header_type:
        raise RegistryError(f"invalid manifest: mediaType {body_type} does not match the "
                            f"Content-Type {header_type}")
    media_type = body_type or (header_type if header_type in known else None)
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else ""
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise RegistryError("invalid index: manifests is not a list")
        return ImageIndex(media_type, tuple(
            _descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)))
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"unsupported manifest media type {media_type[:100]!r}")
    config = _descriptor(doc.get("config"), "config")
    if config.media_type not in CONFIG_TYPES:
        raise RegistryError(f"not a container image: config media type "
                            f"{config.media_type[:100]!r}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise RegistryError("invalid manifest: layers is not a list")
    if len(raw_layers) > MAX_LAYERS:
        raise RegistryError(f"invalid manifest: {len(raw_layers)} layers, the limit is "
                            f"{MAX_LAYERS}")
    layers = tuple(_descriptor(e, f"layers[{i}]") for i, e in enumerate(raw_layers))
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise RegistryError(f"unsupported layer media type {layer.media_type[:100]!r}")
    return ImageManifest(media_type, config, layers)
