"""Go's way of writing a string, which Docker's output carries (strconv.Quote, as ``%q``).

Used where minidock must print what Go would: Go-template errors and ``printf "%q"``, and the
history lines of a build (``CMD ["sh" "-c" "x"]``).
"""

from __future__ import annotations

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
