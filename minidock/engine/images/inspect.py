"""``docker image inspect``, and which image a reference names (for ``run`` too).

``image_for_container`` is on the run path: it pulls an image that is not here, importing
the registry client only then.
"""

from __future__ import annotations

from minidock.errors import ImageNotFound
from minidock.image.reference import is_digest, is_identifier
from minidock.image.store import ImageStore
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"


def inspect_image(paths: Paths, ref: str) -> dict[str, Any]:
    """``docker image inspect`` for one image, in Docker's field order."""
    store = ImageStore(paths)
    image_id = store.resolve(ref)
    config = store.get_image_config(image_id)
    layers = store.image_layers(image_id)
    graph_data: dict[str, str] | None = None
    if layers:
        graph_data = store.driver.metadata(layers[-1].cache_id)
    out: dict[str, Any] = {
        "Id": image_id,
        "RepoTags": store.tags_of(image_id),
        "RepoDigests": store.digests_of(image_id),
        "Parent": store.get_parent(image_id) or "",
        # a committed or built image says it in its last history entry, as Docker reads it
        "Comment": config.get("comment") or ((config.get("history") or [{}])[-1] or {}).get(
            "comment") or "",
        "Created": config.get("created") or "",
        "Author": config.get("author") or "",
        "Config": config.get("config"),
        "Architecture": config.get("architecture") or "",
    }
    if config.get("variant"):
        out["Variant"] = config["variant"]
    out["Os"] = config.get("os") or ""
    if config.get("os.version"):
        out["OsVersion"] = config["os.version"]
    out["Size"] = sum(layer.size for layer in layers)
    out["GraphDriver"] = {"Data": graph_data, "Name": store.driver.name}
    out["RootFS"] = {"Type": "layers", "Layers": [layer.diff_id for layer in layers]}
    out["Metadata"] = {"LastTagTime": store.get_last_updated(image_id) or ZERO_TIME}
    return out


def image_for_container(
    paths: Paths, ref: str, pull_missing: bool = True
) -> tuple[str, dict[str, Any]]:
    """Resolve ``ref`` for ``run``/``create``: (image id, the whole parsed image config).

    An image that is not here is pulled first (Docker's ``--pull missing``), unless
    ``ref`` looks like an image id or ``pull_missing`` is False.

    The container defaults (Cmd, Entrypoint, Env, WorkingDir, User, ...) are under
    ``config["config"]`` (may be missing or null: treat as empty).
    """
    store = ImageStore(paths)
    try:
        image_id = store.resolve(ref)
    except ImageNotFound:
        if not pull_missing or is_identifier(ref) or ref.startswith("sha256:"):
            raise
        # Docker pulls what it cannot find. Imported here so that `run` of a local image
        # never loads the registry client.
        from minidock.engine.distribution.pull import pull_missing as pull

        image_id = pull(paths, ref)
    return image_id, store.get_image_config(image_id)


def resolve_image(paths: Paths, ref: str) -> str:
    """The image id ``ref`` names (tag, digest reference, id or unique id prefix)."""
    return ImageStore(paths).resolve(ref)


def is_image_id(value: str) -> bool:
    return is_digest(value)
