"""The ``minidock`` console script: ``run`` and ``build`` without click, everything else
through it.

``minidock run`` is the command people time. click and the command modules cost about 30 ms of
imports before any work starts, a fifth of a detached start, so the plain forms of ``run`` are
parsed by :mod:`minidock.cli.runflags` and run directly; so are those of ``build``
(:mod:`minidock.cli.buildflags`: a cached build is ~45 ms, click ~13 ms of it); anything else
goes to :mod:`minidock.cli.main`. Both paths run the same ``run_command`` (``build_command``)
behind the same error boundary (:mod:`minidock.cli.boundary`). Nothing imports this module
but the console script and ``python -m minidock``.
"""

from __future__ import annotations

import os
import sys

from minidock.cli.boundary import exit_with, finish
from minidock.cli.runflags import parse_run, run_command
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def main() -> None:
    argv = sys.argv[1:]
    parsed = parse_run(argv)
    if parsed is not None:
        _fast(parsed, run_command, "run")
    if "build" in argv:
        from minidock.cli.buildflags import build_command, parse_build

        built = parse_build(argv)
        if built is not None:
            _fast(built, build_command, "build")
    from minidock.cli.main import main as full

    full()


def _fast(parsed: tuple[dict[str, Any], dict[str, Any]], command: Callable[..., int],
          action: str) -> None:
    """Run a command parsed without click behind the same error boundary; never returns."""
    glob, params = parsed
    debug = glob["debug"] or bool(os.environ.get("MINIDOCK_DEBUG"))
    try:
        code = command(Paths.from_env(glob["root"], glob["run_root"]), **params)
    except (Exception, KeyboardInterrupt) as e:
        exit_with(e, debug, action)
    finish(code)
