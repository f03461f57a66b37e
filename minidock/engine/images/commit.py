"""``docker commit``: a container's changes made into a new image on top of its image.

    container (paused while read, unless --pause=false)
      overlay2/<mount-id>/diff  --tar, whiteouts as .wh.<name>, opaque dirs as .wh..wh..opq-->
      register_layer(parent = the image's top ChainID)   (DiffID and tar-split on the way)
      config = the image's config + this step: sorted keys, as Docker 20.10 writes it
      create_image --> parent metadata --> tag

What the config holds, as Docker's ``image.NewChildImage``: ``config`` is the container's own
config with the ``-c`` instructions applied (so the image runs what the container ran unless
-c says otherwise); ``container_config`` the container's config as it was; ``container`` its
id; ``author``; one more ``history`` entry (``created_by`` = the container's Cmd joined by
spaces, the comment from -m). A container that changed nothing adds no layer: its entry says
``empty_layer``. The -init layer (/etc/hosts, /etc/hostname, /etc/resolv.conf and friends) is
not part of the rw layer, so it never lands in an image.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack

from minidock.dockerfile.instructions import apply_changes
from minidock.engine import containers as ct
from minidock.engine.containers.record import Status
from minidock.engine.images.platform import host_platform
from minidock.errors import Conflict
from minidock.image.export import diff_tar_stream
from minidock.image.reference import parse_tagged
from minidock.image.store import ImageStore, chain_ids, rfc3339nano
from minidock.linux import trace
from minidock.paths import Paths
from minidock.records import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


#: Docker's container.Config, field by field: the order a container's config is written in
CONTAINER_CONFIG_ORDER = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
    "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild",
    "Labels", "StopSignal", "StopTimeout", "Shell",
)


@record
class CommitOptions:
    container: str
    reference: str | None = None
    message: str = ""
    author: str = ""
    changes: list[str] = field(default_factory=list)
    pause: bool = True


def child_config(parent: dict[str, Any], *, container_id: str, container_config: dict[str, Any],
                 config: dict[str, Any], author: str, comment: str, created: str,
                 diff_id: str | None) -> bytes:
    """The config bytes of the image a commit (or a build step) makes on top of ``parent``:
    ``diff_id`` None when the step changed no file. Keys sorted, as Docker 20.10's
    ``Image.MarshalJSON`` writes them; a history entry in Docker's field order."""
    rootfs = parent.get("rootfs") or {"type": "layers", "diff_ids": []}
    diff_ids = list(rootfs.get("diff_ids") or [])
    if diff_id is not None:
        diff_ids.append(diff_id)
    entry: dict[str, Any] = {"created": created}
    if author:
        entry["author"] = author
    created_by = " ".join(container_config.get("Cmd") or [])
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if diff_id is None:
        entry["empty_layer"] = True
    arch, variant = host_platform()
    out: dict[str, Any] = {
        "architecture": parent.get("architecture") or arch,
        "config": config,
        "container": container_id,
        "container_config": container_config,
        "created": created,
        "history": [*(parent.get("history") or []), entry],
        "os": parent.get("os") or "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if author:
        out["author"] = author
    if parent.get("variant") or (not parent.get("architecture") and variant):
        out["variant"] = parent.get("variant") or variant
    for key in ("os.version", "os.features"):
        if parent.get(key):
            out[key] = parent[key]
    return json.dumps(dict(sorted(out.items())), separators=(",", ":")).encode()


def commit(paths: Paths, opts: CommitOptions) -> str:
    """Make an image of the container's changes; returns its id (``sha256:...``)."""
    ref = parse_tagged(opts.reference) if opts.reference else None  # bad input first
    c = ct.get(paths, opts.container)
    changed = apply_changes(opts.changes, c.config)  # a bad -c before anything is frozen
    config = {k: changed[k] for k in CONTAINER_CONFIG_ORDER if k in changed}
    config.update({k: v for k, v in changed.items() if k not in config})
    with ExitStack() as thaw:
        if opts.pause and c.state.status == Status.RUNNING:
            ct.pause(paths, c.id)
            thaw.callback(_unpause, paths, c.id)
        return _commit_locked(paths, c.id, ref, config, opts)


def commit_step(paths: Paths, *, parent_id: str | None, upper: str | None,
                config: dict[str, Any], container_config: dict[str, Any], author: str = "",
                container_id: str = "") -> str:
    """One step of a build made an image, as the classic builder commits it: the files
    under ``upper`` (a container's or a step's own overlay upper dir; None or empty: no
    layer) on top of ``parent_id`` (None: FROM scratch), the step's ``config``, its
    ``container_config`` (whose Cmd is the history line). The caller holds what ``upper``
    belongs to; the image is the parent's child, for the build cache to find."""
    store = ImageStore(paths)
    parent = store.get_image_config(parent_id) if parent_id else {}
    chains = chain_ids(store.diff_ids_of(parent)) if parent else []
    with store.locked(), ExitStack() as undo:
        diff_id = None
        if upper is not None and os.listdir(upper):
            trace.note(f"tar {upper} (overlay whiteouts as .wh. files) into a new layer")
            with diff_tar_stream(upper) as stream:
                layer = store.register_layer(stream, chains[-1] if chains else None)
            undo.callback(store.release_layer, layer.chain_id)
            diff_id = layer.diff_id
        else:
            trace.note("the step changed no file: an image with empty_layer, no new layer")
        image_id = store.create_image(child_config(
            parent, container_id=container_id, container_config=container_config,
            config=config, author=author, comment="", created=rfc3339nano(),
            diff_id=diff_id))
        if parent_id:
            store.set_parent(image_id, parent_id)
        undo.pop_all()
    return image_id


def _unpause(paths: Paths, cid: str) -> None:
    try:
        ct.unpause(paths, cid)
    except Conflict:
        pass  # it ended (or was unpaused) meanwhile: nothing left to thaw


def _commit_locked(paths: Paths, cid: str, ref: Any, config: dict[str, Any],
                   opts: CommitOptions) -> str:
    store = ImageStore(paths)
    with ct.container_lock(paths, cid):  # rm waits until the layer is read
        c = ct.load_record(paths, cid)
        if c.state.status in (Status.REMOVING, Status.DEAD):
            raise Conflict(f"cannot commit container {c.short_id}: it is {c.state.status.value}")
        rw = store.get_rw_layer(cid)
        upper = store.driver.diff_path(rw.mount_id)
        parent = store.get_image_config(c.image_id)
        chains = chain_ids(store.diff_ids_of(parent))
        parent_chain = chains[-1] if chains else None
        with store.locked(), ExitStack() as undo:
            diff_id = None
            if os.listdir(upper):
                from minidock.storage.shifted import back_shift

                with diff_tar_stream(upper, back_shift(upper)) as stream:
                    layer = store.register_layer(stream, parent_chain)
                undo.callback(store.release_layer, layer.chain_id)
                diff_id = layer.diff_id
            image_id = store.create_image(child_config(
                parent, container_id=cid, container_config=c.config, config=config,
                author=opts.author, comment=opts.message, created=rfc3339nano(),
                diff_id=diff_id))
            store.set_parent(image_id, c.image_id)
            if ref is not None:
                store.add_tag(ref, image_id)
            undo.pop_all()
    return image_id
