"""The error boundary: an exception becomes Docker's one ``Error: ...`` line and exit status,
never Python's traceback or repr (``--debug`` shows the traceback too); :func:`finish` exits
once a command has done its work."""

from __future__ import annotations

import os
import sys

from minidock.errors import MinidockError


def describe(e: BaseException) -> str:
    """One line for an error, in the words a user reads: never Python's repr of it.

    An OSError nobody explained better says what it was about and why, as Go's PathError
    does (``/var/lib/x: permission denied``); the errno's text is lower-cased like Docker's."""
    if isinstance(e, MinidockError):
        return e.message
    if isinstance(e, OSError):
        reason = (e.strerror or str(e) or type(e).__name__)
        if reason[1:2].islower():  # "Permission denied", not "AF_UNIX path too long"
            reason = reason[:1].lower() + reason[1:]
        subject = ""
        if e.filename is not None:
            subject = os.fsdecode(e.filename)
            if getattr(e, "filename2", None) is not None:
                subject += " -> " + os.fsdecode(e.filename2)
        return f"{subject}: {reason}" if subject else reason
    text = str(e).splitlines()[0] if str(e) else ""
    return f"unexpected {type(e).__name__}{': ' + text if text else ''}"


def exit_with(e: BaseException, debug: bool, action: str = "") -> None:
    """Docker's answer to an error: one line on stderr, its exit status. ``action`` names
    the command that failed, when the error does not say what it was doing."""
    if isinstance(e, KeyboardInterrupt):
        sys.exit(130)
    if debug:
        import traceback

        traceback.print_exception(e)
    line = describe(e)
    if action and not isinstance(e, MinidockError):
        line = f"{action}: {line}"
    print(line if getattr(e, "bare", False) else f"Error: {line}", file=sys.stderr)
    if isinstance(e, MinidockError):
        if e.hint:
            print(f"Hint: {e.hint}", file=sys.stderr)
        sys.exit(e.exit_code)
    if not isinstance(e, OSError) and not debug:
        print("Run with --debug for the traceback.", file=sys.stderr)
    sys.exit(125)


def finish(code: int) -> None:
    """Exit with ``code`` once a command has done its work, skipping the interpreter's
    teardown (~10 ms with the engine loaded). That is safe because every file minidock
    writes is written with os.write or closed by a ``with`` block before this point, no
    atexit handler is registered, and the two standard streams are flushed here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass  # a reader that went away: nothing more can be told to it
    os._exit(code)
