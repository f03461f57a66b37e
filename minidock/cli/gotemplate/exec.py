"""The executor: walks a parsed template over data and writes the text (Go's text/template exec).

Errors name the line, the column and the node being evaluated, as Go's do:
``template: NAME:LINE:COL: executing "NAME" at <.A.B>: MSG``. ``missing_error`` is Go's
``missingkey=error`` option.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from minidock.cli.gotemplate.errors import TemplateError
from minidock.cli.gotemplate.funcs import (
    KIND_NAMES,
    PARAMS,
    VARIADIC,
    FuncError,
    FuncTable,
    TypeMismatch,
)
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
from minidock.cli.gotemplate.values import MISSING, go_type, go_value, is_true, key_order

_NO_FINAL: Any = object()  # "no value piped in" (Go's missingVal)


def execute(nodes: list[Node], source: str, name: str, data: Any, funcs: FuncTable,
            missing_error: bool) -> str:
    """The text of ``nodes`` (parsed from ``source``) run on ``data``."""
    state = _State(source, name, funcs, missing_error)
    state.vars.append(("$", data))
    try:
        state.walk(data, nodes)
    except (_BreakLoop, _ContinueLoop):  # pragma: no cover (the parser forbids them)
        pass
    return "".join(state.out)


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


class _State:
    def __init__(self, source: str, name: str, funcs: FuncTable, missing_error: bool) -> None:
        self.source = source
        self.name = name
        self.funcs = funcs
        self.missing_error = missing_error
        self.vars: list[tuple[str, Any]] = []
        self.out: list[str] = []
        self.at: Node | None = None

    def fail(self, msg: str, node: Node | None = None) -> TemplateError:
        node = node or self.at
        name = self.name
        if node is None:
            return TemplateError(f"template: {name}: {msg}")
        src = self.source
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
            items = ((k, value[k]) for k in sorted(value, key=key_order))
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
        kinds = PARAMS.get(name, ())
        for n, value in enumerate(args):
            kind = kinds[n] if n < len(kinds) else VARIADIC.get(name, "a")
            node = arg_nodes[n] if n < len(arg_nodes) else cmd
            problem = _type_problem(value, kind, node)
            if problem:
                raise self.fail(problem, node)
        self.at = ident
        try:
            return fn(*args)
        except TypeMismatch as e:
            raise self.fail(str(e), cmd) from None
        except (FuncError, ValueError, TypeError) as e:
            raise self.fail(f"error calling {name}: {e}", cmd) from None

    def arg(self, dot: Any, node: Node) -> Any:
        if isinstance(node, Literal) and node.value is None:
            return None
        return self.operand(dot, node)


def _type_problem(value: Any, kind: str, node: Node) -> str | None:
    """Go's evalArg/validateType complaint about an argument, or None if it fits."""
    if kind == "a":
        return None
    ok = {"s": isinstance(value, str),
          "i": isinstance(value, int) and not isinstance(value, bool),
          "l": isinstance(value, (list, tuple)) or (value is None or value is MISSING)}[kind]
    if ok:
        return None
    want = KIND_NAMES[kind]
    if isinstance(node, Literal):
        if kind == "l":
            return f"can't handle {node} for arg of type {want}"
        return f"expected {'integer' if kind == 'i' else want}; found {node}"
    if value is MISSING or value is None:
        return f"invalid value; expected {want}"
    return f"wrong type for value; expected {want}; got {go_type(value)}"
