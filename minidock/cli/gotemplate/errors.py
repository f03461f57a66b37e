"""TemplateError, the one exception of every stage, and how a syntax error names its line."""

from __future__ import annotations

from minidock.errors import InvalidArgument


class TemplateError(InvalidArgument):
    """A template that cannot be parsed or executed (Docker exits 125 on these too)."""


def syntax_error(source: str, name: str, msg: str, pos: int) -> TemplateError:
    """Go's parse error: ``template: NAME:LINE: MSG``, the line being that of ``pos``."""
    line = 1 + source.count("\n", 0, pos)
    return TemplateError(f"template: {name}:{line}: {msg}")
