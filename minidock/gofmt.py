"""Go's ways that Docker's output and input carry: strconv.Quote (``%q``), durations
(time.ParseDuration, Duration.String) and path.Match patterns.

Used where minidock must print or read what Go would: Go-template errors and ``printf
"%q"``, the history lines of a build (``CMD ["sh" "-c" "x"]``, a HEALTHCHECK's durations),
``until=`` filters, the ``reference=`` filter and COPY's source patterns.
"""

from __future__ import annotations

import re

_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote: double quotes, Go escapes, printable Unicode kept."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote_rune(n: int) -> str:
    """strconv.QuoteRune, as ``%q`` writes an int (a HEALTHCHECK's Retries): ``'\\x03'``."""
    ch = chr(n) if 0 <= n <= 0x10FFFF else "\ufffd"
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str) -> int:
    """time.ParseDuration: ``1m30s``, ``1.5h``, ``300ms`` -> nanoseconds; ValueError if not."""
    s = text
    sign = 1
    if s[:1] and s[0] in "+-":
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    unit = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
    while pos < len(s):
        m = unit.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)


def go_duration(ns: int) -> str:
    """time.Duration.String: ``0s``, ``1.5s``, ``500ms``, ``1m30s``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def path_match_regex(pattern: str) -> re.Pattern[str]:
    """Go's path.Match as a regex for whole names: ``*`` and ``?`` never match ``/``,
    ``[...]`` classes (``[^...]`` negated, never matching ``/`` either), ``\\`` escapes.
    ValueError("syntax error in pattern") for an unclosed class, as Go's ErrBadPattern."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise ValueError("syntax error in pattern")
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")
