"""`attach`: connect our terminal to a running detached container.

With -t the container's pty master is held by its monitor, which serves a unix socket
(<run>/attach/<id>.sock, one client at a time) and relays bytes both ways: what the
container writes goes to the log and to the client, what the client sends goes to the pty.
Our terminal is put in raw mode, so keys reach the container's line discipline as they are.
The detach keys (Ctrl-P Ctrl-Q) are recognised here, on the client side: the monitor never
sees them, we just disconnect and the container runs on.

The monitor's first byte to a -t client comes with the pty master itself (SCM_RIGHTS),
so a resize of our terminal (SIGWINCH) becomes a TIOCSWINSZ on it, as under `run -it`.

Without -t, attach follows the container's log from now on until the container ends; with
-i (``run -di``) the monitor serves the socket too, and what we read on stdin goes there
and on into the container's stdin pipe.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable

from minidock.engine import containers as ct
from minidock.engine.stdio import io
from minidock.engine.stdio import logs as logmod
from minidock.errors import Conflict
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

CTRL_P, CTRL_Q = 0x10, 0x11


class DetachKeys:
    """Find Ctrl-P Ctrl-Q in a byte stream that may split them across reads. A Ctrl-P not
    followed by Ctrl-Q is passed on (with the next byte), as Docker does."""

    def __init__(self) -> None:
        self.pending = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, detach?)"""
        out = bytearray()
        for b in data:
            if self.pending:
                self.pending = False
                if b == CTRL_Q:
                    return bytes(out), True
                out.append(CTRL_P)
            if b == CTRL_P:
                self.pending = True
                continue
            out.append(b)
        return bytes(out), False


def attach(paths: Paths, ref: str, stdin: int = 0, stdout: int = 1, stderr: int = 2
           ) -> int | None:
    """Attach until the container exits (its exit code) or the user detaches (None)."""
    c = ct.get(paths, ref)
    if not c.state.running:
        raise Conflict("You cannot attach to a stopped container, start it first")
    if c.config.get("Tty"):
        return _attach_tty(paths, c, stdin, stdout)
    if c.config.get("OpenStdin"):
        _forward_stdin(paths, c, stdin)
    _follow(paths, c, stdout, stderr)
    return ct.wait(paths, c.id)


def _forward_stdin(paths: Paths, c: ct.Container, stdin: int) -> None:
    """Copy our stdin to the monitor's socket, in a thread, while the log is followed."""
    import threading

    from minidock.engine.containers import monitor

    try:
        sock = monitor.connect_attach(paths, c.id)
    except (FileNotFoundError, ConnectionRefusedError):
        return  # started before stdin could be attached: output only

    def pump() -> None:
        try:
            while data := io._read(stdin):
                sock.sendall(data)
        except OSError:
            pass  # the container (or its monitor) is gone

    threading.Thread(target=pump, name="minidock-attach-stdin", daemon=True).start()


def _follow(paths: Paths, c: ct.Container, stdout: int, stderr: int) -> None:
    path = ct.log_path(c)
    offset = logmod.end_offset(path)
    for entry in logmod.follow(path, offset, _not_running(paths, c.id)):
        io._write_all(stderr if entry.stream == "stderr" else stdout, entry.text.encode())


def _not_running(paths: Paths, cid: str) -> Callable[[], bool]:
    return lambda: ct.wait_unwatched(paths, cid, timeout=0)


def _receive_master(sock: Any) -> int:
    """The pty master the monitor sends with its first byte (-1 if it sent none)."""
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    return fds[0] if fds else -1


def _attach_tty(paths: Paths, c: ct.Container, stdin: int, stdout: int) -> int | None:
    import termios
    import tty

    from minidock.engine.containers import monitor

    try:
        sock = monitor.connect_attach(paths, c.id)
    except (FileNotFoundError, ConnectionRefusedError):
        raise Conflict(f"container {c.short_id} has no attach socket (was it started "
                       "with `run -d -t`?)") from None
    master = _receive_master(sock)
    saved = None
    old_winch = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)
    if master >= 0:
        def resize(_sig: int = 0, _frame: object = None) -> None:
            size = io.window_size(stdin) or io.window_size(stdout)
            if size:
                io.set_window_size(master, size)

        old_winch = signal.signal(signal.SIGWINCH, resize)
        resize()
    keys = DetachKeys()
    src_in = stdin
    detached = False
    try:
        fd = sock.fileno()
        while True:
            watch = [fd] + ([src_in] if src_in >= 0 else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if fd in ready:
                data = io._read(fd)
                if not data:
                    break  # the monitor closed us: the container has ended
                io._write_all(stdout, data)
            if src_in >= 0 and src_in in ready:
                data = io._read(src_in)
                if not data:
                    src_in = -1
                    continue
                forward, detached = keys.feed(data)
                if forward:
                    sock.sendall(forward)
                if detached:
                    break
    finally:
        sock.close()
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if master >= 0:
            os.close(master)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
    if detached:
        return None
    return ct.wait(paths, c.id)
