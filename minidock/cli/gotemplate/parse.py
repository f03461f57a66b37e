"""The parser: the lexer's items into the AST (Go's text/template/parse, condensed).

Parsing checks what Go checks before executing: that each variable is declared, that each
function exists in the table the template is parsed with, that ``{{break}}`` and
``{{continue}}`` sit inside a ``{{range}}``, and that literals are well formed, with Go's
error texts (``template: NAME:LINE: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from minidock.cli.gotemplate.errors import TemplateError, syntax_error
from minidock.cli.gotemplate.lex import Token, lex
from minidock.cli.gotemplate.nodes import (
    Action,
    Break,
    Chain,
    Command,
    Continue,
    Dot,
    Field,
    Identifier,
    If,
    Literal,
    Node,
    Paren,
    Pipe,
    Range,
    Text,
    Variable,
    With,
)
from minidock.gofmt import go_quote

_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template",
             "block"}
_CONTROLS: dict[str, type[If]] = {"if": If, "with": With, "range": Range}


def parse(source: str, name: str, funcs: dict[str, Any]) -> list[Node]:
    """The nodes of ``source``; ``funcs`` is the table its function names must be in."""
    return _Parser(source, name).parse(funcs)


class _Parser:
    def __init__(self, src: str, name: str) -> None:
        self.src = src
        self.name = name
        self.toks: list[Token] = []
        self.i = 0
        self.vars: list[str] = ["$"]

    def fail(self, msg: str, pos: int) -> TemplateError:
        return syntax_error(self.src, self.name, msg, pos)

    def parse(self, funcs: dict[str, Any]) -> list[Node]:
        self.funcs = funcs
        self.items = lex(self.src, self.name)
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
            toks: list[Token] = value
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

    def parse_action(self, toks: list[Token], pos: int, word: str) -> Node:
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

    def peek(self, skip_space: bool = True) -> Token:
        while skip_space and self.i < len(self.toks) and self.toks[self.i].kind == "space":
            self.i += 1
        if self.i < len(self.toks):
            return self.toks[self.i]
        end = self.toks[-1].pos + len(self.toks[-1].text) if self.toks else 0
        return Token("eof", "", end)

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

    def literal(self, tok: Token) -> Any:
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
    """A Go number literal's value: ints in any base (and legacy octal), floats, hex floats."""
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
