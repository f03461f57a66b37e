"""``ps --filter``, ``-n`` and ``-l``: which containers a listing shows, as Docker decides.

Values of one key are OR'ed, different keys AND'ed (Docker's filters.Args):

    id=PREFIX          the id starts with it
    name=REGEXP        searched in the name with its leading slash (``name=^/web$`` is exact)
    status=S           created, restarting, running, removing, paused, exited or dead
    exited=N           exited with code N
    ancestor=IMAGE     made from that image (a name, an id or an id prefix)
    label=KEY[=VALUE]  the container's labels
    before=C, since=C  created before / after container C

A ``status`` or ``exited`` filter, ``-n`` and ``-l`` look at stopped containers too (no -a
needed), as in Docker.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from minidock.engine import containers as ct
from minidock.engine.images import label_matches, parse_filters
from minidock.engine.state import Status
from minidock.errors import InvalidArgument, MinidockError
from minidock.paths import Paths

PS_FILTERS = ("id", "name", "status", "exited", "ancestor", "label", "before", "since")
STATUSES = tuple(s.value for s in Status)


def parse(values: tuple[str, ...]) -> dict[str, list[str]]:
    filters = parse_filters(values, PS_FILTERS)
    for value in filters.get("status", []):
        if value not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}'")
    for value in filters.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={value}'")
    for value in filters.get("name", []):
        try:
            re.compile(value)
        except re.error as e:
            raise InvalidArgument(f"invalid filter 'name={value}': {e}") from None
    return filters


def shows_stopped(filters: dict[str, list[str]]) -> bool:
    return "status" in filters or "exited" in filters


def select(paths: Paths, items: list[ct.Container], filters: dict[str, list[str]]
           ) -> list[ct.Container]:
    """The containers of ``items`` (newest first) that pass every filter."""
    ancestors: set[str] = set()
    for ref in filters.get("ancestor", []):
        from minidock.engine.images import resolve_image

        try:
            ancestors.add(resolve_image(paths, ref))
        except MinidockError:
            ancestors.add(ref)  # no such image: matches the name a container was made from
    bounds: dict[str, str] = {}  # (creation times are fixed-width RFC 3339 UTC: they sort)
    for key in ("before", "since"):
        for ref in filters.get(key, []):
            bounds[key] = ct.get(paths, ref).created
    out = []
    for c in items:
        if not _passes(c, filters, ancestors, bounds):
            continue
        out.append(c)
    return out


def _passes(c: ct.Container, filters: dict[str, list[str]], ancestors: set[str],
            bounds: dict[str, str]) -> bool:
    def any_of(key: str, test: Callable[[str], bool]) -> bool:
        values = filters.get(key)
        return values is None or any(test(v) for v in values)

    labels = c.config.get("Labels") or {}
    return (
        any_of("id", lambda v: c.id.startswith(v))
        and any_of("name", lambda v: re.search(v, "/" + c.name) is not None)
        and any_of("status", lambda v: c.state.status.value == v)
        and any_of("exited", lambda v: c.state.status == Status.EXITED
                   and c.state.exit_code == int(v))
        and any_of("ancestor", lambda v: c.image_id in ancestors or c.image_ref in ancestors)
        and any_of("label", lambda v: label_matches(labels, v))
        and ("before" not in bounds or c.created < bounds["before"])
        and ("since" not in bounds or c.created > bounds["since"])
    )
