"""Joining a running container: ``exec`` (runc's ``exec``, its setns path).

The join protocol (two pipes; messages are JSON lines, each well under PIPE_BUF):

  caller (the CLI)                  helper (stage 1, host pid ns)    process (stage 2)
  ----------------                  -----------------------------    -----------------
  load state.json: pid + start time
  open /proc/<pid> (O_PATH), check
  its start time, open ns/<type>
  for each namespace of config.json
  compile the seccomp filter
  fork() -------------------------> prctl(PR_SET_DUMPABLE, 0)
                                    stdio onto 0-2, close_range every
                                    fd but 0-2, the ns fds, the pipes
                                    and the console socket
  join the container's cgroup       read "go"
  (the helper's pid)
  write "go" ---------------------> setns(user, cgroup, ipc, uts, net,
                                          pid, mnt), close ns fds
                                    fork() ------------------------> pid N of the container's
  <-------------------- {"pid": N}  _exit(0)                         PID namespace
  waitpid(helper): N is now ours                                     chdir("/"), chdir(cwd),
  (we are its child subreaper)                                       getcwd() must be inside
                                                                     [-t: openpty() from the
  <- - - - - - - - - - - - - - - - - - - pty master over SCM_RIGHTS - container's devpts]
                                                                     setsid, controlling tty,
                                                                     bounding set, no_new_privs,
                                                                     seccomp, user, caps, find
                                                                     the command
  <---------------------------------------- {"error": ..., "code": 126|127|125} and exit
  read until EOF: EOF with no error  <======= the status pipe is O_CLOEXEC: =====  execve()
  means execve succeeded                      execve closes it

Why the helper forks again: setns(CLONE_NEWPID) only decides the PID namespace of the
caller's *children*; the helper itself stays in the host's.

Why the helper exits instead of staying to wait: the caller makes itself a child subreaper
before forking, so when the helper exits its child (the exec'd process) is reparented to the
caller, which waitpid()s it for its exit code. Nothing of ours stays alive inside the
container's namespaces and cgroup, there is no second relay, and a Python interpreter (the
host's binary) is never left where the container could reach it. A detached caller (-d) is
not a subreaper: the process is reparented to the host's init (or the nearest subreaper)
and dies with the container's PID namespace.

Why it is safe against the known escapes:
- CVE-2019-5736 class (the container overwrites the runtime's binary through
  /proc/<pid>/exe or grabs its fds): the helper marks itself non-dumpable before it joins
  anything, so processes in the container cannot ptrace it or open /proc/<pid>/exe or
  /proc/<pid>/fd/* of it or of stage 2 (the flag is inherited across fork and reset only by
  the final execve of the container's own binary). The helper is also in the host's PID
  namespace, invisible in the container's /proc.
- CVE-2024-21626 class (a leaked fd to a host directory used as the working directory,
  ``-w /proc/self/fd/N``): right after fork the helper closes every fd but stdio (pipes,
  /dev/null), the two pipes and the console socket; joining the mount namespace resets
  root and cwd to the container's root, stage 2 chdirs to "/" and then to the path, which
  is resolved inside the container, and getcwd() must then answer a path inside the root
  (the kernel answers "(unreachable)" for a directory outside it). Every fd we hold is
  O_CLOEXEC, so the command starts with 0-2 only.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial

from minidock import cgroups, linux
from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    Conflict,
    ContainerNotFound,
    ContainerRuntimeError,
    MinidockError,
)
from minidock.linux import trace
from minidock.oci import runtime as oci
from minidock.records import record, replace
from minidock.runtime import seccomp
from minidock.runtime.process import (
    _keep_only,
    _place_stdio,
    _send,
    confine,
    default_signals,
    fork_with_pipes,
    load_spec,
    new_session,
    reported_failure,
    wait_gone,
)
from minidock.runtime.state import RuntimeState, check_id

# The order runc's nsexec joins in: the user namespace first (it decides what the other
# setns calls are allowed to do), mount last (it changes our root and cwd).
_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "mount")
_PROC_NS = {"user": "user", "cgroup": "cgroup", "ipc": "ipc", "uts": "uts",
            "network": "net", "pid": "pid", "mount": "mnt"}
_NS_FLAGS = {
    "mount": linux.CLONE_NEWNS, "uts": linux.CLONE_NEWUTS, "ipc": linux.CLONE_NEWIPC,
    "network": linux.CLONE_NEWNET, "pid": linux.CLONE_NEWPID,
    "cgroup": linux.CLONE_NEWCGROUP, "user": linux.CLONE_NEWUSER,
}


@record
class ExecOptions:
    """How the caller wants the process's stdio and lifetime handled."""

    stdio: tuple[int, int, int] = (0, 1, 2)  # -1: /dev/null
    console_socket: str | None = None  # runc's --console-socket (a unix socket path)
    console_fd: int = -1  # or an already connected AF_UNIX socket (in-process callers)
    pid_file: str | None = None
    subreaper: bool = False  # the caller wants to waitpid() the process


def _not_running(container_id: str) -> Conflict:
    return Conflict(f"container {container_id} is not running")


def load_running(state_root: str, container_id: str) -> tuple[RuntimeState, oci.Spec]:
    """The runtime state and the OCI config of a container we may join."""
    check_id(container_id)
    state_dir = os.path.join(state_root, container_id)
    try:
        st = RuntimeState.load(state_dir)
    except FileNotFoundError:
        raise ContainerNotFound(f"container {container_id} does not exist") from None
    status = st.status(state_dir)
    if status == "paused":
        raise Conflict(f"cannot exec in a paused container: {container_id}")
    if status not in ("created", "running"):
        raise _not_running(container_id)
    return st, load_spec(st.bundle)


def effective_process(process: oci.Process, spec: oci.Spec) -> oci.Process:
    """runc's rules for an exec'd process: the container's capabilities unless the process
    names its own; no_new_privs if either asks for it (it can only be tightened)."""
    return replace(
        process,
        capabilities=process.capabilities if process.capabilities is not None
        else spec.process.capabilities,
        no_new_privileges=process.no_new_privileges or spec.process.no_new_privileges,
    )


def _start_time_at(proc_dir: int) -> int | None:
    try:
        fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_dir)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    rest = data[data.rindex(b")") + 2 :].split()
    return None if rest[0] == b"Z" else int(rest[19])


def _open_namespaces(st: RuntimeState, spec: oci.Spec, container_id: str
                     ) -> list[tuple[str, int]]:
    """Open the init's namespace files, race-free: /proc/<pid> is opened first and its start
    time checked through that fd, so a recycled pid cannot hand us another process's."""
    try:
        proc_dir = os.open(f"/proc/{st.pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _not_running(container_id) from None
    fds: list[tuple[str, int]] = []
    try:
        with ExitStack() as undo:
            if _start_time_at(proc_dir) != st.start_time:
                raise _not_running(container_id)
            for kind in _JOIN_ORDER:
                if spec.linux.namespace(kind) is None:
                    continue
                name = f"ns/{_PROC_NS[kind]}"
                fd = trace.step(f'open("/proc/{st.pid}/{name}")',
                                partial(os.open, name, os.O_RDONLY | os.O_CLOEXEC,
                                        dir_fd=proc_dir),
                                why=f"the container's {kind} namespace, opened before any fork")
                undo.callback(os.close, fd)
                fds.append((kind, fd))
            undo.pop_all()
    except (FileNotFoundError, ProcessLookupError):
        raise _not_running(container_id) from None
    finally:
        os.close(proc_dir)
    return fds


def _exec_child(proc: oci.Process, status_w: int, console_fd: int,
                sc: seccomp.Filter | None) -> None:
    """Stage 2: a process of the container's PID namespace. Never returns."""
    trace.set_role("exec")
    env: dict[str, str] = {}
    for item in proc.env:
        key, _, value = item.partition("=")
        env[key] = value
    try:
        linux.chdir("/", why="start from the container's root, never from a host directory")
        try:
            linux.chdir(proc.cwd, why="the working directory (-w / WORKDIR), in the container")
            here = os.getcwd()
        except OSError as e:
            raise ContainerRuntimeError(
                f"chdir to cwd (\"{proc.cwd}\") set in config.json failed: "
                f"{os.strerror(e.errno or 0).lower()}") from None
        if not here.startswith("/"):
            raise ContainerRuntimeError(
                f"chdir to cwd (\"{proc.cwd}\"): the directory is outside the container")
        slave = -1
        if proc.terminal:
            slave = _open_console(proc, console_fd)
        new_session(slave, "a session of its own: signals reach it through the caller")
        # the init's order and reasons (process.confine): without no_new_privs the filter
        # needs CAP_SYS_ADMIN, so it goes in before the user switch drops our capabilities
        path = confine(proc, sc, env)
        default_signals()
        try:
            linux.execve(path, proc.args, env, why="become the command, in the container")
        except OSError as e:  # ENOEXEC, EACCES, a missing interpreter...
            cls = CommandNotFound if e.errno == errno.ENOENT else CommandCannotInvoke
            raise cls(f'exec: "{proc.args[0]}": {os.strerror(e.errno or 0).lower()}') from None
    except MinidockError as e:
        _send(status_w, error=e.message, code=e.exit_code)
    except OSError as e:
        _send(status_w, error=str(e), code=125)
    except BaseException as e:  # forked: even a KeyboardInterrupt is reported, then _exit
        _send(status_w, error=f"{type(e).__name__}: {e}", code=125)
    os._exit(1)


def _open_console(proc: oci.Process, console_fd: int) -> int:
    """A pty from the container's own devpts (we are in its mount namespace now); the master
    goes to the caller over the console socket, the slave becomes our stdio."""
    import fcntl
    import socket
    import struct
    import termios

    master, slave = trace.step("openpty()", os.openpty,
                               why="a terminal pair from the container's /dev/pts")
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    os.fchown(slave, proc.user.uid, 5 if proc.user.uid else 0)
    if proc.console_size:
        h, w = proc.console_size
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
    sock = socket.socket(fileno=console_fd)
    trace.step("sendmsg(SCM_RIGHTS, pty master)",
               lambda: socket.send_fds(sock, [b"pty"], [master]),
               why="hand the terminal's master side to the caller")
    sock.close()
    os.close(master)
    return slave


def _helper(proc: oci.Process, opts: ExecOptions, ns_fds: Sequence[tuple[str, int]],
            status_w: int, go_r: int, console_fd: int, sc: seccomp.Filter | None) -> None:
    """Stage 1: harden, join the namespaces, fork the process. Never returns."""
    import prctl

    trace.set_role("exec-helper")
    trace.step("prctl(PR_SET_DUMPABLE, 0)", lambda: prctl.set_dumpable(False),
               why="no process of the container may ptrace us or open /proc/<pid>/exe or fd/")
    _place_stdio((-1, -1, -1) if proc.terminal else opts.stdio)
    keep = {0, 1, 2, status_w, go_r, *(fd for _, fd in ns_fds)}
    if console_fd >= 0:
        keep.add(console_fd)
    if trace.enabled():
        keep.add(trace.trace_fd())
    _keep_only(keep)
    os.chdir("/")
    if os.read(go_r, 1) != b"g":
        os._exit(1)  # the caller went away
    os.close(go_r)
    for kind, fd in ns_fds:
        linux.setns(fd, _NS_FLAGS[kind], why=f"join the container's {kind} namespace")
        os.close(fd)
    pid = os.fork()
    if pid == 0:
        try:
            _exec_child(proc, status_w, console_fd, sc)
        finally:
            os._exit(1)
    _send(status_w, pid=pid)
    os._exit(0)


def _read_all(f: object) -> dict[str, object]:
    """Every message until EOF, merged: the helper's {"pid"} and stage 2's {"error"} may
    arrive in either order."""
    merged: dict[str, object] = {}
    for line in f:  # type: ignore[attr-defined]
        try:
            merged.update(json.loads(line))
        except ValueError:
            continue
    return merged


def exec_process(state_root: str, container_id: str, process: oci.Process,
                 opts: ExecOptions | None = None) -> int:
    """Start ``process`` inside a running container; return its host pid once it has
    exec'ed (errors before that raise: CommandNotFound 127, CommandCannotInvoke 126,
    ContainerRuntimeError otherwise, Conflict if the container is not running).

    With ``opts.subreaper`` the caller becomes the process's parent and must waitpid() it.
    """
    opts = opts or ExecOptions()
    st, spec = load_running(state_root, container_id)
    proc = effective_process(process, spec)
    if not proc.args:
        raise ContainerRuntimeError("exec: process.args must not be empty")
    if proc.terminal and opts.console_fd < 0 and not opts.console_socket:
        raise ContainerRuntimeError("exec: process.terminal is set but no console socket "
                                    "was given (--console-socket)")
    if not proc.cwd.startswith("/"):
        raise ContainerRuntimeError(f"exec: cwd {proc.cwd!r} must be an absolute path")
    sc = seccomp.compile_filter(spec.linux.seccomp) if spec.linux.seccomp else None
    # After setns(mnt) the host's site-packages are out of reach: import what stage 2 needs.
    import fcntl  # noqa: F401
    import socket
    import struct  # noqa: F401
    import termios  # noqa: F401

    import _prctl  # noqa: F401
    import prctl

    if proc.rlimits:
        import resource  # noqa: F401
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        raise ContainerRuntimeError("exec: refusing to fork a multi-threaded process")
    with ExitStack() as undo:
        console_fd = opts.console_fd
        if proc.terminal and console_fd < 0:
            # connect now: the socket's path is a host path, out of reach once we joined
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(sock.close)
            sock.connect(opts.console_socket or "")
            console_fd = sock.fileno()
        ns_fds = _open_namespaces(st, spec, container_id)
        for _, fd in ns_fds:
            undo.callback(os.close, fd)
        manager = cgroups.new_manager(st.cgroups_path)
        if opts.subreaper:
            prctl.set_child_subreaper(1)
        helper, status, go_w, placed = fork_with_pipes(
            lambda status_w, go_r: _helper(proc, opts, ns_fds, status_w, go_r, console_fd, sc),
            manager.birth_dir())
        undo.callback(status.close)
        undo.callback(_close_quietly, go_w)
        with ExitStack() as helper_alive:
            helper_alive.callback(_kill_and_reap, helper)
            try:
                if not placed:
                    manager.add_process(helper)
            except OSError as e:
                raise ContainerRuntimeError(
                    f"exec: join the cgroup of container {container_id}: {e}") from None
            os.write(go_w, b"g")
            msg = _read_all(status)
            os.waitpid(helper, 0)
            helper_alive.pop_all()  # reaped: its pid is no longer ours to signal
        pid = int(str(msg.get("pid", 0)))
        if "error" in msg or not pid:
            # Stage 2 exits by itself after reporting an error; as a subreaper it is our
            # child (a pid nobody else can recycle), so reap it. Otherwise its new parent
            # does, and a pid we do not own is never signalled.
            if pid and opts.subreaper:
                _kill_and_reap(pid)
            raise reported_failure(msg, "exec", "the helper died")
    if opts.pid_file:
        tmp = f"{opts.pid_file}.tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, opts.pid_file)
    return pid


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(pid, None)
