"""Parsing a document that must be one JSON object, with an error that says what it was.

Image configs, registry answers, seccomp profiles, the engine config and the credentials
file are all "a JSON object or nothing": :func:`parse_object` gives each of them the same
two checks and an error of the caller's class, ``<what>: <why>``.
"""

from __future__ import annotations

import json

from minidock.errors import InvalidArgument, MinidockError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


def parse_object(data: str | bytes, what: str,
                 error: type[MinidockError] = InvalidArgument) -> dict[str, Any]:
    """``data`` as a JSON object; ``error(f"{what}: ...")`` if it is not valid JSON or not
    an object (deep nesting counts as invalid)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise error(f"{what}: {e}") from e
    if not isinstance(doc, dict):
        raise error(f"{what}: not a JSON object")
    return doc
