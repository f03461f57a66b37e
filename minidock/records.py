"""``@record``: the typed data classes of minidock, built without the ``dataclasses`` module.

Why: ``dataclasses`` costs every ``minidock run`` about 3 ms to import (it loads inspect, ast,
dis and tokenize) and ~150 us per class, because it compiles ``__init__``, ``__repr__`` and
``__eq__`` from source text with ``exec``; the start path defines ~40 classes, so together about
a sixth of a start. A record gets the same methods as closures over its field list instead.

What a record is, exactly as ``@dataclass`` would make it for the features used here:
fields are the class's own annotations in order, after those of record bases; ``__init__``
takes them positionally or by name, with ``= default`` or ``field(default_factory=...)``;
``__repr__`` shows them (but ``field(repr=False)``); ``__eq__`` compares same-class records
field by field; ``frozen=True`` refuses assignment and makes the record hashable, otherwise
it is unhashable; ``__post_init__`` runs after ``__init__``. ``replace`` and ``asdict`` as in
``dataclasses``. ``ClassVar`` annotations are not fields.

Type checkers are shown ``dataclasses`` itself (the ``TYPE_CHECKING`` branch below), so every
constructor call is checked against the real dataclass semantics; tests/unit/test_records.py
holds the runtime half to the same behaviour.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the start path ~2 ms
if TYPE_CHECKING:
    from dataclasses import asdict, field, replace
    from dataclasses import dataclass as record
else:
    _MISSING = object()

    class _Field:
        __slots__ = ("default", "default_factory", "name", "repr")

        def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True):
            if default is not _MISSING and default_factory is not _MISSING:
                raise ValueError("cannot specify both default and default_factory")
            self.default = default
            self.default_factory = default_factory
            self.repr = repr
            self.name = ""

    def field(*, default=_MISSING, default_factory=_MISSING, repr=True):
        """A field with a default factory (or ``repr=False``), as ``dataclasses.field``."""
        return _Field(default, default_factory, repr)

    def record(cls=None, /, *, frozen=False):
        """Make ``cls`` a record (see the module docstring); ``@record`` or
        ``@record(frozen=True)``."""
        if cls is None:
            return lambda c: _build(c, frozen)
        return _build(cls, frozen)

    def replace(obj, /, **changes):
        """A copy of the record ``obj`` with some fields changed."""
        values = {name: getattr(obj, name) for name in obj.__record_fields__}
        for name in changes:
            if name not in values:
                raise TypeError(f"{type(obj).__name__}.__init__() got an unexpected keyword "
                                f"argument '{name}'")
        values.update(changes)
        return type(obj)(**values)

    def asdict(obj):
        """The record ``obj`` as a dict, records, lists, tuples and dicts inside converted."""
        return _plain(obj)

    def _plain(value):
        if hasattr(type(value), "__record_fields__"):
            return {name: _plain(getattr(value, name)) for name in value.__record_fields__}
        if isinstance(value, (list, tuple)):
            return type(value)(_plain(v) for v in value)
        if isinstance(value, dict):
            return type(value)((_plain(k), _plain(v)) for k, v in value.items())
        return value

    def _is_classvar(annotation):
        text = annotation if isinstance(annotation, str) else repr(annotation)
        return text.startswith(("ClassVar", "typing.ClassVar"))

    def _build(cls, frozen):
        fields = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(base.__dict__.get("__record_fields__", {}))
        # (not inspect.get_annotations: inspect is the import this module exists to avoid)
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        for name, annotation in own.items():
            if _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, _MISSING)
            f = value if isinstance(value, _Field) else _Field(default=value)
            f.name = name
            if f.default is _MISSING:
                if name in cls.__dict__:
                    delattr(cls, name)  # a field(default_factory=...) object
            else:
                setattr(cls, name, f.default)
            if isinstance(f.default, (list, dict, set)):
                raise ValueError(f"mutable default {type(f.default)} for field {name} is not "
                                 "allowed: use default_factory")
            fields[name] = f
        seen_default = False
        for f in fields.values():
            if f.default is _MISSING and f.default_factory is _MISSING:
                if seen_default:
                    raise TypeError(f"non-default argument '{f.name}' follows default argument")
            else:
                seen_default = True
        cls.__record_fields__ = fields
        _add_methods(cls, tuple(fields.values()), frozen)
        return cls

    def _add_methods(cls, fields, frozen):
        names = tuple(f.name for f in fields)
        n = len(names)
        qualname = cls.__qualname__
        set_value = object.__setattr__ if frozen else setattr
        post_init = getattr(cls, "__post_init__", None)

        required = sum(1 for f in fields
                       if f.default is _MISSING and f.default_factory is _MISSING)
        takes = f"{n + 1}" if required == n else f"from {required + 1} to {n + 1}"

        def __init__(self, *args, **kwargs):
            if len(args) > n:
                raise TypeError(f"{qualname}.__init__() takes {takes} positional arguments "
                                f"but {len(args) + 1} were given")
            for name, value in zip(names[:len(args)], args, strict=True):
                set_value(self, name, value)
            for f in fields[len(args):]:
                if f.name in kwargs:
                    value = kwargs.pop(f.name)
                elif f.default is not _MISSING:
                    value = f.default
                elif f.default_factory is not _MISSING:
                    value = f.default_factory()
                else:
                    raise TypeError(f"{qualname}.__init__() missing 1 required positional "
                                    f"argument: '{f.name}'")
                set_value(self, f.name, value)
            if kwargs:
                name = next(iter(kwargs))
                given = "multiple values for argument" if name in names else \
                    "an unexpected keyword argument"
                raise TypeError(f"{qualname}.__init__() got {given} '{name}'")
            if post_init is not None:
                self.__post_init__()

        shown = tuple(f.name for f in fields if f.repr)

        def __repr__(self):
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
            return f"{qualname}({inner})"

        def _values(self):
            return tuple(getattr(self, name) for name in names)

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return _values(self) == _values(other)

        own_eq = "__eq__" in cls.__dict__
        cls.__init__ = __init__
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = __repr__
        if not own_eq:
            cls.__eq__ = __eq__
        if frozen:
            def __setattr__(self, name, value):
                raise _frozen_error(f"cannot assign to field '{name}'")

            def __delattr__(self, name):
                raise _frozen_error(f"cannot delete field '{name}'")

            def __hash__(self):
                return hash(_values(self))

            cls.__setattr__ = __setattr__
            cls.__delattr__ = __delattr__
            if cls.__dict__.get("__hash__") is None:
                cls.__hash__ = __hash__
        elif not own_eq and "__hash__" not in cls.__dict__:
            cls.__hash__ = None  # mutable and compared by value: unhashable, as a dataclass

    class FrozenInstanceError(AttributeError):
        """Assignment to a field of a frozen record (dataclasses' class of the same name)."""

    def _frozen_error(text):
        return FrozenInstanceError(text)

__all__ = ["asdict", "field", "record", "replace"]
