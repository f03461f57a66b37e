"""The lexer: a template source into text pieces and the tokens of each action between them.

The parser (:mod:`.parse`) gets the whole list at once: minidock lexes all of a source before
parsing any of it. Trim markers (``{{- ``, `` -}}``) are applied here, comments dropped, and
a space between two tokens of an action kept as a "space" token because Go's grammar needs
it (``.A .B`` is two operands, ``.A.B`` one field chain).
"""

from __future__ import annotations

import re
from typing import Any

from minidock.cli.gotemplate.errors import TemplateError, syntax_error
from minidock.gofmt import go_quote
from minidock.records import record


@record
class Token:
    kind: str  # field var dot ident string raw char number bool nil ( ) | := = , space eof
    text: str
    pos: int


# ("text", str, pos) or ("action", [Token, ...], pos), pos being the offset of the text or of
# the action's "{{"
Item = tuple[str, Any, int]

_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?\d+)?|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_RAW = re.compile(r"`[^`]*`")
_CHAR = re.compile(r"'(?:[^'\\\n]|\\[^\n]+?)'")
_SPACES = " \t\r\n"


def lex(source: str, name: str) -> list[Item]:
    """The items of ``source``; raises TemplateError for an unclosed action, string, ..."""
    return _Lexer(source, name).split()


class _Lexer:
    def __init__(self, src: str, name: str) -> None:
        self.src = src
        self.name = name

    def fail(self, msg: str, pos: int) -> TemplateError:
        return syntax_error(self.src, self.name, msg, pos)

    def split(self) -> list[Item]:
        """[("text", str, pos) | ("action", [tokens], pos)], trim markers applied."""
        src = self.src
        items: list[Item] = []
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

    def lex_action(self, i: int, open_pos: int) -> tuple[list[Token] | None, int, bool]:
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
        toks: list[Token] = []
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
                toks.append(Token("space", " ", tok.pos))
            space = False
            toks.append(tok)

    def lex_token(self, i: int, open_pos: int) -> tuple[Token, int]:
        src = self.src
        c = src[i]
        two = src[i:i + 2]
        if two == ":=":
            return Token(":=", two, i), i + 2
        if c in "()|=,":
            return Token(c, c, i), i + 1
        if c == '"':
            m = _STRING.match(src, i)
            if not m:
                raise self.fail("unterminated quoted string", open_pos)
            return Token("string", m.group(0), i), m.end()
        if c == "`":
            m = _RAW.match(src, i)
            if not m:
                raise self.fail("unterminated raw quoted string", open_pos)
            return Token("raw", m.group(0), i), m.end()
        if c == "'":
            m = _CHAR.match(src, i)
            if not m:
                raise self.fail("unterminated character constant", open_pos)
            return Token("char", m.group(0), i), m.end()
        if c == "$":
            m = _IDENT.match(src, i + 1)
            end = m.end() if m else i + 1
            return Token("var", src[i:end], i), end
        if c == ".":
            m = _IDENT.match(src, i + 1)
            if m:
                return Token("field", src[i:m.end()], i), m.end()
            if not (i + 1 < len(src) and src[i + 1].isdigit()):
                return Token("dot", ".", i), i + 1
        if c.isdigit() or c in "+-.":
            m = _NUMBER.match(src, i)
            if m and m.group(0) not in ("+", "-", ""):
                end = m.end()
                if end < len(src) and (src[end].isalnum() or src[end] == "_"):
                    raise self.fail(f"bad number syntax: {go_quote(src[i:end + 1])}", open_pos)
                return Token("number", m.group(0), i), end
        m = _IDENT.match(src, i)
        if m:
            word = m.group(0)
            if word in ("true", "false"):
                return Token("bool", word, i), m.end()
            if word == "nil":
                return Token("nil", word, i), m.end()
            return Token("ident", word, i), m.end()
        raise self.fail(f"unexpected {go_quote(c)} in command", open_pos)
