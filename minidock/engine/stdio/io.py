"""Wiring a foreground container to the user's terminal or pipes.

Without -t the container gets pipes, as under Docker: its stdout and stderr are copied to
ours, our stdin is copied to it with -i (else it reads /dev/null), and signals we receive
are passed on to its init (Docker's --sig-proxy).

With -t the container's init made a pty from its own devpts and sent us the master side.
Our terminal goes to raw mode, so every key (^C, ^Z, ^D) travels as a byte to the
container's line discipline, which turns it into a signal or EOF there, as on a real
terminal; SIGWINCH is forwarded as a window size change.
"""

from __future__ import annotations

import errno
import os
import select
import signal
from collections.abc import Callable

from minidock.records import field, record

PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2)
CHUNK = 65536


@record
class PipeIO:
    """The container's ends (given to the runtime) and ours (relayed)."""

    child: tuple[int, int, int]
    stdin_w: int = -1
    stdout_r: int = -1
    stderr_r: int = -1
    _to_close: list[int] = field(default_factory=list)

    @classmethod
    def make(cls, interactive: bool) -> PipeIO:
        if interactive:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        return cls(child=(in_r, out_w, err_w), stdin_w=in_w, stdout_r=out_r, stderr_r=err_r)

    def close_child_ends(self) -> None:
        for fd in self.child:
            _close(fd)
        self.child = (-1, -1, -1)

    def close(self) -> None:
        self.close_child_ends()
        for fd in (self.stdin_w, self.stdout_r, self.stderr_r):
            _close(fd)
        self.stdin_w = self.stdout_r = self.stderr_r = -1

    def relay(self, stdin: int = 0, stdout: int = 1, stderr: int = 2,
              log: Callable[[str, bytes], None] | None = None) -> None:
        """Copy until the container closes its stdout and stderr (its init exited and,
        with it, every process of its PID namespace); ``log`` gets a copy of the output."""
        outputs = {self.stdout_r: stdout, self.stderr_r: stderr}
        names = {self.stdout_r: "stdout", self.stderr_r: "stderr"}
        src_in = stdin if self.stdin_w >= 0 else -1
        while outputs:
            watch = list(outputs) + ([src_in] if src_in >= 0 else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            for fd in ready:
                if fd == src_in:
                    data = _read(fd)
                    if not data or not _write_all(self.stdin_w, data):
                        src_in = -1
                        _close(self.stdin_w)
                        self.stdin_w = -1
                    continue
                data = _read(fd)
                if not data:
                    del outputs[fd]
                    continue
                _write_all(outputs[fd], data)
                if log is not None:
                    log(names[fd], data)


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except OSError as e:
        if e.errno in (errno.EIO, errno.EBADF):  # EIO: pty whose other side is gone
            return b""
        raise


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return False
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]
    return True


class SignalProxy:
    """Forward the signals a user may send to ``minidock run`` to the container's init."""

    interrupted = False  # KillOnInterrupt's: whether a signal ended the container

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.saved: dict[int, Callable[..., object] | int | None] = {}

    def __enter__(self) -> SignalProxy:
        for sig in PROXIED_SIGNALS:
            self.saved[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum: int, _frame: object) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class KillOnInterrupt(SignalProxy):
    """A build's RUN: Ctrl-C (or SIGTERM, SIGHUP) kills the container's init outright, as
    Docker's builder does when its client goes away; ``interrupted`` says it happened."""

    def __enter__(self) -> KillOnInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.saved[sig] = signal.signal(sig, self._forward)
        return self

    def _forward(self, signum: int, _frame: object) -> None:
        self.interrupted = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def window_size(fd: int) -> tuple[int, int] | None:
    import fcntl
    import struct
    import termios

    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols, _, _ = struct.unpack("HHHH", packed)
    return (rows, cols) if rows and cols else None


def set_window_size(master: int, size: tuple[int, int]) -> None:
    """TIOCSWINSZ on the pty master: the kernel sends SIGWINCH to the foreground job."""
    import fcntl
    import struct
    import termios

    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


def relay_pty(master: int, interactive: bool, stdin: int = 0, stdout: int = 1,
              log: Callable[[str, bytes], None] | None = None) -> None:
    """Proxy between our terminal and the container's pty until the container is gone."""
    import termios
    import tty

    saved_attrs = None
    if interactive and os.isatty(stdin):
        saved_attrs = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)

    def resize(_sig: int = 0, _frame: object = None) -> None:
        size = window_size(stdin) or window_size(stdout)
        if size:
            set_window_size(master, size)

    old_winch = signal.signal(signal.SIGWINCH, resize)
    src_in = stdin if interactive else -1
    try:
        resize()
        while True:
            watch = [master] + ([src_in] if src_in >= 0 else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if master in ready:
                data = _read(master)
                if not data:
                    break
                _write_all(stdout, data)
                if log is not None:
                    log("stdout", data)
            if src_in >= 0 and src_in in ready:
                data = _read(src_in)
                if not data:
                    src_in = -1  # our stdin ended; the container keeps its terminal
                else:
                    _write_all(master, data)
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved_attrs is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved_attrs)
