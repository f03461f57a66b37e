"""The classic builder's cache: no database, only the image store's parent links.

A step hits when an image already exists whose parent is the current image (for FROM
scratch: any image without a parent) and whose ``container_config`` is the one this step
would record (moby ``image/cache``): Cmd (the step's history line, which holds the RUN
command with its build args, or COPY's content hash), Entrypoint, Env, Labels,
ExposedPorts, Volumes, User, Tty, OpenStdin and the attach flags compared; the newest such
image wins. WorkingDir is not compared, as in Docker: a WORKDIR step has its own line.
"""

from __future__ import annotations

from minidock.image.store import ImageStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SCALARS = ("AttachStdout", "AttachStderr", "User", "OpenStdin", "Tty")
_LISTS = ("Cmd", "Env", "Entrypoint")
_MAPS = ("Labels", "ExposedPorts", "Volumes")


def same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Docker's compare() of two container configs."""
    if not a or not b or a.get("OpenStdin") or b.get("OpenStdin"):
        return False
    for key in _SCALARS:
        if (a.get(key) or False) != (b.get(key) or False):
            return False
    for key in _LISTS:
        if list(a.get(key) or []) != list(b.get(key) or []):
            return False
    return all(dict(a.get(key) or {}) == dict(b.get(key) or {}) for key in _MAPS)


class Cache:
    """The store's parent links, read once per build: a build probes only until its first
    miss, and every image it makes after that is new, so none of them can be a hit."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self._children: dict[str | None, list[str]] | None = None

    def _index(self) -> dict[str | None, list[str]]:
        if self._children is None:
            self._children = {}
            for image_id in self.store.list_images():
                parent = self.store.get_parent(image_id)
                self._children.setdefault(parent, []).append(image_id)
        return self._children

    def probe(self, parent_id: str | None, container_config: dict[str, Any]) -> str | None:
        """The image a step on ``parent_id`` (None: FROM scratch) may reuse, or None."""
        best: tuple[str, str] | None = None
        for image_id in self._index().get(parent_id, []):
            cfg = self.store.get_image_config(image_id)
            if same(cfg.get("container_config"), container_config):
                created = str(cfg.get("created") or "")
                if best is None or created > best[0]:
                    best = (created, image_id)
        return best[1] if best else None
