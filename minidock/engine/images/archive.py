"""``save``, ``load`` and ``export``: images and containers as tar archives.

``save`` writes what ``docker save`` writes since Docker 25: an OCI image layout that is also
a legacy docker-archive::

    oci-layout         {"imageLayoutVersion":"1.0.0"}
    index.json         OCI index; one manifest descriptor per tag, annotated with
                       io.containerd.image.name (docker.io/library/busybox:latest) and
                       org.opencontainers.image.ref.name (latest)
    manifest.json      [{"Config":"blobs/sha256/<id>","RepoTags":[...],"Layers":[...]}]
    repositories       {"busybox":{"latest":"<top DiffID hex>"}}   (only when tagged)
    blobs/sha256/<hex> the config, the OCI manifest, and each layer UNCOMPRESSED under
                       its DiffID, rebuilt byte for byte from the tar-split record

Unlike Docker (which sorts the members by name, so the layers come first), the metadata is
written first: a reader that streams the archive (ours) can then apply each layer as it
goes by instead of spooling it to disk. Every layer's size is known beforehand from its
tar-split record, so the archive streams out with no temporary copy.

``load`` reads the new layout, the pre-25 layout (``<v1id>/layer.tar``, ``<id>.json``,
manifest.json with "Config":"<hex>.json") and plain OCI image layouts (index.json ->
[index ->] manifest -> config and layers, which may be gzip, zstd, xz, bzip2 or plain).
The archive is read once, in order: once its metadata is known, layers are applied as they
stream by; members that come before the metadata, or out of order, are spooled to a
temporary directory under the data root (never held in memory). Every layer's DiffID is
checked against the config, the config against its digest, and on any failure every layer
this load registered and no image uses is removed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO, Any, BinaryIO, cast

from minidock.errors import ImageNotFound, InvalidArgument, LayerError, MinidockError, quietly
from minidock.image.reference import (
    Reference,
    is_digest,
    is_id_prefix,
    is_identifier,
    parse_reference,
)
from minidock.image.store import MAX_CONFIG_SIZE, ImageStore, chain_ids, image_id_of
from minidock.paths import Paths
from minidock.records import field, record

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_MAX_METADATA = 16 << 20  # manifest.json, index.json, configs: read into memory up to this
_MAX_IMAGES = 1024


def _dumps(obj: Any) -> bytes:
    # Go's json.Marshal: no spaces, non-ASCII kept as UTF-8.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --- save ---------------------------------------------------------------------------------


@record
class _Saved:
    image_id: str
    config: bytes
    diff_ids: list[str]
    chains: list[str]
    tags: list[Reference] = field(default_factory=list)


def _select(store: ImageStore, names: list[str]) -> list[_Saved]:
    """Images to save with the tags to record for each, in the order first named."""
    chosen: dict[str, list[Reference]] = {}

    def add(image_id: str, ref: Reference | None) -> None:
        tags = chosen.setdefault(image_id, [])
        if ref is not None and ref not in tags:
            tags.append(ref)

    for name in names:
        if is_identifier(name) or is_digest(name) or (
                is_id_prefix(name) and not _is_reference(name)):
            add(store.resolve(name), None)
            continue
        ref = parse_reference(name)
        if ref.digest is not None:
            add(store.resolve(name), None)
        elif ref.tag is None:
            # A repository name alone saves every tag of it, as Docker does.
            tagged = [t for i in store.list_images() for t in store.tags_of(i)
                      if parse_reference(t).familiar_name == ref.familiar_name]
            if not tagged:
                add(store.resolve(name), None)
            for t in sorted(tagged):
                found = store.lookup_reference(parse_reference(t))
                if found is not None:
                    add(found, parse_reference(t))
        else:
            found = store.lookup_reference(ref)
            if found is None or not store.image_exists(found):
                raise ImageNotFound(f"No such image: {ref.familiar()}")
            add(found, ref)
    out = []
    for image_id, tags in chosen.items():
        config = store.get_config(image_id)
        diff_ids = store.diff_ids_of(json.loads(config))
        if not diff_ids:
            raise InvalidArgument(f"save {image_id}: empty export - the image has no layers")
        out.append(_Saved(image_id, config, diff_ids, chain_ids(diff_ids), tags))
    return out


def _is_reference(value: str) -> bool:
    try:
        parse_reference(value)
    except InvalidArgument:
        return False
    return True


def _tar_header(name: str, size: int, mtime: int = 0, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = mtime
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _created(config: bytes) -> int:
    """The image's creation time (seconds), which Docker gives its blobs as mtime."""
    from datetime import datetime

    try:
        value = str(json.loads(config).get("created") or "")
        value = value.replace("Z", "+00:00")
        if "." in value:  # Python < 3.11 parses at most microseconds
            head, _, tail = value.partition(".")
            frac = "".join(c for c in tail if c.isdigit())
            value = head + "." + frac[:6] + tail[len(frac):]
        return max(0, int(datetime.fromisoformat(value).timestamp()))
    except (ValueError, TypeError, AttributeError):
        return 0


def save(paths: Paths, names: list[str], out: BinaryIO) -> None:
    """Write the docker-archive of the images ``names`` to ``out``.

    Everything that can fail before the layers stream (unknown image, a layer that cannot be
    rebuilt with its DiffID) fails before the first byte is written.
    """
    from minidock.image.export import iter_layer_tar, layer_tar_size

    store = ImageStore(paths)
    images = _select(store, names)
    layer_sizes: dict[str, tuple[str, int]] = {}  # diff_id -> (chain, size)
    for img in images:
        for diff_id, chain in zip(img.diff_ids, img.chains, strict=True):
            if diff_id not in layer_sizes:
                layer_sizes[diff_id] = (chain, layer_tar_size(store, chain))

    blobs: list[tuple[str, bytes, int]] = []  # (hex, content, mtime): configs and manifests
    index_manifests: list[dict[str, Any]] = []
    manifest_json: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for img in images:
        created = _created(img.config)
        config = json.loads(img.config)
        platform = {"architecture": config.get("architecture", ""), "os": config.get("os", "")}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": img.image_id,
                       "size": len(img.config)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": d, "size": layer_sizes[d][1]}
                       for d in img.diff_ids],
        }
        raw_manifest = _dumps(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(raw_manifest).hexdigest()
        blobs.append((img.image_id.removeprefix("sha256:"), img.config, created))
        blobs.append((manifest_digest.removeprefix("sha256:"), raw_manifest, 0))
        descriptor = {"mediaType": MEDIA_MANIFEST, "digest": manifest_digest,
                      "size": len(raw_manifest), "platform": platform}
        if not img.tags:
            index_manifests.append(descriptor)
        for ref in img.tags:
            index_manifests.append({**descriptor, "annotations": {
                ANNOTATION_IMAGE_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag or "latest"}})
            repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = \
                img.diff_ids[-1].removeprefix("sha256:")
        manifest_json.append({
            "Config": "blobs/sha256/" + img.image_id.removeprefix("sha256:"),
            "RepoTags": [r.familiar() for r in img.tags] or None,
            "Layers": ["blobs/sha256/" + d.removeprefix("sha256:") for d in img.diff_ids],
        })
        parent = store.get_parent(img.image_id)
        if parent and any(o.image_id == parent for o in images):
            manifest_json[-1]["Parent"] = parent

    def member(name: str, data: bytes, mtime: int = 0) -> bytes:
        return _tar_header(name, len(data), mtime) + data + _pad(len(data))

    # Go's json.Encoder (Docker's manifest.json and repositories) ends with a newline.
    head = [
        member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        member("index.json", _dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                                     "manifests": index_manifests})),
        member("manifest.json", _dumps(manifest_json) + b"\n"),
    ]
    if repositories:
        head.append(member("repositories", _dumps(repositories) + b"\n"))
    head.append(_tar_header("blobs/", 0, kind=tarfile.DIRTYPE))
    head.append(_tar_header("blobs/sha256/", 0, kind=tarfile.DIRTYPE))
    written: set[str] = set()
    for hex_, data, mtime in blobs:
        if hex_ not in written:
            written.add(hex_)
            head.append(member("blobs/sha256/" + hex_, data, mtime))
    out.write(b"".join(head))
    for diff_id, (chain, size) in layer_sizes.items():
        hex_ = diff_id.removeprefix("sha256:")
        if hex_ in written:
            continue
        written.add(hex_)
        out.write(_tar_header("blobs/sha256/" + hex_, size))
        got = 0
        for chunk in iter_layer_tar(store, chain):
            got += len(chunk)
            if got > size:
                break
            out.write(chunk)
        if got != size:
            raise LayerError(f"save: layer {diff_id} changed size while it was written "
                             f"({got} bytes, expected {size})")
        out.write(_pad(size))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    out.flush()


def save_to(paths: Paths, names: list[str], output: str | None) -> None:
    """``docker save [-o FILE]``: to a file (written whole or not at all) or to stdout."""
    _write_output(output, "save", lambda f: save(paths, names, f))


def _write_output(output: str | None, action: str, write: Callable[[BinaryIO], None]) -> None:
    """``-o FILE`` written whole or not at all (temp file + rename), else stdout, which
    Docker refuses to be a terminal for binary output."""
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag "
                                  "or redirect")
        write(sys.stdout.buffer)
        return
    directory = os.path.dirname(os.path.abspath(output))
    with contextlib.ExitStack() as undo:
        fd, tmp = tempfile.mkstemp(prefix=f".minidock-{action}-", dir=directory)
        undo.callback(quietly, os.unlink, tmp)
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            write(f)
            os.fchmod(f.fileno(), 0o644 & ~_umask())
        os.rename(tmp, output)
        undo.pop_all()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- load ---------------------------------------------------------------------------------


@record
class _Plan:
    """One image to load: its config member and its layer members, base first."""

    config: str
    layers: list[str]
    tags: list[str]
    config_digest: str | None = None  # when the archive names it (OCI and new layouts)
    layer_digests: list[str | None] = field(default_factory=list)  # compressed blob digests


@record
class LoadResult:
    images: list[tuple[str, list[str]]]  # (image id, tags loaded)

    def lines(self) -> list[str]:
        out: list[str] = []
        for image_id, tags in self.images:
            if tags:
                out.extend(f"Loaded image: {t}" for t in tags)
            else:
                out.append(f"Loaded image ID: {image_id}")
        return out


class _HashingReader:
    """Reads a member and hashes what it reads (for the compressed digest of OCI blobs)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        try:
            data = self._raw.read(size)
        except tarfile.TarError as e:
            # A truncated archive: the layer reader reports OSErrors as read errors.
            raise OSError(f"the archive ends inside a layer ({e})") from e
        self.sha.update(data)
        return data


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


class _Loader:
    def __init__(self, paths: Paths, store: ImageStore, spool: str) -> None:
        self.paths = paths
        self.store = store
        self.spool = spool
        self.meta: dict[str, bytes] = {}  # small members read into memory
        self.spooled: dict[str, str] = {}  # member name -> spool file
        self.plans: list[_Plan] | None = None
        self.single_place: set[str] = set()  # layer members with one parent in every image
        self.registered: list[str] = []  # chains this load created (to undo on failure)
        self.configs: dict[str, dict[str, Any]] = {}

    # -- reading the archive --

    def read_archive(self, tf: tarfile.TarFile) -> None:
        for m in tf:
            name = _norm(m.name)
            if not m.isreg():
                continue
            if self.plans is None or name not in self._layer_members():
                if m.size <= _MAX_METADATA and self._looks_like_metadata(name, m.size):
                    self.meta[name] = self._read_small(tf, m)
                else:
                    self._spool(tf, m, name)
                if self.plans is None:
                    self._try_plan()
                continue
            if not self._apply_now(tf, m, name):
                self._spool(tf, m, name)

    def _looks_like_metadata(self, name: str, size: int) -> bool:
        base = name.rsplit("/", 1)[-1]
        if base in ("manifest.json", "index.json", "oci-layout", "repositories", "json",
                    "VERSION") or name.endswith(".json"):
            return True
        # Blobs: configs and manifests are small; layers go to disk (without the metadata
        # we cannot tell, so small blobs stay in memory and are written out if they are
        # layers).
        return size <= (1 << 20)

    def _read_small(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
        f = tf.extractfile(m)
        assert f is not None
        try:
            data = f.read()
        except tarfile.TarError as e:
            raise InvalidArgument(f"load: archive ends inside {m.name!r}: {e}") from e
        if len(data) != m.size:
            raise InvalidArgument(f"load: archive ends inside {m.name!r}")
        return data

    def _spool(self, tf: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> None:
        f = tf.extractfile(m)
        assert f is not None
        fd, path = tempfile.mkstemp(dir=self.spool)
        with os.fdopen(fd, "wb") as out:
            try:
                shutil.copyfileobj(f, out, 1 << 20)
            except tarfile.TarError as e:
                raise InvalidArgument(f"load: archive ends inside {m.name!r}: {e}") from e
            if out.tell() != m.size:
                raise InvalidArgument(f"load: archive ends inside {m.name!r}")
        self.spooled[name] = path

    def _layer_members(self) -> set[str]:
        return {layer for p in self.plans or [] for layer in p.layers}

    def _member_bytes(self, name: str, limit: int = _MAX_METADATA) -> bytes | None:
        if name in self.meta:
            return self.meta[name]
        path = self.spooled.get(name)
        if path is None:
            return None
        if os.path.getsize(path) > limit:
            raise InvalidArgument(f"load: {name} is too large ({os.path.getsize(path)} bytes)")
        with open(path, "rb") as f:
            return f.read()

    # -- metadata --

    def _json(self, name: str) -> Any:
        raw = self._member_bytes(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise InvalidArgument(f"load: invalid JSON in {name}: {e}") from e

    def _try_plan(self, final: bool = False) -> None:
        """Work out the images once manifest.json (or index.json and its blobs) is known."""
        if "manifest.json" in self.meta or "manifest.json" in self.spooled:
            self.plans = self._plan_docker(self._json("manifest.json"))
        elif "index.json" in self.meta or "index.json" in self.spooled:
            plans = self._plan_oci(final)
            if plans is not None:
                self.plans = plans
        if self.plans is not None:
            self._index_direct()

    def _plan_docker(self, doc: Any) -> list[_Plan]:
        if not isinstance(doc, list) or not doc or len(doc) > _MAX_IMAGES:
            raise InvalidArgument("load: manifest.json must be a non-empty list of images")
        plans = []
        for item in doc:
            if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
                raise InvalidArgument("load: invalid manifest.json entry (no Config)")
            layers = item.get("Layers") or []
            tags = item.get("RepoTags") or []
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise InvalidArgument("load: invalid manifest.json entry (Layers)")
            if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
                raise InvalidArgument("load: invalid manifest.json entry (RepoTags)")
            config = _norm(item["Config"])
            digest = None
            base = config.rsplit("/", 1)[-1].removesuffix(".json")
            if is_identifier(base):
                digest = "sha256:" + base
            plans.append(_Plan(config, [_norm(x) for x in layers], list(tags), digest,
                               [None] * len(layers)))
        return plans

    def _plan_oci(self, final: bool) -> list[_Plan] | None:
        """Plans from an OCI layout; None while a needed blob has not been read yet."""
        index = self._json("index.json")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise InvalidArgument("load: invalid index.json (no manifests)")
        plans: list[_Plan] = []
        todo: list[tuple[dict[str, Any], list[str], int]] = [(d, [], 0) for d in
                                                              index["manifests"]]
        while todo:
            desc, tags, depth = todo.pop(0)
            if not isinstance(desc, dict) or depth > 4:
                raise InvalidArgument("load: invalid descriptor in index.json")
            ann = desc.get("annotations") or {}
            name = ann.get(ANNOTATION_IMAGE_NAME) if isinstance(ann, dict) else None
            tags = tags + ([name] if isinstance(name, str) else [])
            if not tags and isinstance(ann, dict):
                ref_name = ann.get(ANNOTATION_REF_NAME)
                # A bare tag ("latest") names no repository; only a full reference tags.
                if isinstance(ref_name, str) and ("/" in ref_name or ":" in ref_name) and \
                        _is_reference(ref_name):
                    tags = [ref_name]
            digest = _blob_digest(desc)
            raw = self._member_bytes(_blob_path(digest))
            if raw is None:
                if final:
                    raise InvalidArgument(f"load: blob {digest} is missing from the archive")
                return None
            if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
                raise InvalidArgument(f"load: blob {digest} does not match its digest")
            doc = json.loads(raw)
            media = desc.get("mediaType") or doc.get("mediaType")
            if media in (MEDIA_INDEX, DOCKER_MANIFEST_LIST) or "manifests" in doc:
                chosen = _pick_platform(doc.get("manifests") or [])
                todo.append((chosen, tags, depth + 1))
                continue
            if not isinstance(doc.get("layers"), list) or not isinstance(doc.get("config"),
                                                                            dict):
                raise InvalidArgument(f"load: manifest {digest} has no config or layers")
            layer_digests = [_blob_digest(x) for x in doc["layers"]]
            config_digest = _blob_digest(doc["config"])
            plans.append(_Plan(_blob_path(config_digest), [_blob_path(d) for d in layer_digests],
                               [_familiar_tag(t) for t in tags], config_digest,
                               list(layer_digests)))
        if not plans:
            raise InvalidArgument("load: index.json names no image")
        return plans

    def _index_direct(self) -> None:
        """Which layer members can be applied the moment they stream by: those whose
        place (parent) is the same in every image that uses them."""
        places: dict[str, set[int]] = {}
        for p in self.plans or []:
            for i, layer in enumerate(p.layers):
                places.setdefault(layer, set()).add(i)
        self.single_place = {name for name, at in places.items() if len(at) == 1}

    def _config_of(self, plan: _Plan) -> dict[str, Any]:
        cached = self.configs.get(plan.config)
        if cached is not None:
            return cached
        raw = self._member_bytes(plan.config, MAX_CONFIG_SIZE)
        if raw is None:
            raise InvalidArgument(f"load: config {plan.config} is missing from the archive")
        if plan.config_digest is not None and image_id_of(raw) != plan.config_digest:
            raise InvalidArgument(f"load: config {plan.config} does not match its digest")
        try:
            config = json.loads(raw)
            diff_ids = self.store.diff_ids_of(config)
        except (ValueError, MinidockError) as e:
            raise InvalidArgument(f"load: invalid image config {plan.config}: {e}") from e
        if len(diff_ids) != len(plan.layers):
            raise InvalidArgument(
                f"load: image config {plan.config} has {len(diff_ids)} layers (diff_ids) but "
                f"the manifest lists {len(plan.layers)}")
        config["__raw__"] = raw
        self.configs[plan.config] = config
        return config

    # -- applying layers --

    def _apply_now(self, tf: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> bool:
        """Apply a layer member while it streams, if its parent is already in the store."""
        if name not in self.single_place:
            return False
        plan = next(p for p in self.plans or [] if name in p.layers)
        i = plan.layers.index(name)
        try:
            config = self._config_of(plan)
        except InvalidArgument:
            return False  # not read yet (or invalid: finish() reports it)
        chains = chain_ids(self.store.diff_ids_of(config))
        parent = chains[i - 1] if i else None
        if parent is not None and not self.store.layer_exists(parent):
            return False
        if self.store.layer_exists(chains[i]):
            return True  # already stored (shared with another image): skip the member
        f = tf.extractfile(m)
        assert f is not None
        self._register(plan, i, f, parent)
        return True

    def _register(self, plan: _Plan, i: int, stream: IO[bytes], parent: str | None) -> str:
        config = self._config_of(plan)
        want = self.store.diff_ids_of(config)[i]
        reader = _HashingReader(stream)
        expected_chain = chain_ids(self.store.diff_ids_of(config))[i]
        existed = self.store.layer_exists(expected_chain)
        layer = self.store.register_layer(cast(BinaryIO, reader), parent)
        if not existed and layer.chain_id not in self.registered:
            self.registered.append(layer.chain_id)
        digest = plan.layer_digests[i] if i < len(plan.layer_digests) else None
        if digest is not None and "sha256:" + reader.sha.hexdigest() != digest:
            raise InvalidArgument(f"load: layer blob {digest} does not match its digest")
        if layer.diff_id != want:
            raise InvalidArgument(f"load: layer {plan.layers[i]} has DiffID {layer.diff_id}, "
                                  f"the image config says {want}")
        return layer.chain_id

    def finish(self) -> LoadResult:
        if self.plans is None:
            self._try_plan(final=True)
        if self.plans is None:
            raise InvalidArgument("load: the archive has no manifest.json or index.json "
                                  "(is it a docker save archive or an OCI image layout?)")
        result: list[tuple[str, list[str]]] = []
        for plan in self.plans:
            config = self._config_of(plan)
            diff_ids = self.store.diff_ids_of(config)
            chains = chain_ids(diff_ids)
            for i, member in enumerate(plan.layers):
                if self.store.layer_exists(chains[i]):
                    continue
                raw = self.spooled.get(member)
                data = self.meta.get(member)
                if raw is None and data is None:
                    raise InvalidArgument(f"load: layer {member} is missing from the archive")
                parent = chains[i - 1] if i else None
                if raw is not None:
                    with open(raw, "rb") as f:
                        self._register(plan, i, f, parent)
                else:
                    assert data is not None
                    self._register(plan, i, io.BytesIO(data), parent)
            image_id = self.store.create_image(config["__raw__"])
            tags = []
            for tag in plan.tags:
                ref = self.store.add_tag(tag, image_id)
                tags.append(ref.familiar())
            result.append((image_id, tags))
        return LoadResult(result)

    def undo(self) -> None:
        for chain in reversed(self.registered):
            with contextlib.suppress(Exception):
                self.store.release_layer(chain)


def _blob_digest(desc: Any) -> str:
    digest = desc.get("digest") if isinstance(desc, dict) else None
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidArgument(f"load: unsupported or invalid blob digest {digest!r}")
    return digest


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _familiar_tag(name: str) -> str:
    try:
        return parse_reference(name).with_default_tag().familiar()
    except InvalidArgument:
        return name


def _pick_platform(manifests: list[Any]) -> dict[str, Any]:
    from minidock.engine.images.platform import host_platform

    arch, variant = host_platform()
    for d in manifests:
        plat = d.get("platform") if isinstance(d, dict) else None
        if isinstance(plat, dict) and plat.get("os") == "linux" and \
                plat.get("architecture") == arch:
            return d
    raise InvalidArgument(f"load: the image index has no manifest for linux/{arch}"
                          + (f"/{variant}" if variant else ""))


def _open_archive(stream: IO[bytes], seekable: bool) -> tarfile.TarFile:
    try:
        if seekable:
            # Plain tar in a file: "r:" reads members through the file itself (no copying
            # stream buffer); compressed archives go through tarfile's stream mode.
            head = stream.read(6)
            stream.seek(0)
            magic = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
            if not head.startswith(magic):
                return tarfile.open(fileobj=stream, mode="r:")
        return tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as e:
        raise InvalidArgument(f"load: not a tar archive: {e}") from e


def load(paths: Paths, source: str | None) -> LoadResult:
    """``docker load [-i FILE]``: load the images of an archive (stdin when None)."""
    if source is None:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        stream: IO[bytes] = sys.stdin.buffer
        seekable = False
    else:
        try:
            stream = open(source, "rb")  # noqa: SIM115 (closed in the finally below)
        except OSError as e:
            raise InvalidArgument(f"open {source}: {os.strerror(e.errno or 0).lower()}") from e
        seekable = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    store = ImageStore(paths)
    os.makedirs(paths.tmp, 0o700, exist_ok=True)
    spool = tempfile.mkdtemp(prefix="load-", dir=paths.tmp)
    loader = _Loader(paths, store, spool)
    try:
        # One lock around layers, images and tags: a concurrent rmi cannot collect a layer
        # between its registration and the image that uses it.
        with store.locked(), contextlib.ExitStack() as undo:
            undo.callback(loader.undo)  # the layers it registered, however far it got
            with _open_archive(stream, seekable) as tf:
                try:
                    loader.read_archive(tf)
                except tarfile.TarError as e:
                    raise InvalidArgument(f"load: invalid or truncated archive: {e}") from e
            result = loader.finish()
            undo.pop_all()
            return result
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        if source is not None:
            stream.close()


# --- export -------------------------------------------------------------------------------


def export_container(paths: Paths, ref: str, out: BinaryIO) -> None:
    """``docker export``: the container's filesystem (its merged view) as a tar on ``out``."""
    from minidock.engine import containers
    from minidock.engine.containers import store
    from minidock.image.export import tar_directory

    c = containers.get(paths, ref)
    with containers.mounted_rootfs(paths, c.id) as root:
        for chunk in tar_directory(root, overlay_whiteouts=False,
                                   ids=store.tar_ids(paths, c.id)):
            out.write(chunk)
        out.flush()


def export_to(paths: Paths, ref: str, output: str | None) -> None:
    _write_output(output, "export", lambda f: export_container(paths, ref, f))
