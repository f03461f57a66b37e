"""A subset of Go's text/template, enough for Docker's documented ``--format`` uses.

Docker's ``--format`` flags take Go templates, and users copy them from Docker's documentation
and from years of shell scripts, so the subset follows Go's own semantics rather than a
lookalike: the same syntax, the same printing of values, the same truthiness and the same error
texts, as far as Python data (dicts, lists, str, int, float, bool, None) allows.

    source --lex--> tokens --parse--> AST (parsed once) --execute(data)--> text

Supported:

* text and actions ``{{ }}``, trim markers ``{{- `` / `` -}}``, comments ``{{/* */}}``;
* operands: ``.``, fields ``.A.B`` (dict keys), variables ``$``, ``$x``, ``$x.A``,
  ``(pipeline).A``, literals (strings ``"..."`` and raw strings, runes ``'a'``, ints, floats,
  ``true``, ``false``, ``nil``);
* pipelines ``cmd | cmd``: the value of each command is the last argument of the next;
* declarations ``$x := pipeline`` and assignments ``$x = pipeline``;
* ``if``/``else if``/``else``, ``range`` (lists, dicts in sorted key order, ``$i, $e :=``,
  ``else``, ``break``, ``continue``), ``with``/``else with``/``else``, ``end``;
* Go's builtins ``and or not len index slice print printf println eq ne lt le gt ge`` and
  docker/cli's ``json split join title lower upper pad truncate``.

Not supported: ``define``/``template``/``block`` (Docker's formats never name sub-templates),
``call``, ``html``/``js``/``urlquery`` and methods (there are none on dicts).

How values map onto Go's: a dict is ``map[string]interface{}`` (Docker's inspect fallback
decodes JSON into one), a list is ``[]interface{}``, an int is ``int``. A missing key is Go's
"no value" (printed ``<no value>``) or, with ``missingkey="error"``, the error docker/cli's
inspect reports; a JSON null read from a map behaves as Go's ``nil`` interface does there
(printed ``<no value>`` at the top level and ``<nil>`` inside a list or map).

The modules, in the order the data flows::

    errors   TemplateError, and the "template: NAME:LINE:" of a syntax error
    values   how Go prints, quotes, marshals and tests a value (go_value, to_json, MISSING)
    lex      source -> items: text pieces and the tokens of each action
    nodes    the AST
    parse    items -> AST, checking variables, function names and literals
    funcs    the function tables (FUNCTIONS, HEADER_FUNCTIONS) and go_sprintf
    exec     AST + data -> text

This module ties them into Template: parse once, execute as often as needed.
"""

from __future__ import annotations

from typing import Any

from minidock.cli.gotemplate.errors import TemplateError
from minidock.cli.gotemplate.exec import execute
from minidock.cli.gotemplate.funcs import FUNCTIONS, HEADER_FUNCTIONS, FuncTable, go_sprintf
from minidock.cli.gotemplate.parse import parse as _parse
from minidock.cli.gotemplate.values import MISSING, go_type, go_value, is_true, to_json
from minidock.gofmt import go_quote

__all__ = [
    "FUNCTIONS",
    "HEADER_FUNCTIONS",
    "MISSING",
    "FuncTable",
    "Template",
    "TemplateError",
    "go_quote",
    "go_sprintf",
    "go_type",
    "go_value",
    "is_true",
    "parse",
    "to_json",
]


class Template:
    """A parsed template: ``Template(source).execute(data)``."""

    def __init__(self, source: str, name: str = "", funcs: FuncTable | None = None) -> None:
        self.source = source
        self.name = name
        self.funcs = FUNCTIONS if funcs is None else funcs
        self.nodes = _parse(source, name, self.funcs)

    def execute(self, data: Any, *, missing_error: bool = False,
                funcs: FuncTable | None = None) -> str:
        """Run the template on ``data``. ``missing_error`` is Go's ``missingkey=error`` option;
        ``funcs`` replaces the functions (same names, e.g. HEADER_FUNCTIONS)."""
        return execute(self.nodes, self.source, self.name, data, funcs or self.funcs,
                       missing_error)


def parse(source: str, name: str = "") -> Template:
    """Parse once (raises TemplateError naming the line); execute as often as needed."""
    return Template(source, name)
