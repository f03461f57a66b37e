"""Docker's shell-word lexer: split on unquoted blanks, remove quotes, expand variables.

The subset of Docker's shell lexer that Dockerfile instructions use on their arguments::

    split_words('a "b c" d\\ e')           ['a', '"b c"', 'd\\ e']   (quotes and escapes kept)
    process_word('"$X"-y', {"X": "1"})     '1-y'

    $v ${v}           the value ("" when unset)
    ${v:-w} ${v-w}    w when v is unset or empty / when v is unset; else the value
    ${v:+w} ${v+w}    w when v is set and not empty / when v is set; else ""
    '...'             literal
    "..."             expanded; inside, only \\ \" and \\$ are escapes
    \\c               c, outside quotes (\\$ is a literal dollar)
"""

from __future__ import annotations

import re

from minidock.errors import InvalidArgument

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_words(s: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for :func:`process_word`."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    in_word = False
    while i < len(s):
        c = s[i]
        if quote:
            cur.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            in_word = True
            cur.append(c)
            if c in "'\"":
                quote = c
            elif c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    if in_word:
        words.append("".join(cur))
    return words


def process_word(word: str, env: dict[str, str], escape: str = "\\",
                 raw: bool = False) -> str:
    """Remove quotes, apply escapes and expand ``$v ${v} ${v:-w} ${v:+w} ${v-w} ${v+w}``;
    ``escape`` is the Dockerfile's escape character (\\ or, by directive, `). ``raw``: a
    heredoc's text, where quotes and escapes stay as written (an escape still keeps the
    next character from expanding) and only variables expand."""
    out: list[str] = []
    i = 0
    quote = ""
    while i < len(word):
        c = word[i]
        if raw:
            if c == escape and i + 1 < len(word):
                out.append(word[i:i + 2])
                i += 2
            elif c == "$":
                value, i = _expand_at(word, i, env, escape)
                out.append(value)
            else:
                out.append(c)
                i += 1
            continue
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                out.append(c)
            i += 1
            continue
        if c == escape and i + 1 < len(word):
            nxt = word[i + 1]
            # inside double quotes only the escape, " and $ are escapable; elsewhere any
            if quote == '"' and nxt not in escape + '"$':
                out.append(c)
            out.append(nxt)
            i += 2
            continue
        if c == '"' and quote == '"':
            quote = ""
            i += 1
            continue
        if c in "'\"" and not quote:
            quote = c
            i += 1
            continue
        if c == "$":
            value, i = _expand_at(word, i, env, escape)
            out.append(value)
            continue
        out.append(c)
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    return "".join(out)


def _expand_at(word: str, i: int, env: dict[str, str], escape: str) -> tuple[str, int]:
    """Expand the variable at ``word[i] == "$"``; return (value, index after it)."""
    if i + 1 < len(word) and word[i + 1] == "{":
        end = word.find("}", i + 2)
        if end < 0:
            raise InvalidArgument(f"missing '}}' in {word!r}")
        body = word[i + 2:end]
        m = _VAR.match(body)
        if not m:
            raise InvalidArgument(f"bad substitution in {word!r}")
        name, rest = m.group(0), body[m.end():]
        value = env.get(name)
        if rest == "":
            return value or "", end + 1
        for op in (":-", ":+", "-", "+"):
            if rest.startswith(op):
                alt = process_word(rest[len(op):], env, escape)
                if op == ":-":
                    return (value if value else alt), end + 1
                if op == "-":
                    return (value if value is not None else alt), end + 1
                if op == ":+":
                    return (alt if value else ""), end + 1
                return (alt if value is not None else ""), end + 1
        raise InvalidArgument(f"unsupported modifier ({rest[:1]}) in substitution {word!r}")
    m = _VAR.match(word, i + 1)
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), m.end()
