"""The functions a template can call: Go's builtins, docker/cli's, and fmt.Sprintf for printf.

Each table entry is (function, minimum args, maximum args or None). A function raises
FuncError for what Go reports as ``error calling NAME: ...`` and TypeMismatch for an argument
Go rejects before the call; PARAMS lists the argument types the executor checks first, so
that its message names the offending argument as Go's does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from minidock.cli.gotemplate.values import (
    MISSING,
    go_float,
    go_type,
    go_value,
    is_true,
    to_json,
)
from minidock.gofmt import go_quote


class FuncError(Exception):
    """Raised by a template function; reported as Go's "error calling NAME: ..."."""


class TypeMismatch(Exception):
    """An argument of the wrong type: Go reports these without "error calling"."""


def _str_arg(v: Any, fn: str) -> str:
    if isinstance(v, str):
        return v
    if v is None or v is MISSING:
        raise TypeMismatch("invalid value; expected string")
    raise TypeMismatch(f"wrong type for value; expected string; got {go_type(v)}")


def _int_arg(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeMismatch(f"wrong type for value; expected int; got {go_type(v)}")
    return v


def _f_json(v: Any) -> str:
    return to_json(v)


def _f_join(v: Any, sep: Any) -> str:
    sep = _str_arg(sep, "join")
    if v is None or v is MISSING:
        return ""
    if isinstance(v, str):
        raise TypeMismatch("wrong type for value; expected []string; got string")
    if not isinstance(v, (list, tuple)):
        raise TypeMismatch(f"wrong type for value; expected []string; got {go_type(v)}")
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
    raise FuncError(f"len of type {go_type(v)}" if v is not None and v is not MISSING
                     else "len of nil pointer")


def _f_index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise FuncError("index of untyped nil")
    for ix in indexes:
        if isinstance(item, dict):
            if not isinstance(ix, str):
                raise FuncError(f"value has type {go_type(ix)}; should be string")
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
                raise FuncError(f"cannot index slice/array with type {go_type(ix)}")
            if not 0 <= ix < len(item):
                raise FuncError(f"index out of range: {ix}")
            item = item[ix] if not isinstance(item, str) else item.encode()[ix]
        elif item is None or item is MISSING:
            raise FuncError("index of untyped nil")
        else:
            raise FuncError(f"can't index item of type {go_type(item)}")
    return item


def _f_slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise FuncError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 2:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    bounds = [_int_arg(i) for i in indexes]
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise FuncError(f"index out of range: {hi if hi > len(item) else lo}")
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
            text = go_float(float(arg))
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
        raise FuncError("missing argument for comparison")
    ka = _basic_kind(a)
    for b in others:
        kb = _basic_kind(b)
        if ka != kb:
            if ka != "nil" and kb != "nil":
                raise FuncError("incompatible types for comparison")
            continue  # Go: a nil never equals a non-nil value
        if ka == "other":
            raise FuncError(f"non-comparable type {go_value(a, False)}: {go_type(a)}")
        if ka == "nil" or a == b:
            return True
    return False


def _f_ne(a: Any, b: Any) -> bool:
    return not _f_eq(a, b)


def _f_lt(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in ("nil", "bool", "other") or kb in ("nil", "bool", "other"):
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
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
PARAMS: dict[str, tuple[str, ...]] = {
    "printf": ("s",), "split": ("s", "s"), "join": ("l", "s"), "title": ("s",),
    "lower": ("s",), "upper": ("s",), "pad": ("s", "i", "i"), "truncate": ("s", "i"),
    "slice": ("a",),
}
VARIADIC: dict[str, str] = {"slice": "i"}
KIND_NAMES = {"s": "string", "i": "int", "l": "[]string"}


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
