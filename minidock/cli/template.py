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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from minidock.errors import InvalidArgument


class TemplateError(InvalidArgument):
    """A template that cannot be parsed or executed (Docker exits 125 on these too)."""


class _Missing:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()
_NO_FINAL: Any = object()  # "no value piped in" (Go's missingVal)


# --- printing values as Go does ------------------------------------------------------------------


def _go_float(x: float) -> str:
    """fmt's %v of a float64: shortest digits, exponent form when exp < -4 or exp >= 21..."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    # repr gives the shortest round-tripping digits, as strconv's 'g' with precision -1 does;
    # strconv then uses the %e form when the exponent is < -4 or >= 6 (its "eprec" for the
    # shortest form), which is why Go prints a float64 million as 1e+06.
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(str(d) for d in digits)
    point = len(ds) + exp  # decimal point position relative to the digit string
    e10 = point - 1
    out: str
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        out = f"{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + ds
    elif point >= len(ds):
        out = ds + "0" * (point - len(ds))
    else:
        out = ds[:point] + "." + ds[point:]
    return ("-" if sign else "") + out


def go_value(obj: Any, top: bool = True) -> str:
    """How Go's text/template (fmt's %v) prints a decoded-JSON value."""
    if obj is MISSING:
        return "<no value>"
    if obj is None:
        # A nil interface read from a map prints "<no value>" at the top level (the template
        # engine unwraps it to an invalid value) but "<nil>" inside a list or map (fmt).
        return "<no value>" if top else "<nil>"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return _go_float(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + " ".join(go_value(v, False) for v in obj) + "]"
    if isinstance(obj, dict):
        return "map[" + " ".join(
            f"{go_value(k, False)}:{go_value(obj[k], False)}" for k in sorted(obj, key=_key)
        ) + "]"
    return str(obj)


def _key(k: Any) -> Any:
    return (0, k, "") if isinstance(k, (int, float)) else (1, 0, str(k))


def go_type(obj: Any) -> str:
    """The Go type name an error message would show for a value."""
    if obj is None or obj is MISSING:
        return "interface {}"
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, int):
        return "int"
    if isinstance(obj, float):
        return "float64"
    if isinstance(obj, str):
        return "string"
    if isinstance(obj, (list, tuple)):
        return "[]interface {}"
    if isinstance(obj, dict):
        return "map[string]interface {}"
    return type(obj).__name__


def _json_ready(obj: Any) -> Any:
    """Go's encoding/json writes integral floats without ".0"; Python's does not."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 1e21:
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return None if obj is MISSING else obj


def to_json(obj: Any) -> str:
    """docker/cli's ``json`` function: compact, no HTML escaping, keys in the dict's order.

    (Go sorts map keys, but Docker's inspect structs marshal in field order, which is the
    order minidock builds its dicts in; keeping it matches ``docker inspect`` output.)
    """
    text = json.dumps(_json_ready(obj), ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


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


_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v"}


def is_true(value: Any) -> bool:
    """Go's template truth: false, 0, nil, missing and empty strings/lists/maps are false."""
    if value is MISSING or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) > 0
    return True


# --- lexer ----------------------------------------------------------------------------------


@dataclass
class _Tok:
    kind: str  # field var dot ident string raw char number bool nil ( ) | := = , space eof
    text: str
    pos: int


_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template",
             "block"}
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?\d+)?|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_RAW = re.compile(r"`[^`]*`")
_CHAR = re.compile(r"'(?:[^'\\\n]|\\[^\n]+?)'")


class _Parser:
    """Lexes and parses a template source into a node list (Go's parse package, condensed)."""

    def __init__(self, src: str, name: str) -> None:
        self.src = src
        self.name = name
        self.toks: list[_Tok] = []
        self.i = 0
        self.vars: list[str] = ["$"]

    # -- errors

    def line_of(self, pos: int) -> int:
        return 1 + self.src.count("\n", 0, pos)

    def fail(self, msg: str, pos: int) -> TemplateError:
        return TemplateError(f"template: {self.name}:{self.line_of(pos)}: {msg}")

    # -- the action scanner: splits the source into text and action token lists

    def split(self) -> list[tuple[str, Any, int]]:
        """[("text", str, pos) | ("action", [tokens], pos)], trim markers applied."""
        src = self.src
        items: list[tuple[str, Any, int]] = []
        i = 0
        trim_next = False
        while True:
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            trim_left = j >= 0 and src.startswith("-", j + 2) and src[j + 3:j + 4] in _SPACES
            if trim_left:
                text = text.rstrip(" \t\r\n")
            if text:
                items.append(("text", text, i))
            if j < 0:
                return items
            start = j + 3 if trim_left else j + 2
            toks, end, trim_next = self.lex_action(start, j)
            if toks is not None:
                items.append(("action", toks, j))
            i = end

    def lex_action(self, i: int, open_pos: int) -> tuple[list[_Tok] | None, int, bool]:
        """Tokens of one action from ``i``; returns (tokens or None for a comment, index after
        the closing delimiter, whether it had a right trim marker)."""
        src = self.src
        stripped = i
        while stripped < len(src) and src[stripped] in _SPACES:
            stripped += 1
        if src.startswith("/*", stripped) and (stripped == i or src[open_pos + 2] == "-"):
            end = src.find("*/", stripped + 2)
            if end < 0:
                raise self.fail("unclosed comment", open_pos)
            k = end + 2
            if src.startswith("}}", k):
                return None, k + 2, False
            if src[k:k + 1] in _SPACES and src.startswith("-}}", k + 1):
                return None, k + 4, True
            raise self.fail("comment ends before closing delimiter", open_pos)
        toks: list[_Tok] = []
        space = False
        while True:
            if i >= len(src):
                raise self.fail("unclosed action", open_pos)
            c = src[i]
            if c in _SPACES:
                k = i
                while k < len(src) and src[k] in _SPACES:
                    k += 1
                if src.startswith("-}}", k):
                    return toks, k + 3, True
                space = True
                i = k
                continue
            if src.startswith("}}", i):
                return toks, i + 2, False
            tok, i = self.lex_token(i, open_pos)
            if space and toks:
                toks.append(_Tok("space", " ", tok.pos))
            space = False
            toks.append(tok)

    def lex_token(self, i: int, open_pos: int) -> tuple[_Tok, int]:
        src = self.src
        c = src[i]
        two = src[i:i + 2]
        if two == ":=":
            return _Tok(":=", two, i), i + 2
        if c in "()|=,":
            return _Tok(c, c, i), i + 1
        if c == '"':
            m = _STRING.match(src, i)
            if not m:
                raise self.fail("unterminated quoted string", open_pos)
            return _Tok("string", m.group(0), i), m.end()
        if c == "`":
            m = _RAW.match(src, i)
            if not m:
                raise self.fail("unterminated raw quoted string", open_pos)
            return _Tok("raw", m.group(0), i), m.end()
        if c == "'":
            m = _CHAR.match(src, i)
            if not m:
                raise self.fail("unterminated character constant", open_pos)
            return _Tok("char", m.group(0), i), m.end()
        if c == "$":
            m = _IDENT.match(src, i + 1)
            end = m.end() if m else i + 1
            return _Tok("var", src[i:end], i), end
        if c == ".":
            m = _IDENT.match(src, i + 1)
            if m:
                return _Tok("field", src[i:m.end()], i), m.end()
            if not (i + 1 < len(src) and src[i + 1].isdigit()):
                return _Tok("dot", ".", i), i + 1
        if c.isdigit() or c in "+-.":
            m = _NUMBER.match(src, i)
            if m and m.group(0) not in ("+", "-", ""):
                end = m.end()
                if end < len(src) and (src[end].isalnum() or src[end] == "_"):
                    raise self.fail(f"bad number syntax: {go_quote(src[i:end + 1])}", open_pos)
                return _Tok("number", m.group(0), i), end
        m = _IDENT.match(src, i)
        if m:
            word = m.group(0)
            if word in ("true", "false"):
                return _Tok("bool", word, i), m.end()
            if word == "nil":
                return _Tok("nil", word, i), m.end()
            return _Tok("ident", word, i), m.end()
        raise self.fail(f"unexpected {go_quote(c)} in command", open_pos)

    # -- parsing

    def parse(self, funcs: dict[str, Any]) -> list[Node]:
        self.funcs = funcs
        self.items = self.split()
        self.k = 0
        nodes, stop = self.parse_list(())
        if stop is not None:
            raise self.fail(f"unexpected {stop[0]}", stop[1])
        return nodes

    def parse_list(self, stops: tuple[str, ...]) -> tuple[list[Node], tuple[str, int] | None]:
        """Nodes until one of ``stops`` ({{end}}, {{else}}); returns (nodes, (stop, pos))."""
        nodes: list[Node] = []
        while self.k < len(self.items):
            kind, value, pos = self.items[self.k]
            self.k += 1
            if kind == "text":
                nodes.append(Text(pos, value))
                continue
            toks: list[_Tok] = value
            if not toks:
                raise self.fail("missing value for command", pos)
            head = toks[0]
            word = head.text if head.kind == "ident" and head.text in _KEYWORDS else ""
            if word in ("end", "else"):
                if word not in stops:
                    raise self.fail(f"unexpected {{{{{word}}}}}", pos)
                self.toks = toks
                self.i = 0
                return nodes, (word, pos)
            nodes.append(self.parse_action(toks, pos, word))
        if stops:
            raise self.fail("unexpected EOF", len(self.src))
        return nodes, None

    def parse_action(self, toks: list[_Tok], pos: int, word: str) -> Node:
        self.toks = toks
        self.i = 0
        if not word:
            action = Action(pos, self.parse_pipeline("command", decl_ok=True))
            self.expect_end("command")
            return action
        self.i = 1
        if word in ("break", "continue"):
            if self.loop_depth == 0:
                raise self.fail(f"{{{{{word}}}}} outside {{{{range}}}}", pos)
            self.expect_end(word)
            return Break(pos) if word == "break" else Continue(pos)
        if word in ("if", "with", "range"):
            return self.parse_control(word, pos)
        raise self.fail(f"{{{{{word}}}}} is not supported by minidock's templates", pos)

    loop_depth = 0

    def parse_control(self, word: str, pos: int) -> Node:
        mark = len(self.vars)
        pipe = self.parse_pipeline(word, decl_ok=True, range_decl=word == "range")
        self.expect_end(word)
        if word == "range":
            self.loop_depth += 1
        body, stop = self.parse_list(("end", "else"))
        if word == "range":
            self.loop_depth -= 1
        else_body: list[Node] = []
        assert stop is not None
        if stop[0] == "else":
            # {{else if ...}} / {{else with ...}} are an {{if}}/{{with}} nested in the else
            # branch that shares this control's {{end}}.
            sub = self.toks[2:] if len(self.toks) > 2 and self.toks[1].kind == "space" else []
            if sub and sub[0].kind == "ident" and sub[0].text == word and word != "range":
                self.toks = sub
                self.i = 1
                else_body = [self.parse_control(sub[0].text, stop[1])]
                self.vars[mark:] = []
                return _CONTROLS[word](pos, pipe, body, else_body)
            self.i = 1
            self.expect_end("else")
            else_body, stop = self.parse_list(("end",))
        self.i = 1
        self.expect_end("end")
        self.vars[mark:] = []
        return _CONTROLS[word](pos, pipe, body, else_body)

    def expect_end(self, word: str) -> None:
        tok = self.peek()
        if tok.kind != "eof":
            raise self.fail(f"unexpected {go_quote(tok.text)} in {word}", tok.pos)

    def peek(self, skip_space: bool = True) -> _Tok:
        while skip_space and self.i < len(self.toks) and self.toks[self.i].kind == "space":
            self.i += 1
        if self.i < len(self.toks):
            return self.toks[self.i]
        end = self.toks[-1].pos + len(self.toks[-1].text) if self.toks else 0
        return _Tok("eof", "", end)

    def parse_pipeline(self, context: str, decl_ok: bool = False,
                       range_decl: bool = False) -> Pipe:
        start = self.peek()
        decl: list[str] = []
        is_assign = False
        if decl_ok and start.kind == "var":
            save = self.i
            names = [start.text]
            self.i += 1
            nxt = self.peek()
            if nxt.kind == "," and range_decl:
                self.i += 1
                second = self.peek()
                if second.kind != "var":
                    raise self.fail(f"range can only initialize variables, got {second.text}",
                                    second.pos)
                names.append(second.text)
                self.i += 1
                nxt = self.peek()
            if nxt.kind in (":=", "="):
                self.i += 1
                decl = names
                is_assign = nxt.kind == "="
                if is_assign:
                    for n in names:
                        if n not in self.vars:
                            raise self.fail(f"undefined variable {go_quote(n)}",
                                            start.pos)
            else:
                self.i = save
        cmds: list[Command] = []
        while True:
            tok = self.peek()
            if tok.kind in ("eof", ")"):
                break
            cmds.append(self.parse_command())
            tok = self.peek()
            if tok.kind == "|":
                self.i += 1
                continue
            if tok.kind not in ("eof", ")"):
                raise self.fail(f"unexpected {go_quote(tok.text)} in operand", tok.pos)
        if not cmds:
            raise self.fail(f"missing value for {context}", start.pos)
        for stage, cmd in enumerate(cmds[1:], 2):
            if isinstance(cmd.args[0], (Literal, Dot)):
                raise self.fail(f"non executable command in pipeline stage {stage}", cmd.pos)
        if decl and not is_assign:
            self.vars.extend(decl)
        return Pipe(start.pos, decl, is_assign, cmds)

    def parse_command(self) -> Command:
        first = self.peek()
        args: list[Node] = []
        while True:
            tok = self.peek()
            if tok.kind in ("eof", "|", ")"):
                break
            if args and self.i > 0 and self.toks[self.i - 1].kind != "space":
                raise self.fail(f"unexpected {go_quote(tok.text)} in operand", tok.pos)
            args.append(self.parse_operand())
        if not args:
            raise self.fail("empty command", first.pos)
        return Command(first.pos, args)

    def parse_operand(self) -> Node:
        tok = self.peek()
        self.i += 1
        node: Node
        if tok.kind == "field":
            # Go positions a chain (and so its error messages) at its second element.
            pos = self.toks[self.i].pos if self.next_is_field() else tok.pos
            names = [tok.text[1:]]
            while self.next_is_field():
                names.append(self.toks[self.i].text[1:])
                self.i += 1
            return Field(pos, names)
        if tok.kind == "var":
            if tok.text not in self.vars:
                raise self.fail(f'undefined variable "{tok.text}"', tok.pos)
            node = Variable(tok.pos, tok.text, [])
        elif tok.kind == "dot":
            node = Dot(tok.pos)
        elif tok.kind == "ident":
            if tok.text in _KEYWORDS:
                raise self.fail(f"unexpected <{tok.text}> in command", tok.pos)
            if tok.text not in self.funcs:
                raise self.fail(f'function "{tok.text}" not defined', tok.pos)
            node = Identifier(tok.pos, tok.text)
        elif tok.kind == "(":
            pipe = self.parse_pipeline("parenthesized pipeline", decl_ok=True)
            close = self.peek()
            if close.kind != ")":
                raise self.fail("unclosed left paren", tok.pos)
            self.i += 1
            node = Paren(tok.pos, pipe)
        elif tok.kind in ("string", "raw", "char", "number", "bool", "nil"):
            node = Literal(tok.pos, tok.text, self.literal(tok))
        else:
            raise self.fail(f"unexpected {go_quote(tok.text)} in operand", tok.pos)
        fields: list[str] = []
        chain_pos = self.toks[self.i].pos if self.next_is_field() else tok.pos
        while self.next_is_field():
            fields.append(self.toks[self.i].text[1:])
            self.i += 1
        if fields:
            if isinstance(node, Variable):
                node.fields = fields
                node.pos = chain_pos
            elif isinstance(node, (Literal, Dot)):
                raise self.fail(f"unexpected . after term {go_quote(str(node))}", tok.pos)
            else:
                node = Chain(chain_pos, node, fields)
        return node

    def next_is_field(self) -> bool:
        return self.i < len(self.toks) and self.toks[self.i].kind == "field"

    def literal(self, tok: _Tok) -> Any:
        t = tok.text
        if tok.kind == "bool":
            return t == "true"
        if tok.kind == "nil":
            return None
        if tok.kind == "raw":
            return t[1:-1]
        if tok.kind == "string":
            return _unquote(t, lambda m: self.fail(m, tok.pos))
        if tok.kind == "char":
            s = _unquote('"' + t[1:-1].replace('"', '\\"') + '"',
                         lambda m: self.fail(m, tok.pos))
            if len(s) != 1:
                raise self.fail(f"malformed character constant: {t}", tok.pos)
            return ord(s)
        return _number(t, lambda m: self.fail(m, tok.pos))


_SPACES = " \t\r\n"


def _unquote(text: str, fail: Callable[[str], TemplateError]) -> str:
    """A Go interpreted string literal's value."""
    body = text[1:-1]
    out: list[str] = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1:i + 2]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise fail(f"invalid syntax: {text}")
            out.append(chr(int(digits, 16)))
            i += 2 + n
        elif e and e in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise fail(f"invalid syntax: {text}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise fail(f"invalid syntax: {text}")
    return "".join(out)


def _number(text: str, fail: Callable[[str], TemplateError]) -> int | float:
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    try:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+", t):
            return sign * int(t, 0)
        if re.fullmatch(r"0[0-7]+", t):
            return sign * int(t, 8)  # Go's legacy octal
        if re.fullmatch(r"\d+", t):
            return sign * int(t)
        if t.lower().startswith("0x"):
            return sign * float.fromhex(t)
        return sign * float(t)
    except ValueError:
        raise fail(f'illegal number syntax: "{text}"') from None


# --- AST ------------------------------------------------------------------------------------
# Each node prints as Go's parse nodes do (String()), which is what error messages quote.


@dataclass
class Node:
    pos: int


@dataclass
class Text(Node):
    text: str


@dataclass
class Dot(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class Literal(Node):
    text: str
    value: Any

    def __str__(self) -> str:
        return self.text


@dataclass
class Field(Node):
    names: list[str]

    def __str__(self) -> str:
        return "." + ".".join(self.names)


@dataclass
class Variable(Node):
    name: str
    fields: list[str]

    def __str__(self) -> str:
        return ".".join([self.name, *self.fields])


@dataclass
class Identifier(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Paren(Node):
    pipe: Pipe

    def __str__(self) -> str:
        return f"({self.pipe})"


@dataclass
class Chain(Node):
    node: Node
    fields: list[str]

    def __str__(self) -> str:
        return str(self.node) + "".join("." + f for f in self.fields)


@dataclass
class Command(Node):
    args: list[Node]

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args)


@dataclass
class Pipe(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]

    def __str__(self) -> str:
        head = ", ".join(self.decl) + (" = " if self.is_assign else " := ") if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass
class Action(Node):
    pipe: Pipe


@dataclass
class If(Node):
    pipe: Pipe
    body: list[Node]
    else_body: list[Node] = field(default_factory=list)


@dataclass
class With(If):
    pass


@dataclass
class Range(If):
    pass


@dataclass
class Break(Node):
    pass


@dataclass
class Continue(Node):
    pass


_CONTROLS: dict[str, type[If]] = {"if": If, "with": With, "range": Range}


# --- functions ------------------------------------------------------------------------------


class _FuncError(Exception):
    """Raised by a template function; reported as Go's "error calling NAME: ..."."""


def _str_arg(v: Any, fn: str) -> str:
    if isinstance(v, str):
        return v
    if v is None or v is MISSING:
        raise _TypeMismatch("invalid value; expected string")
    raise _TypeMismatch(f"wrong type for value; expected string; got {go_type(v)}")


class _TypeMismatch(Exception):
    """An argument of the wrong type: Go reports these without "error calling"."""


def _int_arg(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _TypeMismatch(f"wrong type for value; expected int; got {go_type(v)}")
    return v


def _f_json(v: Any) -> str:
    return to_json(v)


def _f_join(v: Any, sep: Any) -> str:
    sep = _str_arg(sep, "join")
    if v is None or v is MISSING:
        return ""
    if isinstance(v, str):
        raise _TypeMismatch("wrong type for value; expected []string; got string")
    if not isinstance(v, (list, tuple)):
        raise _TypeMismatch(f"wrong type for value; expected []string; got {go_type(v)}")
    # docker/cli's join is strings.Join over []string; a list of non-strings would be a type
    # error in Go, printing each element is the useful reading for decoded JSON.
    return sep.join(x if isinstance(x, str) else go_value(x, False) for x in v)


def _f_split(s: Any, sep: Any) -> list[str]:
    s, sep = _str_arg(s, "split"), _str_arg(sep, "split")
    if sep == "":
        return list(s)
    return s.split(sep)


def _f_title(s: Any) -> str:
    # golang.org/x/text cases.Title(English, NoLower): the first letter of each word is upper
    # cased, the rest is left alone (str.title() would lower them).
    s = _str_arg(s, "title")
    return re.sub("(^|[^\\w'\u2019])(\\w)", lambda m: m.group(1) + m.group(2).upper(), s)


def _f_pad(s: Any, before: Any, after: Any) -> str:
    return " " * _int_arg(before) + _str_arg(s, "pad") + " " * _int_arg(after)


def _f_truncate(s: Any, n: Any) -> str:
    s, n = _str_arg(s, "truncate"), _int_arg(n)
    return s if len(s) < n else s[:n]


def _f_len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode() if isinstance(v, str) else v)  # Go's len of a string is bytes
    raise _FuncError(f"len of type {go_type(v)}" if v is not None and v is not MISSING
                     else "len of nil pointer")


def _f_index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise _FuncError("index of untyped nil")
    for ix in indexes:
        if isinstance(item, dict):
            if not isinstance(ix, str):
                raise _FuncError(f"value has type {go_type(ix)}; should be string")
            if ix in item:
                item = item[ix]
            elif item and all(isinstance(v, str) for v in item.values()):
                # Docker indexes its typed map[string]string (Labels, Options...) whose zero
                # value is "": scripts test `{{index .Config.Labels "k"}}` for emptiness.
                item = ""
            else:
                item = None  # Go: the element type's zero value, a nil interface
        elif isinstance(item, (list, tuple, str)):
            if isinstance(ix, bool) or not isinstance(ix, int):
                raise _FuncError(f"cannot index slice/array with type {go_type(ix)}")
            if not 0 <= ix < len(item):
                raise _FuncError(f"index out of range: {ix}")
            item = item[ix] if not isinstance(item, str) else item.encode()[ix]
        elif item is None or item is MISSING:
            raise _FuncError("index of untyped nil")
        else:
            raise _FuncError(f"can't index item of type {go_type(item)}")
    return item


def _f_slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 2:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    bounds = [_int_arg(i) for i in indexes]
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise _FuncError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _f_not(v: Any) -> bool:
    return not is_true(v)


def _sprint(args: tuple[Any, ...], spaces_always: bool) -> str:
    out: list[str] = []
    for n, a in enumerate(args):
        if n and (spaces_always or not (isinstance(a, str) or isinstance(args[n - 1], str))):
            out.append(" ")
        out.append(go_value(a, False) if a is not MISSING else "<nil>")
    return "".join(out)


def _f_print(*args: Any) -> str:
    return _sprint(args, False)


def _f_println(*args: Any) -> str:
    return _sprint(args, True) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs Docker's users write: %s %d %v %q %x %X %f %e %g %t %c %%."""
    out: list[str] = []
    argi = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(args[argi]) if argi < len(args) else ""
            argi += 1
        if prec == "*":
            prec = str(args[argi]) if argi < len(args) else ""
            argi += 1
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(arg, flags, width, prec, verb))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={go_value(a, False)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(arg: Any, flags: str, width: str | None, prec: str | None, verb: str) -> str:
    if arg is None or arg is MISSING:
        return "<nil>" if verb == "v" else f"%!{verb}(<nil>)"
    if isinstance(arg, (list, tuple)):
        # fmt applies the verb (with its width) to each element of a slice
        return "[" + " ".join(_format_one(a, flags, width, prec, verb) for a in arg) + "]"
    p = int(prec) if prec not in (None, "") else (0 if prec == "" else None)
    is_num = isinstance(arg, (int, float)) and not isinstance(arg, bool)
    if verb in "sv" and isinstance(arg, str):
        text = arg if p is None else arg[:p]
    elif verb == "v" or (verb == "s" and not is_num and not isinstance(arg, bool)):
        text = go_value(arg, False) if arg is not MISSING else "<nil>"
    elif verb == "q" and isinstance(arg, str):
        text = go_quote(arg)
    elif verb == "t" and isinstance(arg, bool):
        text = "true" if arg else "false"
    elif verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
        spec = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb]
        text = format(abs(arg), spec)
        if "#" in flags and verb in "xX":
            text = ("0x" if verb == "x" else "0X") + text
        sign = "-" if arg < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
        if "0" in flags and "-" not in flags and width:
            text = text.rjust(int(width) - len(sign), "0")
        text = sign + text
    elif verb in "xX" and isinstance(arg, str):
        text = arg.encode().hex()
        text = text.upper() if verb == "X" else text
    elif verb in "feEgG" and is_num:
        spec = ("+" if "+" in flags else "") + ("." + str(p if p is not None else 6)
                                                if verb in "feE" else
                                                ("." + str(p) if p is not None else ""))
        if verb in "gG" and p is None:
            text = _go_float(float(arg))
        else:
            text = format(float(arg), spec + verb)
            if verb in "eE":
                text = re.sub(r"([eE][+-])(\d)$", r"\g<1>0\2", text)
        if "0" in flags and "-" not in flags and width:
            sign = text[0] if text[0] in "+-" else ""
            text = sign + text[len(sign):].rjust(int(width) - len(sign), "0")
    elif verb == "c" and isinstance(arg, int):
        text = chr(arg)
    else:
        return f"%!{verb}({go_type(arg)}={go_value(arg, False)})"
    if width and width.lstrip("-").isdigit():
        w = int(width)
        text = text.ljust(w) if "-" in flags else text.rjust(w)
    return text


def _f_printf(fmt: Any, *args: Any) -> str:
    return go_sprintf(_str_arg(fmt, "printf"), *args)


def _basic_kind(v: Any) -> str:
    if v is None or v is MISSING:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _f_eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    ka = _basic_kind(a)
    for b in others:
        kb = _basic_kind(b)
        if ka != kb:
            if ka != "nil" and kb != "nil":
                raise _FuncError("incompatible types for comparison")
            continue  # Go: a nil never equals a non-nil value
        if ka == "other":
            raise _FuncError(f"non-comparable type {go_value(a, False)}: {go_type(a)}")
        if ka == "nil" or a == b:
            return True
    return False


def _f_ne(a: Any, b: Any) -> bool:
    return not _f_eq(a, b)


def _f_lt(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in ("nil", "bool", "other") or kb in ("nil", "bool", "other"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    return bool(a < b)


def _f_le(a: Any, b: Any) -> bool:
    return _f_lt(a, b) or _f_eq(a, b)


def _f_gt(a: Any, b: Any) -> bool:
    return not _f_le(a, b)


def _f_ge(a: Any, b: Any) -> bool:
    return not _f_lt(a, b)


def _ident(v: Any, *_: Any) -> Any:
    return v


# Argument types of the functions whose Go signatures are not all interface{}: s string,
# i int, l []string (a for anything). Checked before the call so that the error names the
# argument, as Go's does.
_PARAMS: dict[str, tuple[str, ...]] = {
    "printf": ("s",), "split": ("s", "s"), "join": ("l", "s"), "title": ("s",),
    "lower": ("s",), "upper": ("s",), "pad": ("s", "i", "i"), "truncate": ("s", "i"),
    "slice": ("a",),
}
_VARIADIC: dict[str, str] = {"slice": "i"}
_KIND_NAMES = {"s": "string", "i": "int", "l": "[]string"}


def _type_problem(value: Any, kind: str, node: Node) -> str | None:
    """Go's evalArg/validateType complaint about an argument, or None if it fits."""
    if kind == "a":
        return None
    ok = {"s": isinstance(value, str),
          "i": isinstance(value, int) and not isinstance(value, bool),
          "l": isinstance(value, (list, tuple)) or (value is None or value is MISSING)}[kind]
    if ok:
        return None
    want = _KIND_NAMES[kind]
    if isinstance(node, Literal):
        if kind == "l":
            return f"can't handle {node} for arg of type {want}"
        return f"expected {'integer' if kind == 'i' else want}; found {node}"
    if value is MISSING or value is None:
        return f"invalid value; expected {want}"
    return f"wrong type for value; expected {want}; got {go_type(value)}"


# name -> (function, minimum args, maximum args or None for variadic)
FuncTable = dict[str, tuple[Callable[..., Any], int, int | None]]

FUNCTIONS: FuncTable = {
    # Go's builtins (and/or are special forms, evaluated lazily in the executor)
    "and": (_ident, 1, None),
    "or": (_ident, 1, None),
    "not": (_f_not, 1, 1),
    "len": (_f_len, 1, 1),
    "index": (_f_index, 1, None),
    "slice": (_f_slice, 1, None),
    "print": (_f_print, 0, None),
    "printf": (_f_printf, 1, None),
    "println": (_f_println, 0, None),
    "eq": (_f_eq, 1, None),
    "ne": (_f_ne, 2, 2),
    "lt": (_f_lt, 2, 2),
    "le": (_f_le, 2, 2),
    "gt": (_f_gt, 2, 2),
    "ge": (_f_ge, 2, 2),
    # docker/cli's templates.basicFunctions
    "json": (_f_json, 1, 1),
    "split": (_f_split, 2, 2),
    "join": (_f_join, 2, 2),
    "title": (_f_title, 1, 1),
    "lower": (lambda s: _str_arg(s, "lower").lower(), 1, 1),
    "upper": (lambda s: _str_arg(s, "upper").upper(), 1, 1),
    "pad": (_f_pad, 3, 3),
    "truncate": (_f_truncate, 2, 2),
}

# docker/cli's templates.HeaderFunctions: a table header is rendered by running the row
# template over the header names, with the formatting functions made pass-throughs so that
# "{{json .ID}}" or "{{upper .Names}}" still yields the plain header text.
HEADER_FUNCTIONS: FuncTable = {
    **FUNCTIONS,
    "json": (_ident, 1, 1),
    "split": (_ident, 2, 2),
    "join": (_ident, 2, 2),
    "title": (_ident, 1, 1),
    "lower": (_ident, 1, 1),
    "upper": (_ident, 1, 1),
    "pad": (_ident, 3, 3),
    "truncate": (_ident, 2, 2),
}


# --- execution ------------------------------------------------------------------------------


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


class _State:
    def __init__(self, tmpl: Template, funcs: FuncTable, missing_error: bool) -> None:
        self.tmpl = tmpl
        self.funcs = funcs
        self.missing_error = missing_error
        self.vars: list[tuple[str, Any]] = []
        self.out: list[str] = []
        self.at: Node | None = None

    def fail(self, msg: str, node: Node | None = None) -> TemplateError:
        node = node or self.at
        name = self.tmpl.name
        if node is None:
            return TemplateError(f"template: {name}: {msg}")
        src = self.tmpl.source
        before = src[:node.pos].encode()
        nl = before.rfind(b"\n")
        col = len(before) if nl < 0 else len(before) - nl - 1
        line = 1 + before.count(b"\n")
        return TemplateError(f'template: {name}:{line}:{col}: executing "{name}" at <{node}>: '
                             f"{msg}")

    # -- variables

    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.fail(f"undefined variable: {name}")

    # -- the walk

    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                self.out.append(node.text)
            elif isinstance(node, Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(go_value(value))
            elif isinstance(node, Range):
                self.walk_range(dot, node)
            elif isinstance(node, If):  # If and With
                mark = len(self.vars)
                value = self.pipeline(dot, node.pipe)
                if is_true(value):
                    self.walk(value if isinstance(node, With) else dot, node.body)
                else:
                    self.walk(dot, node.else_body)
                del self.vars[mark:]
            elif isinstance(node, Break):
                raise _BreakLoop
            elif isinstance(node, Continue):
                raise _ContinueLoop

    def walk_range(self, dot: Any, node: Range) -> None:
        mark = len(self.vars)
        # the declared variables are bound per element, not to the whole pipeline's value
        pipe = Pipe(node.pipe.pos, [], False, node.pipe.cmds)
        value = self.pipeline(dot, pipe)
        self.at = node
        items: Iterator[tuple[Any, Any]]
        if isinstance(value, (list, tuple)):
            items = iter(enumerate(value))
        elif isinstance(value, dict):
            items = ((k, value[k]) for k in sorted(value, key=_key))
        elif value is None or value is MISSING:
            items = iter(())
        else:
            self.at = node.pipe
            raise self.fail(f"range can't iterate over {go_value(value)}")
        ran = False
        for key, elem in items:
            ran = True
            names = node.pipe.decl
            if len(names) == 1:
                self.vars.append((names[0], elem))
            elif len(names) == 2:
                self.vars.extend([(names[0], key), (names[1], elem)])
            try:
                self.walk(elem, node.body)
            except _ContinueLoop:
                pass
            except _BreakLoop:
                break
            finally:
                del self.vars[mark:]
        if not ran:
            self.walk(dot, node.else_body)

    def pipeline(self, dot: Any, pipe: Pipe) -> Any:
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if pipe.decl:
            if pipe.is_assign:
                self.set_var(pipe.decl[0], value)
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, Identifier):
            return self.call(dot, first, cmd, cmd.args[1:], final)
        if isinstance(first, (Field, Variable, Chain)):
            if len(cmd.args) > 1 or final is not _NO_FINAL:
                last = (first.names if isinstance(first, Field) else first.fields or [""])[-1]
                if isinstance(first, Variable) and not first.fields:
                    raise self.fail(f"can't give argument to non-function {first}", first)
                raise self.fail(f"{last} is not a method but has arguments", first)
            return self.operand(dot, first)
        if len(cmd.args) > 1 or final is not _NO_FINAL:
            raise self.fail(f"can't give argument to non-function {first}", first)
        if isinstance(first, Literal) and first.value is None:
            raise self.fail("nil is not a command", first)
        return self.operand(dot, first)

    def operand(self, dot: Any, node: Node) -> Any:
        if isinstance(node, Field):
            self.at = node
            return self.fields(dot, node.names, node)
        if isinstance(node, Variable):
            self.at = node
            return self.fields(self.var(node.name), node.fields, node)
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Paren):
            mark = len(self.vars)
            value = self.pipeline(dot, node.pipe)
            del self.vars[mark:]
            return value
        if isinstance(node, Chain):
            base = self.operand(dot, node.node)
            self.at = node
            return self.fields(base, node.fields, node)
        if isinstance(node, Identifier):
            return self.call(dot, node, Command(node.pos, [node]), [], _NO_FINAL)
        raise self.fail(f"can't evaluate {node}", node)  # pragma: no cover (parser forbids)

    def fields(self, value: Any, names: list[str], node: Node) -> Any:
        for name in names:
            if value is MISSING:
                # Go: a field of a missing value is missing too, unless missingkey=error
                if self.missing_error:
                    raise self.fail(f"nil data; no entry for key {json.dumps(name)}", node)
                return MISSING
            if isinstance(value, dict):
                if name in value:
                    value = value[name]
                elif self.missing_error:
                    raise self.fail(f"map has no entry for key {json.dumps(name)}", node)
                else:
                    return MISSING
            elif value is None:
                raise self.fail(f"nil pointer evaluating interface {{}}.{name}", node)
            else:
                # every value of decoded JSON is an interface {} to Go
                raise self.fail(f"can't evaluate field {name} in type interface {{}}", node)
        return value

    def call(self, dot: Any, ident: Identifier, cmd: Command, arg_nodes: list[Node],
             final: Any) -> Any:
        name = ident.name
        fn, lo, hi = self.funcs[name]
        n = len(arg_nodes) + (final is not _NO_FINAL)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if hi == lo else f"at least {lo}"
            raise self.fail(f"wrong number of args for {name}: want {want} got {n}", ident)
        if name in ("and", "or"):
            # Go 1.18+: evaluated left to right, stopping at the first value that decides
            # the result, which is returned as is (not converted to bool).
            value: Any = None
            for node in arg_nodes:
                value = self.arg(dot, node)
                if is_true(value) != (name == "and"):
                    return value
            return final if final is not _NO_FINAL else value
        args = [self.arg(dot, node) for node in arg_nodes]
        if final is not _NO_FINAL:
            args.append(final)
        kinds = _PARAMS.get(name, ())
        for n, value in enumerate(args):
            kind = kinds[n] if n < len(kinds) else _VARIADIC.get(name, "a")
            node = arg_nodes[n] if n < len(arg_nodes) else cmd
            problem = _type_problem(value, kind, node)
            if problem:
                raise self.fail(problem, node)
        self.at = ident
        try:
            return fn(*args)
        except _TypeMismatch as e:
            raise self.fail(str(e), cmd) from None
        except (_FuncError, ValueError, TypeError) as e:
            raise self.fail(f"error calling {name}: {e}", cmd) from None

    def arg(self, dot: Any, node: Node) -> Any:
        if isinstance(node, Literal) and node.value is None:
            return None
        return self.operand(dot, node)


class Template:
    """A parsed template: ``Template(source).execute(data)``."""

    def __init__(self, source: str, name: str = "", funcs: FuncTable | None = None) -> None:
        self.source = source
        self.name = name
        self.funcs = FUNCTIONS if funcs is None else funcs
        self.nodes = _Parser(source, name).parse(self.funcs)

    def execute(self, data: Any, *, missing_error: bool = False,
                funcs: FuncTable | None = None) -> str:
        """Run the template on ``data``. ``missing_error`` is Go's ``missingkey=error`` option;
        ``funcs`` replaces the functions (same names, e.g. HEADER_FUNCTIONS)."""
        state = _State(self, funcs or self.funcs, missing_error)
        state.vars.append(("$", data))
        try:
            state.walk(data, self.nodes)
        except (_BreakLoop, _ContinueLoop):  # pragma: no cover (the parser forbids them)
            pass
        return "".join(state.out)


def parse(source: str, name: str = "") -> Template:
    """Parse once (raises TemplateError naming the line); execute as often as needed."""
    return Template(source, name)
