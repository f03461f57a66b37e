"""The AST a template parses into, modelled on Go's parse nodes.

One Literal stands for Go's string, number, bool and nil nodes; With and Range are kinds of
If (a pipeline, a body and an else body) that the executor walks differently. Each node
prints as Go's parse nodes do (their String()), which is what error messages quote:
``executing "" at <.A.B>: ...``. ``pos`` is the node's offset in the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

