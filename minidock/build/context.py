"""A build context: the files of a directory that a build sees, after ``.dockerignore``.

The ignore file is read as Docker reads it (moby/patternmatcher ``ignorefile.ReadAll``): one
pattern per line; a line starting with ``#`` is a comment; blanks around a pattern go; ``!``
makes an exception; each pattern is cleaned like a path (``a//b/../c`` -> ``a/c``) and a
leading ``/`` dropped (patterns are relative to the context). ``<Dockerfile>.dockerignore``
next to the Dockerfile wins over the context's ``.dockerignore`` (as BuildKit does).

Matching (``PatternMatcher.MatchesOrParentMatches``): the patterns are tried in order and the
last one that matches decides (a match of an exception re-includes). A pattern matches a path
when it matches the whole path or one of its parent directories, so ``dir`` excludes all of
``dir/``. Pattern syntax is Go's ``filepath.Match`` plus ``**``:

    *        any run of characters but /          ?        one character but /
    **       any number of whole directories      [a-z]    a class, [^a] its complement
    \\x       x itself

The Dockerfile and the ignore file are always sent, even when a pattern excludes them (the
CLI's ``TrimBuildFilesFromExcludes``), though a build's ``COPY .`` then leaves them out when
they were excluded. A directory that is excluded is still walked when an exception could
re-include something below it (one whose pattern starts with the directory's path); the
directory comes along with what is re-included, as a copy creates it.
"""

from __future__ import annotations

import os
import posixpath
import re

from minidock.records import record

IGNORE_FILE = ".dockerignore"


@record(frozen=True)
class Pattern:
    text: str  # as cleaned, without the "!"
    exclusion: bool  # a "!" line: an exception that re-includes
    regex: re.Pattern[str]


def read_ignore_file(data: str) -> list[str]:
    """The patterns of an ignore file, cleaned, exceptions still marked with ``!``."""
    out = []
    for i, line in enumerate(data.splitlines()):
        if i == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if pattern.startswith("//"):  # normpath keeps a leading "//"; Go's Clean does not
                pattern = "/" + pattern.lstrip("/")
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append(("!" if invert else "") + pattern)
    return out


def compile_patterns(patterns: list[str]) -> list[Pattern]:
    out = []
    for p in patterns:
        exclusion = p.startswith("!")
        text = p[1:] if exclusion else p
        out.append(Pattern(text, exclusion, re.compile(_regex(text), re.DOTALL)))
    return out


def _regex(pattern: str) -> str:
    """Go's filepath.Match syntax plus ``**``, as a regular expression over the whole path."""
    out = "^"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is "**"
                out += ".*" if i >= n else "(.*/)?"
                continue
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(ch)
            else:
                body = pattern[i + 1:end]
                if body.startswith("^"):
                    body = "^" + body[1:].replace("\\", "\\\\")
                else:
                    body = body.replace("\\", "\\\\")
                out += "[" + body + "]"
                i = end
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out += re.escape(pattern[i])
            else:
                out += re.escape("\\")
        else:
            out += re.escape(ch)
        i += 1
    return out + "$"


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """Whether the context path ``path`` (relative, ``/``-separated) is left out."""
    matched = False
    parent = posixpath.dirname(path)
    parents = parent.split("/") if parent else []
    for p in patterns:
        if p.exclusion != matched:
            continue  # an exception only matters once excluded, a pattern only before
        match = p.regex.match(path) is not None
        if not match and parents:
            match = any(p.regex.match("/".join(parents[:i + 1])) is not None
                        for i in range(len(parents)))
        if match:
            matched = not p.exclusion
    return matched


def ignore_patterns(context: str, dockerfile: str | None = None) -> list[str]:
    """The patterns for ``context``: ``<dockerfile>.dockerignore`` if it exists, else the
    context's ``.dockerignore``, else none."""
    candidates = []
    if dockerfile:
        candidates.append(dockerfile + IGNORE_FILE)
    candidates.append(os.path.join(context, IGNORE_FILE))
    for path in candidates:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                return read_ignore_file(f.read())
        except FileNotFoundError:
            continue
    return []


def context_files(context: str, patterns: list[str], keep: tuple[str, ...] = ()) -> list[str]:
    """Every path of the context directory a build sees (directories too), relative and
    ``/``-separated, sorted; ``keep`` names paths always sent (the Dockerfile, the ignore
    file). Symlinks are listed, never followed."""
    compiled = compile_patterns(patterns)
    exceptions = [p.text + "/" for p in compiled if p.exclusion]
    out: list[str] = []

    def walk(rel: str) -> None:
        for name in sorted(os.listdir(os.path.join(context, rel) if rel else context)):
            path = f"{rel}/{name}" if rel else name
            full = os.path.join(context, path)
            is_dir = os.path.isdir(full) and not os.path.islink(full)
            if path in keep or not excluded(path, compiled):
                out.append(path)
                if is_dir:
                    walk(path)
            elif is_dir and any(e.startswith(path + "/") for e in exceptions):
                # an exception names something below: what comes back brings its parent
                # directory along (the copy creates it), the rest of it stays out
                at = len(out)
                walk(path)
                if len(out) > at:
                    out.insert(at, path)

    walk("")
    return out
