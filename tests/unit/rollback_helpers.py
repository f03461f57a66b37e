"""What the rollback tests (tests/unit/test_rollback_*.py) share: an interruption that only
BaseException handlers see, a stand-in that fails, and the open file descriptors."""

from __future__ import annotations

import os
from typing import Any


class Interrupted(BaseException):
    """Raised where a step is cut short, as KeyboardInterrupt would be."""


def raising(exc: BaseException) -> Any:
    """A function that raises ``exc`` whatever it is called with (for monkeypatch.setattr)."""
    def fail(*args: object, **kwargs: object) -> None:
        raise exc
    return fail


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))
