"""``exec``: run another process in a running container, as ``docker exec`` does.

The engine's part is policy: which container, which environment, user and working directory
(Docker's defaults: the container's Env plus -e, its User, its WorkingDir), and wiring the
process to our stdio. Joining the container is the runtime's (minidock.runtime.exec, with
the protocol diagram): we hand it an OCI process and get back the host pid of a process that
has exec'ed, whose parent we are (a child subreaper), so its exit status is ours to return.

Exit codes, as docker/cli's: an error before the process starts (no such container, not
running) is a daemon error, printed and answered with 1 (docker/cli's ``exec`` returns the
API error as is, and only a StatusError carries another code); a process that cannot be
started answers 126, a command that is not found 127; else the process's own status.
"""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from dataclasses import dataclass, field

from minidock.engine import containers
from minidock.engine import spec as specgen
from minidock.engine.containers.record import Status
from minidock.engine.spec.user import resolve_user
from minidock.engine.stdio import io
from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    ContainerRuntimeError,
    InvalidArgument,
    MinidockError,
)
from minidock.linux import trace
from minidock.oci import runtime as oci
from minidock.paths import Paths
from minidock.runtime import exec as rtexec


class ExecDaemonError(MinidockError):
    """What Docker's daemon refuses before anything starts; docker/cli exits 1."""

    exit_code = 1


class ExecStartError(ContainerRuntimeError):
    """The process could not be started (Docker's exec: 126 unless the command is missing)."""

    exit_code = 126


@dataclass
class ExecOptions:
    args: list[str]
    env: list[str] = field(default_factory=list)  # -e / --env-file, already parsed
    user: str | None = None
    workdir: str | None = None
    interactive: bool = False
    tty: bool = False
    detach: bool = False


def _read_in_root(root: str, path: str) -> str | None:
    from minidock.linux.fs import read_file_in_root

    data = read_file_in_root(root, path, 4 << 20)
    return None if data is None else data.decode("utf-8", "replace")


def build_process(c: containers.Container, spec: oci.Spec, opts: ExecOptions,
                  console: tuple[int, int] | None) -> oci.Process:
    """The OCI process for an exec, from the container's record and its bundle's config."""
    cfg = c.config
    if not opts.args:
        raise InvalidArgument("exec: no command given")
    workdir = opts.workdir or cfg.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    # the container's /etc/passwd and /etc/group, parsed as text (never the host's NSS)
    root = spec.root_path
    try:
        user = resolve_user(opts.user or cfg.get("User") or "0",
                            _read_in_root(root, "/etc/passwd"), _read_in_root(root, "/etc/group"))
    except ContainerRuntimeError as e:  # Docker's daemon finds out only when it starts it
        raise ExecStartError(e.message) from None
    env = specgen.merge_env([], [*(cfg.get("Env") or []), *opts.env], cfg.get("Hostname", ""),
                            opts.tty, user.home)
    return oci.Process(
        args=list(opts.args), env=env, cwd=workdir, terminal=opts.tty,
        user=oci.User(uid=user.uid, gid=user.gid, additional_gids=list(user.additional_gids)),
        capabilities=None,  # the container's (runtime.exec.effective_process)
        no_new_privileges=False,  # the container's setting applies
        console_size=console,
    )


def _as_daemon_error(e: MinidockError) -> MinidockError:
    if e.exit_code != 125:
        return e
    return ExecDaemonError(e.message, hint=e.hint)


def _as_start_error(e: MinidockError) -> MinidockError:
    if isinstance(e, CommandCannotInvoke | CommandNotFound):
        return e
    if isinstance(e, ContainerRuntimeError):
        return ExecStartError(e.message, hint=e.hint)
    return _as_daemon_error(e)


def exec_(paths: Paths, ref: str, opts: ExecOptions) -> int:
    """Run ``opts.args`` in the running container ``ref``; its exit code (0 with -d)."""
    try:
        c = containers.get(paths, ref)
        if c.state.status is Status.PAUSED:
            raise ExecDaemonError(
                f"container {c.id} is paused, unpause the container before exec")
        if not c.state.running:
            raise ExecDaemonError(f"container {c.id} is not running")
        _, spec = rtexec.load_running(paths.runtime_state, c.id)
        console = io.window_size(0) or io.window_size(1) if opts.tty else None
        process = build_process(c, spec, opts, console)
    except MinidockError as e:
        raise _as_daemon_error(e) from None
    trace.alias(c.id, c.short_id)
    with ExitStack() as undo:
        if opts.detach:
            _start(paths, c.id, process, rtexec.ExecOptions(stdio=(-1, -1, -1)))
            return 0
        pipes = None
        console_sock = None
        if opts.tty:
            console_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(console_sock.close)
            undo.callback(child_sock.close)
            ropts = rtexec.ExecOptions(console_fd=child_sock.fileno(), subreaper=True)
        else:
            pipes = io.PipeIO.make(opts.interactive)
            undo.callback(pipes.close)
            ropts = rtexec.ExecOptions(stdio=pipes.child, subreaper=True)
        pid = _start(paths, c.id, process, ropts)
        trace.note(f"exec'd process is host pid {pid} in container {c.short_id}")
        if console_sock is not None:
            child_sock.close()
            _, fds, _, _ = socket.recv_fds(console_sock, 1024, 1)
            if not fds:
                raise ExecStartError("exec: the process sent no terminal")
            master = fds[0]
            undo.callback(os.close, master)
            io.relay_pty(master, opts.interactive)
            return _waitpid(pid)
        assert pipes is not None
        pipes.close_child_ends()
        with io.SignalProxy(pid):
            pipes.relay()
            return _waitpid(pid)


def _start(paths: Paths, cid: str, process: oci.Process, ropts: rtexec.ExecOptions) -> int:
    try:
        return rtexec.exec_process(paths.runtime_state, cid, process, ropts)
    except MinidockError as e:
        raise _as_start_error(e) from None


def _waitpid(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
