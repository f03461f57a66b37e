"""``system df`` and ``system prune``: what images, containers and volumes take on disk, and
removing every unused one in one go (Docker's order and words, recorded from docker 20.10).

    usage(paths)          the four rows of ``system df``: Images (layers counted once however
                          many images share them; reclaimable: those no container's image
                          uses), Containers (their rw layers; reclaimable: the stopped ones'),
                          Local Volumes (reclaimable: those no container names), Build Cache
                          (none: the classic builder's cache is its images)
    prune(paths, ...)     stopped containers, then unused networks, then (--volumes) unused
                          volumes, then dangling (-a: unused) images
"""

from __future__ import annotations

from minidock.engine import containers as ct
from minidock.engine.containers import store as records_store
from minidock.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def usage(paths: Paths) -> list[dict[str, Any]]:
    from minidock.volume import Volumes

    records = list(records_store.readable_records(paths))
    store = ct.image_store(paths)
    images = store.list_images()
    used_images = {c.image_id for c in records} & set(images)
    sizes: dict[str, int] = {}
    used_layers: set[str] = set()
    for image_id in images:
        for layer in store.image_layers(image_id):
            sizes[layer.chain_id] = layer.size
            if image_id in used_images:
                used_layers.add(layer.chain_id)
    image_size = sum(sizes.values())
    rw = {}
    for c in records:
        try:
            rw[c.id] = store.rw_layer_size(c.id)
        except (OSError, AttributeError, ValueError):
            rw[c.id] = 0
    volumes = Volumes(paths)
    names = volumes.names()
    used_volumes = {p.get("Name") for c in records for p in c.mount_points.values()
                    if p.get("Type") == "volume"}
    volume_sizes = {n: volumes.size(n) for n in names}
    return [
        {"Type": "Images", "TotalCount": len(images), "Active": len(used_images),
         "Size": image_size,
         "Reclaimable": image_size - sum(sizes[c] for c in used_layers)},
        {"Type": "Containers", "TotalCount": len(records),
         "Active": sum(c.state.running for c in records), "Size": sum(rw.values()),
         "Reclaimable": sum(rw[c.id] for c in records if not c.state.running)},
        {"Type": "Local Volumes", "TotalCount": len(names),
         "Active": len([n for n in names if n in used_volumes]),
         "Size": sum(volume_sizes.values()),
         "Reclaimable": sum(s for n, s in volume_sizes.items() if n not in used_volumes)},
        {"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": 0, "Reclaimable": 0},
    ]


def prune(paths: Paths, all_images: bool, volumes: bool
          ) -> tuple[list[tuple[str, list[str]]], int]:
    """``system prune``: (the report's sections as (title, lines), bytes reclaimed)."""
    from minidock.engine import images, networks
    from minidock.engine import volumes as vols

    sections: list[tuple[str, list[str]]] = []
    removed, reclaimed = ct.prune(paths)
    sections.append(("Deleted Containers", removed))
    sections.append(("Deleted Networks", networks.prune(paths)))
    if volumes:
        names, size = vols.prune(paths)
        sections.append(("Deleted Volumes", names))
        reclaimed += size
    lines, size = images.prune_images(paths, all_images,
                                      lambda image_id: ct.users_of_image(paths, image_id))
    sections.append(("Deleted Images", lines))
    return sections, reclaimed + size
