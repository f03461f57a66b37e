"""Detached containers: what watches a container after `run -d` / `start` has returned.

The choice: a tiny C monitor per container (native/monitor.c, installed as
minidock/libexec/minidock-monitor), the design of podman's conmon. What stays alive per
container is a poll() loop of a few pages (Docker keeps a 2.7 MiB shim, conmon 0.35 MiB).
The alternative, letting the container's own init record its status, would put minidock code
inside the container's PID namespace and make the container's pid 1 something other than its
command (signals, `ps`, exit codes change); and something outside must still reap it.

The protocol (pipes; the report is one JSON line):

  CLI (run -d, start)              M (forked child of the CLI)                container init
  -------------------              ---------------------------                --------------
  pipe(report); fork() ----------> setsid(); 0,1,2 -> /dev/null
                                   flock <id>.lock (the record)
                                   flock <id>.monitor  (M's own open file
                                     description: it must survive both execs)
                                   open <id>-json.log (O_APPEND)
                                   launch(): mount, bundle, runtime.create,
                                     as PR_SET_CHILD_SUBREAPER: ------------> created, blocked
                                     the init becomes M's child                on exec.fifo
                                   record "running" (Pid, StartedAt)
                                   runtime.start ---------------------------> execve(command)
                                   [-t: listen on <run>/attach/<id>.sock]
                                   unlock <id>.lock
  read report <-------- {"ok": 1} -+
                                   execv(minidock-monitor -p PID -l FD ...)
  EOF (report fd was CLOEXEC):       (same pid: still subreaper, still the
  the monitor has taken over;        init's parent, still holding the lock)
  print the id, exit
                                   minidock-monitor: logs json-file lines, attach relay
                                   waitpid(init) <--------------------------- exits
                                   write containers/<id>/monitor-exit.json
                                   execv(python -m minidock container cleanup <id>)
                                     records ExitCode/FinishedAt, releases runtime state,
                                     cgroup, mount, bundle, removes a --rm container;
                                     exits: the monitor lock is released

On failure M sends {"error": ..., "code": ..., "type": ...}, rolls back what it made (the
container's record stays "created" or "exited", with the error) and exits; the CLI reaps it
and raises the same error. A monitor that dies leaves the monitor lock free: the next command
reconciles the container (exit 255, or the code of an exit file written before the death).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack

from minidock import errors
from minidock.engine import containers as ct
from minidock.engine.stdio import io
from minidock.errors import ContainerRuntimeError, MinidockError
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

MONITOR_NAME = "minidock-monitor"
DEFAULT_CONSOLE = (24, 80)


def monitor_binary() -> str:
    """The C monitor, compiled at install next to the cffi module (see setup.py)."""
    import minidock

    path = os.path.join(os.path.dirname(minidock.__file__), "libexec", MONITOR_NAME)
    if not os.access(path, os.X_OK):
        raise ContainerRuntimeError(
            f"the container monitor {path} is missing",
            hint="reinstall minidock, or in a checkout: python setup.py build_ext --inplace")
    return path


def init_binary() -> str:
    """`run --init`'s PID 1 (native/init.c), compiled statically beside the monitor."""
    import minidock

    path = os.path.join(os.path.dirname(minidock.__file__), "libexec", "minidock-init")
    if not os.access(path, os.X_OK):
        raise ContainerRuntimeError(
            f"the container init {path} is missing",
            hint="reinstall minidock, or in a checkout: python setup.py build_ext --inplace")
    return path


def cleanup_argv(paths: Paths, cid: str) -> list[str]:
    """What the monitor execs when the container has exited: this same minidock, found by
    its path rather than by the monitor's cwd (a checkout run as ``python -m minidock`` is
    on no one's sys.path but its own)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(errors.__file__)))
    boot = f"import sys; sys.path.insert(0, {here!r}); from minidock.entry import main; main()"
    return [sys.executable, "-c", boot, "--root", paths.root, "--run-root",
            paths.run_root, "container", "cleanup", cid]


def run_detached(paths: Paths, opts: ct.CreateOptions) -> ct.Container:
    """`run -d`: create, then start under a monitor (a --rm container that cannot start
    is removed again)."""
    c = ct.create(paths, opts)
    with ExitStack() as undo:
        if opts.auto_remove:
            undo.callback(ct.remove, paths, c.id, force=True)
        started = start_detached(paths, c.id)
        undo.pop_all()
    return started


def restart(paths: Paths, ref: str, timeout: float | None = None) -> ct.Container:
    """`restart`: stop (if running), then start detached; a --rm container survives the
    stop (a killed restart leaves it exited, not removed)."""
    c = ct.get(paths, ref)
    marker = ct.restart_marker(paths, c.id)
    with open(marker, "w"):
        pass
    try:
        ct.stop(paths, c.id, timeout)
        return start_detached(paths, c.id)
    finally:
        try:
            os.unlink(marker)
        except FileNotFoundError:
            pass


def start_detached(paths: Paths, ref: str) -> ct.Container:
    """Start a created or exited container under a monitor; returns once it runs.

    A running container is left as it is (Docker's `start` of a running container).
    """
    c = ct.get(paths, ref)
    if c.state.running:
        return c
    binary = monitor_binary()
    console = (io.window_size(0) or io.window_size(1) or DEFAULT_CONSOLE
               if c.config.get("Tty") else None)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # M
        try:
            os.close(report_r)
            _become_monitor(paths, c.id, report_w, binary, console)
        except BaseException as e:  # forked: even a KeyboardInterrupt is reported, then _exit
            _report(report_w, _error_message(e))
        finally:
            os._exit(1)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as f:
        data = f.read()  # to EOF: M has exec'ed the monitor, or died
    msg: dict[str, Any] = json.loads(data.splitlines()[0]) if data.strip() else {}
    if not msg.get("ok"):
        os.waitpid(pid, 0)
        raise _error_from(msg)
    return ct.get(paths, c.id)


def _become_monitor(paths: Paths, cid: str, report_w: int, binary: str,
                    console: tuple[int, int] | None) -> None:
    os.setsid()  # no controlling terminal, out of the CLI's process group and session
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # hold none of the CLI's stdio: a caller reading it sees EOF
        os.dup2(null, fd)
    os.close(null)
    os.chdir("/")
    with ExitStack() as undo:
        c, record_lock, monitor_lock = ct.lock_for_start(paths, cid, undo)
        try:
            os.unlink(ct.exit_file(paths, cid))  # a previous run's, never consumed
        except FileNotFoundError:
            pass
        log_fd = os.open(ct.log_path(c), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o640)
        undo.callback(os.close, log_fd)
        launched = ct.launch(paths, c, undo, interactive=bool(c.config.get("OpenStdin")),
                             console_size=console, kill_with_parent=False)
        listen_fd = -1
        stdin_w = launched.pipes.stdin_w if launched.pipes is not None else -1
        if launched.master >= 0 or stdin_w >= 0:  # -t, or -i: `attach` has a way in
            listen_fd = _listen(paths, cid)
        record_lock.release()
        argv = [binary, "-p", str(launched.pid), "-l", str(monitor_lock.fd),
                "-L", str(log_fd), "-x", ct.exit_file(paths, cid)]
        keep = [monitor_lock.fd, log_fd]
        if launched.master >= 0:
            argv += ["-t", str(launched.master), "-a", str(listen_fd)]
            keep += [launched.master, listen_fd]
        else:
            assert launched.pipes is not None
            pipes = launched.pipes
            argv += ["-o", str(pipes.stdout_r), "-e", str(pipes.stderr_r)]
            keep += [pipes.stdout_r, pipes.stderr_r]
            if pipes.stdin_w >= 0:
                argv += ["-i", str(pipes.stdin_w), "-a", str(listen_fd)]
                keep += [pipes.stdin_w, listen_fd]
        if launched.ports is not None:  # the monitor holds the published ports from now on
            keep += launched.ports.detach()
        argv += ["--", *cleanup_argv(paths, cid)]
        for fd in keep:
            os.set_inheritable(fd, True)
        undo.pop_all()  # from here on the container is the monitor's
    # The monitor outlives the CLI: it must hold nothing the CLI inherited (a caller's
    # pipe it would keep open for months), only its stdio (/dev/null), the fds it is given
    # and the report pipe (CLOEXEC: its EOF tells the CLI that the exec happened).
    _close_all_but({0, 1, 2, report_w, *keep})
    _report(report_w, {"ok": 1})
    try:
        os.execv(binary, argv)
    except OSError:
        # Nobody can watch the container: end it; the next command reconciles its record.
        os.kill(launched.pid, 9)
        raise


def _close_all_but(keep: set[int]) -> None:
    prev = -1
    for fd in [*sorted(keep), os.sysconf("SC_OPEN_MAX")]:
        if fd - prev > 1:
            os.closerange(prev + 1, fd)
        prev = fd


def _listen(paths: Paths, cid: str) -> int:
    """The attach socket. A path under the run root can exceed sun_path's 108 bytes, so
    it is bound through /proc/self/fd/<dir fd> (the client connects the same way)."""
    import socket

    path = ct.attach_socket(paths, cid)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        short = f"/proc/self/fd/{dfd}/{os.path.basename(path)}"
        try:
            os.unlink(short)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(short)
        os.chmod(short, 0o600)
        sock.listen(4)
    finally:
        os.close(dfd)
    return sock.detach()


def connect_attach(paths: Paths, cid: str) -> Any:
    """A socket connected to the monitor of a detached -t container."""
    import socket

    path = ct.attach_socket(paths, cid)
    dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.connect(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    finally:
        os.close(dfd)
    return sock


def _error_message(e: BaseException) -> dict[str, Any]:
    if isinstance(e, MinidockError):
        return {"error": e.message, "code": e.exit_code, "type": type(e).__name__,
                "hint": e.hint}
    if isinstance(e, OSError):
        return {"error": str(e), "code": 125, "type": "ContainerRuntimeError"}
    return {"error": f"{type(e).__name__}: {e}", "code": 125, "type": "ContainerRuntimeError"}


def _report(fd: int, msg: dict[str, Any]) -> None:
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
    except OSError:
        pass


def _error_from(msg: dict[str, Any]) -> MinidockError:
    cls = getattr(errors, str(msg.get("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, MinidockError)):
        cls = ContainerRuntimeError
    return cls(str(msg.get("error") or "the container monitor died before it reported"),
               hint=msg.get("hint"))
