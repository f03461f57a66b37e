"""The one exception tree of minidock.

Every error the engine raises on purpose derives from MinidockError. The CLI has a single
error boundary (minidock.cli.boundary) that prints ``Error: <message>`` as one line and maps
the class to Docker's exit status; commands never call sys.exit themselves.

    MinidockError                      125  engine error (Docker's "daemon" error)
     +-- InvalidArgument               125  a flag, name, reference or value is malformed
     +-- ClientRefused                   1  what Docker's CLI itself refuses before it asks the
     |                                      daemon (`-it` when stdin is not a terminal)
     +-- BuildFailed                     1  a build step failed: the line is printed bare, as
     |                                      Docker's CLI prints a build's error (its code, if
     |                                      the step gave one)
     +-- NotFound                      125  (base of the "no such ..." errors)
     |    +-- ImageNotFound            125
     |    +-- ContainerNotFound        125
     +-- Conflict                      125  name in use, image in use, wrong container state
     +-- StorageError                  125  the overlay2 store or the image store failed
     |    +-- LayerError               125  a layer tar is invalid or tries to escape its root
     |    +-- CorruptRecord            125  a record minidock wrote is unreadable (truncated,
     |                                      edited): the message names the file
     +-- RegistryError                 125  a registry refused, failed or sent something invalid
     |    +-- AuthenticationError      125  credentials missing, wrong or not enough (401/403)
     +-- ContainerRuntimeError         125  the OCI runtime failed to create or start a container
          +-- CommandCannotInvoke      126  the command exists but cannot be executed
          +-- CommandNotFound          127  the command does not exist in the container

Syscall failures are plain OSError(errno, strerror, path) (see minidock.linux); the layer
that knows what it was doing wraps them into one of the classes above with a message that
names the action and the path.

Partial setup is undone by ``contextlib.ExitStack``: each step registers its undo as soon as
what it made exists, and success keeps it all with ``pop_all()``. An undo that may fail
itself goes through :func:`quietly`, so that it never hides the error being raised.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from collections.abc import Callable


class MinidockError(Exception):
    """Root of minidock's errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 125

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidArgument(MinidockError):
    pass


class ClientRefused(MinidockError):
    exit_code = 1


class BuildFailed(MinidockError):
    """A build that stopped at a step; printed without ``Error:``, as docker build does."""

    exit_code = 1
    bare = True

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


class NotFound(MinidockError):
    pass


class ImageNotFound(NotFound):
    pass


class ContainerNotFound(NotFound):
    pass


class Conflict(MinidockError):
    pass


class StorageError(MinidockError):
    pass


class LayerError(StorageError):
    pass


class CorruptRecord(StorageError):
    pass


class RegistryError(MinidockError):
    pass


class AuthenticationError(RegistryError):
    pass


class ContainerRuntimeError(MinidockError):
    pass


class CommandCannotInvoke(ContainerRuntimeError):
    exit_code = 126


class CommandNotFound(ContainerRuntimeError):
    exit_code = 127


def quietly(fn: Callable[..., object], *args: object,
            ignore: type[BaseException] | tuple[type[BaseException], ...] = OSError) -> None:
    """``fn(*args)``, dropping its ``ignore`` errors: an undo callback, run while another
    error propagates (``undo.callback(quietly, os.unlink, tmp)``)."""
    try:
        fn(*args)
    except ignore:
        pass
