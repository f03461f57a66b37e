"""``--filter``: which containers and images a listing or a prune keeps, as Docker decides.

One engine for ``ps``, ``images`` and both ``prune`` commands. ``--filter key=value`` flags
become Docker's filters.Args, {key: [values]}, checked against the keys the command knows;
values of one key are OR'ed, different keys AND'ed::

    parse_filters(("label=a", "label=b=1", "until=24h"), PRUNE_FILTERS)
        -> {"label": ["a", "b=1"], "until": ["24h"]}

    ps (PS_FILTERS)        id=PREFIX, name=REGEXP (searched in "/name": ``name=^/web$`` is
                           exact), status=S, exited=N, ancestor=IMAGE (name, id or id
                           prefix), label=KEY[=VALUE], before=C / since=C (created before /
                           after container C); a status or exited filter (like -n and -l)
                           looks at stopped containers too, no -a needed
    images (IMAGE_FILTERS) dangling=true|false, reference=PATTERN (Go's path.Match on the
                           familiar name), before=IMAGE, since=IMAGE, label=KEY[=VALUE]
    prune (PRUNE_FILTERS)  until=TIME (a Go duration ago, a Unix time or RFC 3339),
                           label=KEY[=VALUE]

The shared tests: :func:`label_matches`, :func:`path_match`, :func:`parse_time` and
:func:`until_timestamp`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from minidock.engine.containers.record import Status
from minidock.errors import InvalidArgument, MinidockError
from minidock.gofmt import parse_duration, path_match_regex
from minidock.paths import Paths
from minidock.records import replace

if TYPE_CHECKING:
    from minidock.engine.containers import Container
    from minidock.engine.images.listing import ImageSummary
    from minidock.image.store import ImageStore

PS_FILTERS = ("id", "name", "status", "exited", "ancestor", "label", "before", "since")
IMAGE_FILTERS = ("dangling", "reference", "before", "since", "label")
PRUNE_FILTERS = ("label", "until")
STATUSES = tuple(s.value for s in Status)


def parse_filters(values: list[str] | tuple[str, ...], allowed: tuple[str, ...]) -> dict[
        str, list[str]]:
    """``--filter key=value`` flags -> {key: [values]} (Docker's filters.Args), checked."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


# --- the value tests -----------------------------------------------------------------------


def _bool_filter(values: list[str], key: str) -> bool:
    wanted = {v.lower() for v in values}
    if not wanted <= {"true", "false", "1", "0"} or len({v in ("true", "1") for v in wanted}) > 1:
        raise InvalidArgument(f"invalid filter '{key}={values[0]}'")
    return next(iter(wanted)) in ("true", "1")


def label_matches(labels: dict[str, str], wanted: str) -> bool:
    """``label=KEY`` (the label is set) or ``label=KEY=VALUE`` (set to that value)."""
    key, sep, value = wanted.partition("=")
    if key.endswith("!") and sep:  # label!=value is not Docker's syntax for images; keep simple
        raise InvalidArgument(f"invalid filter 'label={wanted}'")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` never match ``/``, ``[...]`` classes, ``\\`` escapes.

    Docker's ``reference=`` filter uses it, so ``busy*`` matches ``busybox`` but not
    ``library/busybox``; fnmatch would let ``*`` cross the slash.
    """
    try:
        return path_match_regex(pattern).match(name) is not None
    except ValueError:
        raise InvalidArgument(f"invalid reference filter {pattern!r}: syntax error in "
                              "pattern") from None


def _reference_matches(pattern: str, ref: str) -> bool:
    """reference.FamiliarMatch: the familiar string (``busybox:latest``), then the name."""
    if path_match(pattern, ref):
        return True
    name = ref.partition("@")[0]
    if ":" in name.rpartition("/")[2]:
        name = name.rpartition(":")[0]
    return path_match(pattern, name)


def until_timestamp(value: str, now: float) -> float:
    """``until=`` as Docker reads it: a Go duration (``24h``, ``90m``) ago, a Unix timestamp
    or an RFC 3339 time."""
    if value != "0":  # "0" is a timestamp there, as in Docker's GetTimestamp
        try:
            return now - parse_duration(value) / 1e9
        except ValueError:
            pass
    try:
        return float(value)
    except ValueError:
        pass
    t = parse_time(value)
    if t is None:
        raise InvalidArgument(f"invalid filter 'until={value}'")
    return t


def parse_time(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (Go writes nanoseconds; Python's parser
    takes at most microseconds, so the extra digits are cut); None if it is not one."""
    import datetime

    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)?", value)
    if not m:
        return None
    zone = m.group(3) or "Z"
    text = m.group(1) + (m.group(2) or "")[:7] + ("+00:00" if zone in "Zz" else zone)
    try:
        return datetime.datetime.fromisoformat(text.replace("t", "T")).timestamp()
    except ValueError:
        return None


# --- images --------------------------------------------------------------------------------


def filter_images(paths: Paths, images: list[ImageSummary],
                  filters: dict[str, list[str]]) -> list[ImageSummary]:
    """Docker's image list filters; ``reference`` also narrows each image's tags to the
    matching ones (as the daemon does), so only those get a row."""
    if not filters:
        return images
    from minidock.image.store import ImageStore

    store = ImageStore(paths)
    dangling = _bool_filter(filters["dangling"], "dangling") if "dangling" in filters else None
    before = min((_created_of(store, r) for r in filters.get("before", [])), default=None)
    since = max((_created_of(store, r) for r in filters.get("since", [])), default=None)
    out: list[ImageSummary] = []
    for s in images:
        if dangling is not None and dangling != (not s.repo_tags):
            continue
        created = parse_time(s.created) or 0.0
        if before is not None and not created < before:
            continue
        if since is not None and not created > since:
            continue
        if "label" in filters:
            try:
                cfg = store.get_image_config(s.id).get("config") or {}
            except MinidockError:
                continue
            labels = cfg.get("Labels") or {}
            if not all(label_matches(labels, w) for w in filters["label"]):
                continue
        if "reference" in filters:
            patterns = filters["reference"]
            tags = [t for t in s.repo_tags if any(_reference_matches(p, t) for p in patterns)]
            digests = [d for d in s.repo_digests
                       if any(_reference_matches(p, d) for p in patterns)]
            if not tags and not digests:
                continue
            s = replace(s, repo_tags=tags, repo_digests=digests)
        out.append(s)
    return out


def _created_of(store: ImageStore, ref: str) -> float:
    # compared as times: RFC 3339 strings with trimmed fractions do not sort as text
    return parse_time(str(store.get_image_config(store.resolve(ref)).get("created") or "")) or 0.0


# --- containers (ps) -----------------------------------------------------------------------


def parse_ps_filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    """``ps --filter`` flags, each value checked (a status name, an exit code, a regexp)."""
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


def ps_shows_stopped(filters: dict[str, list[str]]) -> bool:
    """Does this ``ps`` filter look at stopped containers even without ``-a``?"""
    return "status" in filters or "exited" in filters


def select_containers(paths: Paths, items: list[Container], filters: dict[str, list[str]]
                      ) -> list[Container]:
    """The containers of ``items`` (newest first) that pass every ``ps`` filter."""
    from minidock.engine import containers as ct

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


def _passes(c: Container, filters: dict[str, list[str]], ancestors: set[str],
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
