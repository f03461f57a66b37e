"""``docker history``: the config's history entries matched to the image's layers."""

from __future__ import annotations

from minidock.errors import MinidockError
from minidock.image.store import ImageStore
from minidock.paths import Paths
from minidock.records import field, record


@record
class HistoryEntry:
    """One line of ``docker history`` (moby's image.HistoryResponseItem)."""

    id: str  # the image id for entries that are images themselves, else "<missing>"
    created: str
    created_by: str
    size: int
    comment: str
    tags: list[str] = field(default_factory=list)


def image_history(paths: Paths, ref: str) -> list[HistoryEntry]:
    """The config's ``history`` matched to layers, newest first (moby daemon ImageHistory).

    A history entry without ``empty_layer`` produced the next layer in rootfs.diff_ids (in
    order) and takes its size; an ``empty_layer`` entry (ENV, CMD...) is 0 bytes. The newest
    entry is the image itself; an entry is also named by id when a parent image (a build's
    intermediate image) ends there; every other entry is "<missing>" like Docker's.
    """
    store = ImageStore(paths)
    image_id = store.resolve(ref)
    config = store.get_image_config(image_id)
    layers = store.image_layers(image_id)
    entries: list[HistoryEntry] = []
    layer_index = 0
    for h in config.get("history") or []:
        size = 0
        if not h.get("empty_layer"):
            if layer_index < len(layers):
                size = layers[layer_index].size
            layer_index += 1
        entries.append(HistoryEntry("<missing>", str(h.get("created") or ""),
                                    str(h.get("created_by") or ""), size,
                                    str(h.get("comment") or "")))
    # Images in the parent chain own the entry at the end of their own history.
    current: str | None = image_id
    while current:
        try:
            count = len(store.get_image_config(current).get("history") or [])
        except MinidockError:
            break
        if 0 < count <= len(entries) and entries[count - 1].id == "<missing>":
            entries[count - 1].id = current
            entries[count - 1].tags = store.tags_of(current)
        current = store.get_parent(current)
    if not entries:
        # no history at all (a hand-made config): one line for the image, as Docker shows
        entries.append(HistoryEntry(image_id, str(config.get("created") or ""), "",
                                    sum(layer.size for layer in layers), "",
                                    store.tags_of(image_id)))
    entries.reverse()
    return entries
