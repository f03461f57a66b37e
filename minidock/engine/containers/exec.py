"""``exec``: run another process in a running container, as ``docker exec`` does.

The engine's part is policy: which container, which environment, user and working directory
(Docker's defaults: the container's Env plus -e, its User, its WorkingDir), and wiring the
process to our stdio. Joining the container is the runtime's (through the OCIRuntime seam;
minidock's is minidock.runtime.exec, with the protocol diagram): we hand it an OCI process and
get back the host pid of a process that has exec'ed, whose parent we are (a child subreaper),
so its exit status is ours to return.

Exit codes, as docker/cli's: an error before the process starts (no such container, not
running) is a daemon error, printed and answered with 1 (docker/cli's ``exec`` returns the
API error as is, and only a StatusError carries another code); a process that cannot be
started answers 126, a command that is not found 127; else the process's own status.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from minidock.engine import containers
from minidock.engine import spec as specgen
from minidock.engine.containers.record import Status
from minidock.engine.runtime import OCIRuntime, Started, Stdio
from minidock.engine.spec.user import resolve_user
from minidock.engine.stdio import io
from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    ContainerRuntimeError,
    InvalidArgument,
    MinidockError,
)
from minidock.jsonobj import parse_object
from minidock.linux import trace
from minidock.paths import Paths
from minidock.records import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


class ExecDaemonError(MinidockError):
    """What Docker's daemon refuses before anything starts; docker/cli exits 1."""

    exit_code = 1


class ExecStartError(ContainerRuntimeError):
    """The process could not be started (Docker's exec: 126 unless the command is missing)."""

    exit_code = 126


@record
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


def bundle_spec(paths: Paths, cid: str) -> dict[str, Any]:
    """The config.json the engine wrote for the container's current run."""
    path = os.path.join(containers.bundle_dir(paths, cid), "config.json")
    try:
        with open(path, "rb") as f:
            return parse_object(f.read(), f"read {path}")
    except FileNotFoundError:
        raise ExecDaemonError(f"container {cid} is not running") from None


def build_process(c: containers.Container, spec: dict[str, Any], opts: ExecOptions,
                  console: tuple[int, int] | None) -> dict[str, Any]:
    """The OCI process for an exec, from the container's record and its bundle's config:
    the container's capabilities, no_new_privs and rlimits (a runtime's exec takes the
    process as given), the user's command, environment, user and working directory."""
    cfg = c.config
    if not opts.args:
        raise InvalidArgument("exec: no command given")
    workdir = opts.workdir or cfg.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    # the container's /etc/passwd and /etc/group, parsed as text (never the host's NSS)
    root = str((spec.get("root") or {}).get("path") or "")
    try:
        user = resolve_user(opts.user or cfg.get("User") or "0",
                            _read_in_root(root, "/etc/passwd"), _read_in_root(root, "/etc/group"))
    except ContainerRuntimeError as e:  # Docker's daemon finds out only when it starts it
        raise ExecStartError(e.message) from None
    env = specgen.merge_env([], [*(cfg.get("Env") or []), *opts.env], cfg.get("Hostname", ""),
                            opts.tty, user.home)
    process = {k: v for k, v in (spec.get("process") or {}).items()
               if k in ("capabilities", "noNewPrivileges", "rlimits", "apparmorProfile",
                        "selinuxLabel", "oomScoreAdj")}
    gids = list(user.additional_gids)
    if c.host_config.get("GroupAdd"):  # (Docker's getUser adds them for exec too)
        from minidock.engine.spec import sharing

        gids += [g for g in sharing.group_ids(c.host_config["GroupAdd"],
                                              _read_in_root(root, "/etc/group"))
                 if g not in gids]
    process.update(args=list(opts.args), env=env, cwd=workdir, terminal=opts.tty,
                   user={"uid": user.uid, "gid": user.gid, "additionalGids": gids})
    if console:
        process["consoleSize"] = {"height": console[0], "width": console[1]}
    return process


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
        rt = containers.runtime_of(paths, c)
        st = rt.state(c.id)
        if st is None or st.status not in ("created", "running"):
            raise ExecDaemonError(f"container {c.id} is not running")
        spec = bundle_spec(paths, c.id)
        console = io.window_size(0) or io.window_size(1) if opts.tty else None
        process = build_process(c, spec, opts, console)
    except MinidockError as e:
        raise _as_daemon_error(e) from None
    trace.alias(c.id, c.short_id)
    bundle = containers.bundle_dir(paths, c.id)
    with ExitStack() as undo:
        if opts.detach:
            _start(rt, c.id, bundle, process, Stdio(), detach=True)
            return 0
        pipes = None
        if opts.tty:
            stdio = Stdio(tty=True)
        else:
            pipes = io.PipeIO.make(opts.interactive)
            undo.callback(pipes.close)
            stdio = Stdio(fds=pipes.child)
        started = _start(rt, c.id, bundle, process, stdio)
        trace.note(f"exec'd process is host pid {started.pid} in container {c.short_id}")
        if opts.tty:
            if started.master < 0:
                raise ExecStartError("exec: the process sent no terminal")
            undo.callback(os.close, started.master)
            io.relay_pty(started.master, opts.interactive)
            return _waitpid(started.pid)
        assert pipes is not None
        pipes.close_child_ends()
        with io.SignalProxy(started.pid):
            pipes.relay()
            return _waitpid(started.pid)


def _start(rt: OCIRuntime, cid: str, bundle: str, process: dict[str, Any], stdio: Stdio,
           detach: bool = False) -> Started:
    try:
        return rt.exec(cid, bundle, process, stdio, detach=detach)
    except MinidockError as e:
        raise _as_start_error(e) from None


def _waitpid(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
