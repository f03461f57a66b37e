"""Package attributes that load their module on first use (PEP 562), for the engine's facades.

``engine.containers`` and ``engine.images`` export names defined in many modules. A caller
that needs one of them should not pay for the others: ``run`` reaches ``images`` for
``image_for_container`` alone, and ``from ...containers.record import Status`` must not load
the lifecycle and the runtime.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each exported name to the
    module that defines it; the value found is kept in the package, so the next lookup is a
    plain attribute."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
