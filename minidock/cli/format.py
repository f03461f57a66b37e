"""Output formatting shared by commands: Docker's tables, sizes, ages and a tiny template.

* :func:`table` lays rows out like Go's text/tabwriter as docker/cli configures it
  (minwidth 10, padding 3, spaces; the last column is not padded).
* :func:`human_size` is go-units HumanSizeWithPrecision(size, 3): decimal units, "4.26MB".
* :func:`human_duration` is go-units HumanDuration: "2 minutes", "About an hour".
* :func:`render` (inspect ``-f``) and :func:`format_rows` (``--format`` of list commands,
  with the ``table`` directive and :func:`tabwriter`) apply the Go-template subset of
  :mod:`minidock.cli.gotemplate`.
"""

from __future__ import annotations

import calendar
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


# --- templates ---------------------------------------------------------------------------

# The one --format engine lives in minidock.cli.gotemplate; these are docker/cli's two ways of
# applying it: to one inspect document (render) and to the rows of a list command
# (format_rows, with the "table" directive).

TABLE_PREFIX = "table"


def go_value(obj: Any) -> str:
    """How Go's text/template prints a decoded-JSON value (kept for existing callers)."""
    from minidock.cli.gotemplate import go_value as _go_value

    return _go_value(obj)


def _parse(template: str) -> Any:
    from minidock.cli.gotemplate import Template, TemplateError

    try:
        return Template(template)
    except TemplateError as e:
        raise InvalidArgument(f"template parsing error: {e.message}") from None


def render(template: str, obj: Any) -> str:
    """Apply an inspect ``--format`` template to one object, as ``docker inspect -f`` does.

    Docker first executes the template on its typed struct and, when that fails, on the raw
    JSON decoded into maps with ``missingkey=error``; minidock's documents are those maps, so
    a missing key is an error (``map has no entry for key "Foo"``), not ``<no value>``.
    Unlike the list commands, inspect does not turn a typed ``\\t`` into a tab.
    """
    from minidock.cli.gotemplate import TemplateError

    tmpl = _parse(template)
    try:
        text: str = tmpl.execute(obj, missing_error=True)
    except TemplateError as e:
        raise InvalidArgument(f"template parsing error: {e.message}") from None
    return text


def is_table(template: str) -> bool:
    return template.startswith(TABLE_PREFIX)


def format_rows(
    template: str,
    rows: Sequence[dict[str, Any]],
    headers: dict[str, str],
    default_table: str | None = None,
) -> str:
    """``--format`` for a list command: each row through the template, one line each.

    As docker/cli's formatter.Context: a ``table`` prefix adds a header line, made by running
    the same template over ``headers`` (field -> column title, e.g. "ID" -> "IMAGE ID") with
    the formatting functions turned into pass-throughs, and aligns the cells separated by tabs
    like its tabwriter (minwidth 10, padding 3). ``table`` alone is ``default_table``. A typed
    ``\\t`` / ``\\n`` becomes a tab / newline. Returns the text, each line ending in a newline.
    """
    from minidock.cli.gotemplate import HEADER_FUNCTIONS, TemplateError

    table_mode = is_table(template)
    body = template[len(TABLE_PREFIX):] if table_mode else template
    if table_mode and not body.strip() and default_table is not None:
        body = default_table
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    tmpl = _parse(body)
    out: list[str] = []
    try:
        if table_mode:
            out.append(tmpl.execute(headers, funcs=HEADER_FUNCTIONS) + "\n")
        for row in rows:
            # Docker's row contexts are structs: an unknown field is an error, not "<no value>"
            out.append(tmpl.execute(row, missing_error=True) + "\n")
    except TemplateError as e:
        raise InvalidArgument(f"template parsing error: {e.message}") from None
    text = "".join(out)
    return tabwriter(text) if table_mode else text


def tabwriter(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as docker/cli configures it (padchar ' ', no flags).

    A cell is text terminated by a tab; the last cell of a line is not part of a column and
    is not padded. A column is a block of consecutive lines that all have a cell in it, and
    its width is that block's widest cell plus ``padding`` (at least ``minwidth``), so one
    line without tabs splits the table into independently aligned blocks.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[int] = []
    out: list[str] = []

    def emit(line: list[str]) -> None:
        cells = [c.ljust(widths[j]) if j < len(widths) else c for j, c in enumerate(line[:-1])]
        out.append("".join(cells) + line[-1])

    def block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                emit(lines[this])
                this += 1
                continue
            start = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            block(start, this)
            widths.pop()

    block(0, len(lines))
    return "\n".join(out)
