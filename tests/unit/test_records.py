"""minidock.records.record behaves as dataclasses.dataclass for every feature the code uses:
each case is built both ways from the same class body and must answer the same."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import ClassVar

import pytest

from minidock import records


def both(body, frozen: bool = False):
    """The class made by ``body(decorator, field)`` as a dataclass and as a record."""
    dc = body(dataclasses.dataclass(frozen=frozen), dataclasses.field)
    rec = body(records.record(frozen=frozen), records.field)
    return dc, rec


def point(deco, field):
    @deco
    class Point:
        x: int
        y: int = 0
        tags: list[str] = field(default_factory=list)
        secret: str = field(default="s", repr=False)
        kind: ClassVar[str] = "point"

    return Point


@pytest.mark.parametrize("frozen", [False, True])
def test_init_repr_eq_match_dataclasses(frozen: bool) -> None:
    dc, rec = both(point, frozen)
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {"x": 3, "tags": ["a"]}),
                         ((1, 2, ["t"], "z"), {})]:
        a, b = dc(*args, **kwargs), rec(*args, **kwargs)
        assert repr(a).replace("test_records.point.<locals>.", "") == \
            repr(b).replace("test_records.point.<locals>.", "")
        assert dataclasses.asdict(a) == records.asdict(b)
    assert rec(1) == rec(1) and rec(1) != rec(2) and rec(1) != dc(1)
    assert rec(1).tags is not rec(1).tags  # a fresh list each time
    assert rec.kind == "point" and "kind" not in records.asdict(rec(1))
    assert rec.y == 0 and not hasattr(rec, "tags")  # class attributes as a dataclass leaves them


@pytest.mark.parametrize("frozen", [False, True])
def test_errors_match_dataclasses(frozen: bool) -> None:
    dc, rec = both(point, frozen)
    for args, kwargs in [((), {}), ((1, 2, [], "s", 5), {}), ((1,), {"nope": 1}),
                         ((1,), {"x": 2})]:
        with pytest.raises(TypeError) as want:
            dc(*args, **kwargs)
        with pytest.raises(TypeError) as got:
            rec(*args, **kwargs)
        assert str(got.value).split("() ")[1] == str(want.value).split("() ")[1]


def test_frozen_refuses_assignment_and_hashes_by_value() -> None:
    dc, rec = both(point, frozen=True)
    for r in (dc(1), rec(1)):
        with pytest.raises(AttributeError):
            r.x = 2
    with pytest.raises(AttributeError):
        del r.x  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(r)  # a list field: unhashable, as with dataclasses
    key = records.record(frozen=True)(type("Key", (), {"__annotations__": {"a": "int"}}))
    assert hash(key(1)) == hash(key(1)) and len({key(1), key(1), key(2)}) == 2
    dc_mut, rec_mut = both(point)
    assert dc_mut.__hash__ is None and rec_mut.__hash__ is None  # mutable: unhashable
    m = rec_mut(1)
    m.x = 5
    assert m.x == 5


def test_replace_inheritance_post_init_and_nesting() -> None:
    @records.record
    class Base:
        a: int
        b: str = "b"

    @records.record
    class Child(Base):
        c: list[int] = records.field(default_factory=list)

        def __post_init__(self) -> None:
            self.c.append(self.a)

    @records.record(frozen=True)
    class Holder:
        child: Child
        more: tuple[Child, ...] = ()
        by_name: dict[str, Child] = records.field(default_factory=dict)

    c = Child(1)
    assert (c.a, c.b, c.c) == (1, "b", [1])
    c2 = records.replace(c, b="x")
    assert (c2.a, c2.b, c2.c) == (1, "x", [1, 1])  # __init__ ran again, as in dataclasses
    with pytest.raises(TypeError):
        records.replace(c, nope=1)
    c = Child(1)
    h = Holder(c, (c,), {"k": c})
    assert records.asdict(h) == {"child": {"a": 1, "b": "b", "c": [1]},
                                 "more": ({"a": 1, "b": "b", "c": [1]},),
                                 "by_name": {"k": {"a": 1, "b": "b", "c": [1]}}}


def test_definition_errors_match_dataclasses() -> None:
    def default_first(deco, field):
        @deco
        class Bad:
            a: int = 1
            b: int

    def mutable_default(deco, field):
        @deco
        class Bad:
            a: list[int] = []

    with pytest.raises(TypeError):
        default_first(records.record, records.field)
    with pytest.raises(ValueError):
        mutable_default(records.record, records.field)


def test_importing_records_loads_neither_dataclasses_nor_typing() -> None:
    code = ("import sys; import minidock.records; "
            "print(sorted(m for m in ('dataclasses', 'typing', 'inspect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out == "[]\n"
