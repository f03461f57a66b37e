"""``docker tag`` and ``docker rmi``: the names of an image, and its deletion with the last.

``rmi`` refuses what Docker refuses: an image a container uses is never deleted, a name is
untagged first, and an image named in several repositories is deleted only when forced.
Deleting an image also deletes its untagged parents that nothing else needs (a build's
intermediate images), unless ``--no-prune``.
"""

from __future__ import annotations

from collections.abc import Callable

from minidock.errors import Conflict
from minidock.image.reference import Reference, parse_reference, parse_tagged, short_id
from minidock.image.store import ImageStore
from minidock.paths import Paths


def tag(paths: Paths, source: str, target: str) -> str:
    """``docker tag SOURCE TARGET``; returns the familiar target reference stored."""
    target_ref = parse_tagged(target)
    store = ImageStore(paths)
    with store.locked():
        image_id = store.resolve(source)
        return store.add_tag(target_ref, image_id).familiar()


def _is_id_reference(image_id: str, value: str) -> bool:
    """Docker's isImageIDPrefix: was the image named by (a prefix of) its id?"""
    return image_id.startswith(value) or image_id[len("sha256:"):].startswith(value)


def _single_reference(refs: list[str]) -> bool:
    """At most one tag, and digests only of that tag's repository (Docker's isSingleReference)."""
    if len(refs) <= 1:
        return len(refs) == 1
    parsed = [parse_reference(r) for r in refs]
    tags = [r for r in parsed if r.digest is None]
    if len(tags) > 1:
        return False
    single: Reference = tags[0] if tags else parsed[0]
    digest_repos = {r.name for r in parsed if r.digest is not None}
    return digest_repos == {single.name}


def remove_image(
    paths: Paths,
    ref: str,
    force: bool,
    in_use: Callable[[str], list[str]],
    prune: bool = True,
) -> list[str]:
    """``docker rmi``: the lines Docker prints (``Untagged: x:y``, ``Deleted: sha256:...``).

    An image a container uses is never deleted: without ``force`` the last reference is
    kept too (Conflict); with ``force`` the reference goes and the image stays (untag only).
    """
    store = ImageStore(paths)
    lines: list[str] = []
    with store.locked():
        image_id = store.resolve(ref)
        refs = store.references(image_id)
        users = in_use(image_id)
        if not _is_id_reference(image_id, ref):
            # A name was given: that reference goes first.
            if users and not force and _single_reference(refs):
                raise Conflict(
                    f'conflict: unable to remove repository reference "{ref}" (must force) '
                    f"- container {short_id(users[0])} is using its referenced image "
                    f"{short_id(image_id)}"
                )
            named = parse_reference(ref).with_default_tag()
            store.remove_tag(named)
            lines.append(f"Untagged: {named.familiar()}")
            remaining = store.references(image_id)
            if named.digest is None and not any(
                parse_reference(r).name == named.name and "@" not in r for r in remaining
            ):
                # The last tag of a repository takes that repository's digests with it.
                for r in remaining:
                    if "@" in r and parse_reference(r).name == named.name:
                        store.remove_tag(r)
                        lines.append(f"Untagged: {r}")
            if store.references(image_id) or users or store.children(image_id):
                # Still referenced, used by a container or the base of another image:
                # Docker deletes "quietly" here, i.e. it stops after the untag.
                return lines
        else:
            if users:
                raise Conflict(
                    f"conflict: unable to delete {short_id(image_id)} (cannot be forced) - "
                    f"image is being used by container {short_id(users[0])}"
                )
            if refs and not force and not _single_reference(refs):
                raise Conflict(
                    f"conflict: unable to delete {short_id(image_id)} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
        if store.children(image_id):
            raise Conflict(
                f"conflict: unable to delete {short_id(image_id)} (cannot be forced) - "
                "image has dependent child images"
            )
        for r in store.references(image_id):
            store.remove_tag(r)
            lines.append(f"Untagged: {r}")
        parent = store.get_parent(image_id)
        removed_layers = store.delete_image(image_id)
        lines.append(f"Deleted: {image_id}")
        lines.extend(f"Deleted: {chain}" for chain in removed_layers)
        while prune and parent and store.image_exists(parent):
            if store.references(parent) or in_use(parent) or store.children(parent):
                break
            image_id, parent = parent, store.get_parent(parent)
            removed_layers = store.delete_image(image_id)
            lines.append(f"Deleted: {image_id}")
            lines.extend(f"Deleted: {chain}" for chain in removed_layers)
    return lines
