"""A Dockerfile's text -> its instructions, split as Docker's (BuildKit's) parser splits them.

Pure: text in, :class:`Command` records out, no file system, no expansion. What each stage
of the parse does, in Docker's order (moby/buildkit ``frontend/dockerfile/parser``)::

    parser directives     "# escape=`", "# syntax=...", "# check=...": only at the very top,
                          before any other line; escape is \\ (default) or `
    comments              a line whose first non-blank is # is dropped, also in the middle of
                          a continued instruction
    continuation          a line ending in the escape character (then blanks) goes on with the
                          next line; blank lines inside are skipped; the pieces are joined as
                          written (no blanks added or removed)
    instruction           first word (any case) is the keyword; leading --flag[=value] words
                          are its flags
    arguments             per keyword: a JSON array of strings ("exec form") or, if the text
                          is no valid JSON array, the shell form: one string (RUN, CMD,
                          ENTRYPOINT, SHELL), whitespace-split words (FROM, EXPOSE, and COPY,
                          ADD, VOLUME when not JSON), name/value pairs with quotes kept (ENV,
                          LABEL: `k=v ...`, or the legacy `k the rest`), words (ARG), one
                          string (USER, WORKDIR, STOPSIGNAL, MAINTAINER), the inner
                          instruction (ONBUILD), the type then a command (HEALTHCHECK)
    heredocs              RUN, COPY and ADD in shell form: each `<<NAME` (`<<-NAME` strips
                          leading tabs from the terminator line; quoting NAME turns expansion
                          off later) takes the lines up to NAME as its content

Quote removal and ``$VAR`` expansion are not done here: they depend on the build's state
(minidock.dockerfile.words does them when an instruction runs). An unknown keyword parses
(value ``("",)``) and is refused when the build reaches it, with its line number, as Docker.
"""

from __future__ import annotations

import json
import re

from minidock.errors import InvalidArgument
from minidock.records import record

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_DIRECTIVES = ("escape", "syntax", "check")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_HEREDOC_COMMANDS = ("run", "copy", "add")


@record(frozen=True)
class Heredoc:
    name: str  # the terminator, quotes removed
    file_descriptor: int  # the n of n<<NAME, 0 when not given
    content: str  # the lines up to the terminator, each with its newline
    expand: bool = True  # False when NAME was quoted: no $VAR expansion in the content
    chomp: bool = False  # <<-NAME: leading tabs go from each line when it is used


@record(frozen=True)
class Command:
    cmd: str  # the keyword as written ("RUN", "run"); ONBUILD's inner one is sub_cmd
    sub_cmd: str | None
    json: bool  # the arguments were a JSON array (exec form)
    original: str  # the instruction as written, continuations joined (heredocs appended)
    start_line: int
    end_line: int
    flags: tuple[str, ...]  # ("--from=build", "--chown=1:1")
    value: tuple[str, ...]  # the arguments, split by the keyword's rule (module docstring)
    heredocs: tuple[Heredoc, ...] = ()
    escape: str = "\\"  # the file's escape character, for the words' quote removal


class ParseError(InvalidArgument):
    """A Dockerfile that does not parse; the message names the line."""


def parse(text: str) -> list[Command]:
    """Every instruction of the Dockerfile ``text``, in order."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    escape = "\\"
    directives_done = False
    seen_directives: set[str] = set()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        start = i
        token = _trim_newline(raw).lstrip(" \t")
        if not directives_done:
            m = _DIRECTIVE.match(token)
            key = m.group(1).lower() if m else ""
            if m and key in _DIRECTIVES:
                if key in seen_directives:
                    raise ParseError(f"only one {key} parser directive can be used")
                seen_directives.add(key)
                if key == "escape":
                    escape = m.group(2)
                    if escape not in ("\\", "`"):
                        raise ParseError(f"invalid escape token '{escape}' does not match ` "
                                         "or \\")
                continue
            directives_done = True
        if token.startswith("#"):
            continue
        line, done = _trim_continuation(token, escape)
        if done and not line:
            continue
        while not done and i < len(lines):
            raw = lines[i]
            i += 1
            piece = _trim_newline(raw)
            stripped = piece.lstrip(" \t")
            if stripped.startswith("#") or not stripped:
                continue  # comments and blank lines inside a continued instruction
            piece, done = _trim_continuation(piece, escape)
            line += piece
        command = _command(line, escape, start, i)
        if escape != "\\":
            command = Command(command.cmd, command.sub_cmd, command.json, command.original,
                              command.start_line, command.end_line, command.flags,
                              command.value, command.heredocs, escape)
        names = (_heredoc_names(line, escape) if command.cmd.lower() in _HEREDOC_COMMANDS
                 and not command.json and "<<" in line else [])
        if names:
            heredocs = []
            original = line + "\n"
            for name, fd, expand, chomp in names:
                content = []
                while True:
                    if i >= len(lines):
                        raise ParseError(f"dockerfile parse error on line {start}: "
                                         "unterminated heredoc")
                    raw = lines[i]
                    i += 1
                    candidate = _trim_newline(raw)
                    if chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == name:
                        break
                    content.append(raw)
                heredocs.append(Heredoc(name, fd, "".join(content), expand, chomp))
                original += "".join(content) + name + "\n"
            command = Command(command.cmd, command.sub_cmd, command.json, original,
                              start, i, command.flags, command.value, tuple(heredocs),
                              escape)
        commands.append(command)
    return commands


def _trim_newline(s: str) -> str:
    if s.endswith("\r\n"):
        return s[:-2]
    if s.endswith(("\n", "\r")):
        return s[:-1]
    return s


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """(the line without a trailing escape character and blanks, whether the instruction
    ends here)."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[:-1], False
    return line, True


def _command(line: str, escape: str, start: int, end: int) -> Command:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = parts[0]
    args, flags = _builder_flags(parts[1]) if len(parts) == 2 else ("", [])
    args = args.strip()
    name = keyword.lower()
    try:
        if name == "onbuild":
            if not args:
                return Command(keyword, None, False, line, start, end, tuple(flags), ())
            inner = _command(args, escape, start, end)
            return Command(keyword, inner.cmd, inner.json, line, start, end, tuple(flags),
                           inner.value)
        is_json, value = _arguments(name, args, escape)
    except ParseError as e:
        raise ParseError(f"dockerfile parse error on line {start}: {e.message}") from None
    return Command(keyword, None, is_json, line, start, end, tuple(flags), tuple(value))


def _arguments(name: str, rest: str, escape: str) -> tuple[bool, list[str]]:
    if name in ("run", "cmd", "entrypoint", "shell"):
        if not rest:
            return False, []
        parsed = _json_strings(rest)
        return (True, parsed) if parsed is not None else (False, [rest])
    if name in ("copy", "add", "volume"):
        if not rest:
            return False, []
        parsed = _json_strings(rest)
        return (True, parsed) if parsed is not None else (False, _WHITESPACE.split(rest))
    if name in ("from", "expose"):
        return False, _WHITESPACE.split(rest) if rest else []
    if name in ("env", "label"):
        return False, _name_values(rest, name.upper(), escape)
    if name == "arg":
        return False, _words(rest, escape)
    if name in ("user", "workdir", "stopsignal", "maintainer"):
        return False, [rest] if rest else []
    if name == "healthcheck":
        m = re.match(r"(\S+)\s*", rest)
        if not rest or m is None:
            return False, []
        is_json, cmd = _arguments("cmd", rest[m.end():], escape)
        return is_json, [m.group(1), *cmd]
    return False, [""]  # an unknown keyword: refused when the build reaches it


def _json_strings(rest: str) -> list[str] | None:
    """A JSON array of strings at the start of ``rest`` (what follows it is ignored, as Go's
    json.Decoder does), or None when there is none. An array holding anything but strings
    is an error, not the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ParseError("when using JSON array syntax, arrays must be comprised of strings "
                         "only")
    return value


def _builder_flags(line: str) -> tuple[str, list[str]]:
    """Split leading ``--name[=value]`` words off ``line``: (the rest, the flags)."""
    words: list[str] = []
    pos, n = 0, len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word, blank_ok, quote = "", False, ""
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\":
                    if pos + 1 == n:
                        pos += 1
                        continue
                    pos += 1
                    word += line[pos]
                else:
                    word += ch
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word += line[pos]
            else:
                word += ch
            pos += 1
        if word == "--":
            return line[pos:], words
        if blank_ok or word:
            words.append(word)


def _words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words, quotes and escapes kept in the words (Docker's parseWords:
    the shell-word rules, without removing anything)."""
    words: list[str] = []
    word, blank_ok, quote, in_word = "", False, "", False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if ch == escape and quote != "'":
            # kept with the character after it, which means nothing special then (not even
            # a closing quote); an escape at the very end is dropped
            word += rest[i:i + 2] if i + 1 < n else ""
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch.isspace():
            if blank_ok or word:
                words.append(word)
            word, blank_ok, in_word = "", False, False
            i += 1
            continue
        elif ch in "'\"":
            quote, blank_ok = ch, True
        word += ch
        i += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def _name_values(rest: str, keyword: str, escape: str) -> list[str]:
    words = _words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:  # the legacy form: KEY the rest of the line
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ParseError(f"{keyword} must have two arguments")
        return [parts[0], parts[1]]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise ParseError(f"Syntax error - can't find = in {json.dumps(word)}. Must be of "
                             "the form: name=value")
        key, _, value = word.partition("=")
        out += [key, value]
    return out


def _heredoc_names(line: str, escape: str) -> list[tuple[str, int, bool, bool]]:
    """(name, fd, expand, chomp) of each ``<<NAME`` word of the instruction line."""
    out = []
    for word in _words(line, escape):
        m = _HEREDOC.match(word)
        if m is None or not m.group(3):
            continue
        name = m.group(3)
        expand = True
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
            name, expand = name[1:-1], False
        out.append((name, int(m.group(1) or 0), expand, m.group(2) == "-"))
    return out
