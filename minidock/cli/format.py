"""Output formatting shared by commands: Docker's tables, sizes, ages and a tiny template.

* :func:`table` lays rows out like Go's text/tabwriter as docker/cli configures it
  (minwidth 10, padding 3, spaces; the last column is not padded).
* :func:`human_size` is go-units HumanSizeWithPrecision(size, 3): decimal units, "4.26MB".
* :func:`human_duration` is go-units HumanDuration: "2 minutes", "About an hour".
* :func:`render` is a placeholder for ``--format``: ``{{.A.B}}``, ``{{json .A}}``, ``{{.}}``
  and plain text. A later change replaces it with a real Go-template subset.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Sequence
from typing import Any

from minidock.errors import InvalidArgument

# --- tables ---------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Rows (header first) as aligned text, one line each, no trailing newline."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [minwidth] * ncols
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell) + padding)
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + (row[-1] if row else ""))
    return "\n".join(lines)


# --- sizes and times -----------------------------------------------------------------------

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 3) -> str:
    """``4.26MB``, ``0B``, ``1.5kB``: base 1000, ``precision`` significant digits (%g)."""
    i = 0
    while size >= 1000 and i < len(_SIZE_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_SIZE_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """How Docker says how long ago: ``Less than a second`` ... ``3 years``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's Duration.Round(time.Hour)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$"
)


def parse_rfc3339(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed); None if invalid."""
    m = _RFC3339.match(value or "")
    if not m:
        return None
    year, month, day, hh, mm, ss = (int(g) for g in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    try:
        t = calendar.timegm((year, month, day, hh, mm, ss, 0, 0, 0)) + frac
    except (ValueError, OverflowError):
        return None
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        t -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return t


def since(value: str, now: float | None = None) -> str:
    """``2 minutes ago`` for an RFC 3339 time, ``N/A`` when it cannot be read."""
    t = parse_rfc3339(value)
    if t is None or t <= 0:
        return "N/A"
    return human_duration((time.time() if now is None else now) - t) + " ago"


# --- templates -----------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_FIELD = re.compile(r"^\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
_MISSING = object()


def _lookup(obj: Any, path: str) -> Any:
    if path == ".":
        return obj
    for key in path[1:].split("."):
        if isinstance(obj, dict):
            obj = obj.get(key, _MISSING)
            if obj is _MISSING:
                return _MISSING
        else:
            raise InvalidArgument(f"template: can't evaluate field {key} in type "
                                  f"{_go_type(obj)}")
    return obj


def _go_type(obj: Any) -> str:
    if isinstance(obj, str):
        return "string"
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, (int, float)):
        return "float64"
    if isinstance(obj, list):
        return "[]interface {}"
    return "interface {}"


def go_value(obj: Any) -> str:
    """How Go's text/template prints a decoded-JSON value."""
    if obj is _MISSING:
        return "<no value>"
    if obj is None:
        return "<nil>"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, float) and obj.is_integer():
        return str(int(obj))
    if isinstance(obj, list):
        return "[" + " ".join(go_value(v) for v in obj) + "]"
    if isinstance(obj, dict):
        return "map[" + " ".join(f"{k}:{go_value(obj[k])}" for k in sorted(obj)) + "]"
    return str(obj)


def render(template: str, obj: Any) -> str:
    """Apply a ``--format`` template to one object (see the module docstring)."""

    def action(m: re.Match[str]) -> str:
        expr = m.group(1)
        words = expr.split()
        if len(words) == 2 and words[0] == "json" and _FIELD.match(words[1]):
            value = _lookup(obj, words[1])
            return json.dumps(None if value is _MISSING else value, separators=(",", ":"))
        if len(words) == 1 and _FIELD.match(words[0]):
            return go_value(_lookup(obj, words[0]))
        raise InvalidArgument(f"template parsing error: unsupported action {{{{{expr}}}}} "
                              "(supported: {{.Field.Sub}}, {{json .Field}})")

    # docker/cli turns a literal backslash-t / backslash-n typed in a shell into tab / newline.
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return _ACTION.sub(action, template)
