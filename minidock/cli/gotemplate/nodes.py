"""The AST a template parses into, modelled on Go's parse nodes.

One Literal stands for Go's string, number, bool and nil nodes; With and Range are kinds of
If (a pipeline, a body and an else body) that the executor walks differently. Each node
prints as Go's parse nodes do (their String()), which is what error messages quote:
``executing "" at <.A.B>: ...``. ``pos`` is the node's offset in the source.
"""

from __future__ import annotations

from typing import Any

from minidock.records import field, record


@record
class Node:
    pos: int


@record
class Text(Node):
    text: str


@record
class Dot(Node):
    def __str__(self) -> str:
        return "."


@record
class Literal(Node):
    text: str
    value: Any

    def __str__(self) -> str:
        return self.text


@record
class Field(Node):
    names: list[str]

    def __str__(self) -> str:
        return "." + ".".join(self.names)


@record
class Variable(Node):
    name: str
    fields: list[str]

    def __str__(self) -> str:
        return ".".join([self.name, *self.fields])


@record
class Identifier(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@record
class Paren(Node):
    pipe: Pipe

    def __str__(self) -> str:
        return f"({self.pipe})"


@record
class Chain(Node):
    node: Node
    fields: list[str]

    def __str__(self) -> str:
        return str(self.node) + "".join("." + f for f in self.fields)


@record
class Command(Node):
    args: list[Node]

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args)


@record
class Pipe(Node):
    decl: list[str]
    is_assign: bool
    cmds: list[Command]

    def __str__(self) -> str:
        head = ", ".join(self.decl) + (" = " if self.is_assign else " := ") if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


@record
class Action(Node):
    pipe: Pipe


@record
class If(Node):
    pipe: Pipe
    body: list[Node]
    else_body: list[Node] = field(default_factory=list)


@record
class With(If):
    pass


@record
class Range(If):
    pass


@record
class Break(Node):
    pass


@record
class Continue(Node):
    pass

