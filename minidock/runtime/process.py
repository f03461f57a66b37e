"""Creating a container: the runtime, its short-lived child and the container's init.

The sync protocol (two pipes; messages are JSON lines, each well under PIPE_BUF):

  runtime (caller)                 child (stage 1)               init (stage 2, pid 1)
  ----------------                 ---------------               ---------------------
  fork() ------------------------> stdio onto 0-2, close
                                   every other inherited fd
  join cgroup (child's pid)        read "go"
  write "go" --------------------> setns / unshare
                                   fork() ---------------------> pid 1 of the new PID ns
  <------------------ {"pid": N} -- _exit(0)
  waitpid(child); init is now                                    read "go"
  ours if we are a subreaper
  write "go" ------------------------------------------------->  arm pdeathsig (optional)
                                                                 lo up, rootfs, pivot_root,
                                                                 console, hostname, user,
                                                                 capabilities, seccomp,
                                                                 find command
  <------------------------------------ {"ready": 1} | {"error": "...", "code": 127}
  write state.json: "created"                                    open exec.fifo for write:
  return                                                         blocks until `start`
  start(): open exec.fifo, read ------------------------------->  execve(command)

With a new user namespace (linux.uidMappings), stage 1 first opens the exec fifo, enters
the rootfs and clones the bind sources while it is still the host's root; after its
unshare it sends {"userns": 1}, the runtime writes its uid_map and gid_map and answers
"go", and stage 1 becomes the namespace's root before it forks the init.

Why two forks: unshare(CLONE_NEWPID) moves only the *children* of the caller into the new
PID namespace, and the runtime's own process must stay where it is.

Why fork rather than re-exec: a fork of a single-threaded process inherits no thread and
no held lock, and the child closes every fd it does not need before it runs a line of
container setup. A re-exec would cost a second interpreter start (about 25 ms with our
imports), a third of the start-latency budget. :func:`create` refuses to fork if the
calling process has started a thread.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from minidock import cgroups, linux
from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    Conflict,
    ContainerRuntimeError,
    MinidockError,
)
from minidock.linux import timing, trace
from minidock.oci import runtime as oci
from minidock.records import record
from minidock.runtime import caps, rootfs, seccomp
from minidock.runtime.state import FIFO, RuntimeState, check_id, process_start_time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import BinaryIO

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_NS_FLAGS = {
    "mount": linux.CLONE_NEWNS,
    "uts": linux.CLONE_NEWUTS,
    "ipc": linux.CLONE_NEWIPC,
    "network": linux.CLONE_NEWNET,
    "pid": linux.CLONE_NEWPID,
    "cgroup": linux.CLONE_NEWCGROUP,
    "user": linux.CLONE_NEWUSER,
}


@record
class CreateOptions:
    """How the caller wants the container's stdio and lifetime handled."""

    stdio: tuple[int, int, int] = (0, 1, 2)
    console_socket: str | None = None  # runc's --console-socket (a unix socket path)
    console_fd: int = -1  # or an already connected AF_UNIX socket (in-process callers)
    pid_file: str | None = None
    kill_with_parent: bool = False  # foreground `run`: the container dies with the CLI
    subreaper: bool = False  # the caller wants to waitpid() the container's init


def load_spec(bundle: str) -> oci.Spec:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = oci.loads(f.read())
    except FileNotFoundError:
        raise ContainerRuntimeError(f"read OCI config {path}: no such file") from None
    if not os.path.isabs(spec.root_path):
        spec.root_path = os.path.join(bundle, spec.root_path)
    return spec


def _send(fd: int, **msg: object) -> None:
    os.write(fd, json.dumps(msg).encode() + b"\n")


def _keep_only(fds: set[int]) -> None:
    """Close every fd not in ``fds``: nothing of the caller's leaks into the container."""
    prev = -1
    for fd in [*sorted(fds), 0x7FFFFFFF]:
        if fd - prev > 1:
            linux.close_range(prev + 1, min(fd - 1, 0xFFFFFFFF))
        prev = fd


def _place_stdio(stdio: Sequence[int]) -> None:
    """dup2 the given fds onto 0, 1, 2 (they may themselves be any of 0-2)."""
    high = [os.dup(fd) if fd >= 0 else os.open(os.devnull, os.O_RDWR) for fd in stdio]
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)


def lookup_command(arg0: str, env: dict[str, str]) -> str:
    """Find the command as execvp would, inside the container (after pivot_root)."""
    if "/" in arg0:
        candidates = [arg0]
    else:
        candidates = [os.path.join(d or ".", arg0)
                      for d in env.get("PATH", DEFAULT_PATH).split(":")]
    denied = None
    for path in candidates:
        if os.path.isdir(path):
            if "/" in arg0:
                raise CommandCannotInvoke(f'exec: "{arg0}": is a directory')
            continue
        if os.path.exists(path):
            if os.access(path, os.X_OK):
                return path
            denied = path
            continue
        if "/" in arg0:
            raise CommandNotFound(f'exec: "{arg0}": stat {arg0}: no such file or directory')
    if denied:
        raise CommandCannotInvoke(f'exec: "{arg0}": permission denied')
    raise CommandNotFound(f'exec: "{arg0}": executable file not found in $PATH')


def _init(spec: oci.Spec, opts: CreateOptions, fifo_fd: int, status_w: int, go_r: int,
          cgroup_dirs: dict[str, str] | None, clones: dict[int, int] | None) -> None:
    """Stage 2: pid 1 of the container. Never returns: execs the command or exits.
    ``fifo_fd``: the exec fifo, O_PATH; ``clones``: in a new user namespace, the bind
    sources stage 1 cloned (rootfs.clone_bind_sources)."""
    trace.set_role("init")
    if os.read(go_r, 1) != b"g":
        os._exit(1)  # the runtime went away before we were told to go on
    os.close(go_r)
    if opts.kill_with_parent:
        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)
    proc = spec.process
    env: dict[str, str] = {}
    for item in proc.env:
        key, _, value = item.partition("=")
        env[key] = value
    try:
        netns = spec.linux.namespace("network")
        if netns is not None and netns.path is None:
            linux.link_up("lo", why="the loopback of a new network namespace starts down")
        # Compiled now, loaded at the very end (below): a bad profile fails before any mount.
        sc = seccomp.compile_filter(spec.linux.seccomp) if spec.linux.seccomp else None
        with timing.phase("mounts and pivot_root"):
            root = rootfs.prepare(spec, cgroup_dirs, clones)
            for fd in (clones or {}).values():
                os.close(fd)
            rootfs.pivot(root)
        slave = -1
        if proc.terminal:
            slave = _setup_console(spec, opts)
        if spec.linux.sysctl:
            write_sysctls(spec.linux.sysctl)  # (before /proc/sys goes read-only)
        with timing.phase("masked and read-only paths"):
            rootfs.finish(spec)
        uts = spec.linux.namespace("uts")
        if spec.hostname and uts is not None:
            linux.sethostname(spec.hostname, why="the UTS namespace has its own hostname")
        new_session(slave, "a session of its own, detached from the caller's terminal")
        try:
            linux.chdir(proc.cwd, why="the working directory (-w / WORKDIR)")
        except OSError as e:
            raise ContainerRuntimeError(
                f"chdir to cwd ({proc.cwd!r}) set in config.json failed: "
                f"{os.strerror(e.errno or 0).lower()}") from None
        with timing.phase("capabilities, seccomp, user"):
            path = confine(proc, sc, env)
    except MinidockError as e:
        _send(status_w, error=e.message, code=e.exit_code)
        os._exit(1)
    except OSError as e:
        _send(status_w, error=str(e), code=125)
        os._exit(1)
    except BaseException as e:  # forked: even a KeyboardInterrupt is reported, then _exit
        _send(status_w, error=f"{type(e).__name__}: {e}", code=125)
        os._exit(1)
    _send(status_w, ready=1, **({"timings": timing.take()} if timing.enabled() else {}))
    os.close(status_w)
    # Blocks until `start` opens the fifo for reading. The fd was opened O_PATH before
    # pivot_root; /proc/self/fd reopens it for writing from inside the container.
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)
    default_signals()
    try:
        linux.execve(path, proc.args, env, why="become the container's command")
    except OSError as e:
        os.write(2, f"minidock: exec {proc.args[0]}: {e.strerror}\n".encode())
        os._exit(126)


def default_signals() -> None:
    """Hand the command default signal dispositions and an empty signal mask, as runc does.

    execve keeps whatever is ignored or blocked: Python ignores SIGPIPE and SIGXFSZ at start,
    and a caller started with `nohup` or `&` ignores SIGHUP, SIGINT or SIGQUIT. Without this,
    `yes | head -1` in a container would print "Broken pipe" instead of dying of SIGPIPE."""

    def reset() -> None:
        for sig in range(1, signal.NSIG):
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):  # 32 and 33: glibc keeps them for its threads
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    trace.step("rt_sigaction(1..64, SIG_DFL); rt_sigprocmask(SIG_SETMASK, {})", reset,
               "the command starts with no signal ignored or blocked")


def new_session(slave: int, why: str) -> None:
    """setsid(); with a pty slave (-1: none), make it the controlling terminal and stdio."""
    linux.setsid(why=why)
    if slave < 0:
        return
    import fcntl
    import termios

    trace.step("ioctl(TIOCSCTTY)", lambda: fcntl.ioctl(slave, termios.TIOCSCTTY, 0),
               why="the pty becomes the controlling terminal: ^C, ^Z, job control")
    _place_stdio((slave, slave, slave))
    os.close(slave)


def confine(proc: oci.Process, sc: seccomp.Filter | None, env: dict[str, str]) -> str:
    """The last steps before exec, shared by the init and `exec`: the bounding set,
    no_new_privs, seccomp, the user, the capability sets; returns the command's path."""
    if proc.rlimits:
        set_rlimits(proc.rlimits)
    if proc.capabilities is not None:
        caps.apply_bounding(proc.capabilities)
    if proc.no_new_privileges:
        import prctl

        trace.step("prctl(PR_SET_NO_NEW_PRIVS, 1)", lambda: prctl.set_no_new_privs(1),
                   why="no setuid binary can raise privileges any more")
    # Seccomp goes last, so that as few of our own calls as possible run under the
    # container's filter, but where it goes depends on no_new_privs (runc's order,
    # libcontainer/standard_init_linux.go). Installing a filter needs either
    # no_new_privs or CAP_SYS_ADMIN: without no_new_privs we must load it while we are
    # still root with every capability, before _switch_user/apply_sets drop them (for
    # -u 1000 nothing would be left); the filter then also sees setresuid, capset and
    # friends, which Docker's profile allows. With no_new_privs no capability is
    # needed, so it waits until just before the "ready" message. Both come before the
    # exec fifo: a load that fails is still a `create` error the caller can report.
    # What runs under the filter after that: write (ready), open/write/close (fifo),
    # execve.
    if sc is not None and not proc.no_new_privileges:
        linux.seccomp_load(sc.program, sc.length, sc.flags,
                           why="seccomp filter, while we still hold CAP_SYS_ADMIN")
    _switch_user(proc, keep_caps=proc.capabilities is not None)
    if proc.capabilities is not None:
        caps.apply_sets(proc.capabilities)
    path = lookup_command(proc.args[0], env)
    if sc is not None and proc.no_new_privileges:
        linux.seccomp_load(sc.program, sc.length, sc.flags,
                           why="seccomp filter, last step: no_new_privs is set")
    return path


def set_rlimits(rlimits: list[oci.Rlimit]) -> None:
    """process.rlimits (--ulimit): setrlimit for each, before the user switch. Raising a
    hard limit needs CAP_SYS_RESOURCE; without it the kernel says EPERM."""
    import resource

    for r in rlimits:
        number = getattr(resource, r.type, None)
        if not r.type.startswith("RLIMIT_") or not isinstance(number, int):
            raise ContainerRuntimeError(f"invalid rlimit type {r.type!r}")

        def call(n: int = number, lim: oci.Rlimit = r) -> None:
            try:
                resource.setrlimit(n, (lim.soft, lim.hard))
            except (OSError, ValueError) as e:  # (Python says EPERM and EINVAL as ValueError)
                err = e.errno if isinstance(e, OSError) else (
                    1 if "raise maximum" in str(e) else 22)
                raise ContainerRuntimeError(
                    f"setrlimit {lim.type} {lim.soft}:{lim.hard}: "
                    f"{os.strerror(err or 22).lower()}"
                    + (" (above the hard limit: raising it needs CAP_SYS_RESOURCE)"
                       if err == 1 else "")) from None

        trace.step(f"setrlimit({r.type}, {{{r.soft}, {r.hard}}})", call, "--ulimit")


def write_sysctls(sysctl: dict[str, str]) -> None:
    """linux.sysctl (--sysctl): written to /proc/sys inside the container's namespaces,
    before /proc/sys becomes read-only. Only keys namespaced by the kernel are allowed
    (the engine refuses the others, as Docker does)."""
    for key, value in sorted(sysctl.items()):
        path = "/proc/sys/" + key.replace(".", "/")
        if ".." in key.split(".") or "/" in key:
            raise ContainerRuntimeError(f"invalid sysctl {key!r}")

        def call(p: str = path, v: str = value) -> None:
            with open(p, "w") as f:
                f.write(v)

        try:
            trace.step(f'write("{path}", "{value}")', call, "--sysctl")
        except OSError as e:
            raise ContainerRuntimeError(f"write sysctl {key}={value}: "
                                        f"{(e.strerror or '').lower()}") from None


def _switch_user(proc: oci.Process, keep_caps: bool) -> None:
    import prctl

    u = proc.user
    if keep_caps and u.uid != 0:
        prctl.set_keepcaps(True)  # keep permitted caps across setuid; effective set later
    linux.setgroups(u.additional_gids, why="supplementary groups of the container's user")
    linux.setresgid(u.gid, why="the container's group")
    linux.setresuid(u.uid, why="the container's user")
    if keep_caps and u.uid != 0:
        prctl.set_keepcaps(False)


def _setup_console(spec: oci.Spec, opts: CreateOptions) -> int:
    """A pty from the container's own devpts; the master goes to the caller over a unix
    socket (runc's --console-socket contract), the slave becomes /dev/console and stdio."""
    import fcntl
    import socket
    import struct
    import termios

    master, slave = trace.step("openpty()", os.openpty,
                               why="a terminal pair from the container's /dev/pts")
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    name = os.ttyname(slave)
    os.fchown(slave, spec.process.user.uid, 5 if spec.process.user.uid else 0)
    if not os.path.lexists("/dev/console"):  # /dev is the runtime's tmpfs: make the target
        os.close(os.open("/dev/console", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    linux.mount(name, "/dev/console", None, linux.MS_BIND, None,
                why="/dev/console is the container's terminal")
    if spec.process.console_size:
        h, w = spec.process.console_size
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
    if opts.console_fd >= 0:
        sock = socket.socket(fileno=opts.console_fd)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(opts.console_socket or "")
    trace.step("sendmsg(SCM_RIGHTS, pty master)",
               lambda: socket.send_fds(sock, [name.encode()], [master]),
               why="hand the terminal's master side to the caller")
    sock.close()
    os.close(master)
    return slave


def _stage1(spec: oci.Spec, opts: CreateOptions, state_dir: str, status_w: int, go_r: int,
            cgroup_dirs: dict[str, str] | None, mount_userns: dict[int, int]) -> None:
    trace.set_role("child")
    timing.forked()
    if not spec.process.terminal:
        _place_stdio(opts.stdio)
    keep = {0, 1, 2, status_w, go_r, *mount_userns.values()}
    if opts.console_fd >= 0:
        keep.add(opts.console_fd)
    if trace.enabled():
        keep.add(trace.trace_fd())
    _keep_only(keep)
    if os.read(go_r, 1) != b"g":
        os._exit(1)
    # (The state dir is the host root's: opened now, before any user namespace.)
    fifo_fd = os.open(os.path.join(state_dir, FIFO), os.O_PATH | os.O_CLOEXEC)
    remap = bool(spec.linux.uid_mappings)
    clones = None
    if remap:
        # Walked now, as the host's root: from inside the user namespace the container's
        # root is another host uid, which the engine's 0710 directories keep out. The
        # cwd follows into the new mount namespace; the bind sources go as detached mounts.
        linux.chdir(spec.root_path, why="the rootfs, entered while its path can be walked")
        clones = rootfs.clone_bind_sources(spec, mount_userns)
        close_namespaces(mount_userns)
    flags = 0
    for ns in spec.linux.namespaces:
        if ns.path:
            nsfd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(nsfd, _NS_FLAGS[ns.type], why=f"join the {ns.type} namespace {ns.path}")
            os.close(nsfd)
        else:
            flags |= _NS_FLAGS[ns.type]
    with timing.phase("namespaces"):
        linux.unshare(flags,
                      why="new namespaces: what the container sees of the system is its own")
    if remap:
        _send(status_w, userns=1)  # the runtime writes our uid_map and gid_map
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        become_userns_root()
    pid = os.fork()
    if pid == 0:
        timing.forked()  # (stage 1 sends its own)
        try:
            _init(spec, opts, fifo_fd, status_w, go_r, cgroup_dirs, clones)
        finally:
            os._exit(1)
    _send(status_w, pid=pid, **({"timings": timing.take()} if timing.enabled() else {}))
    os._exit(0)


def become_userns_root() -> None:
    """In a user namespace that has its mappings: become its root (the host uid the
    mapping gives container uid 0). Until now this process was the host's root, which the
    namespace does not map: files it made there would fail with EOVERFLOW."""
    import prctl

    linux.setgroups([], why="the host's groups mean nothing in the user namespace")
    linux.setresgid(0, why="the user namespace's root group")
    linux.setresuid(0, why="the user namespace's root (a host uid of the mapping)")
    # The uid change made us non-dumpable, which would give /proc/self to the host's root.
    prctl.set_dumpable(True)


#: clone3 errors that mean "not on this kernel" (before 5.3 / 5.7) or "hidden by a seccomp
#: filter" (an engine inside a container): fork and write cgroup.procs instead.
_NO_CLONE_INTO_CGROUP = (errno.ENOSYS, errno.EINVAL, errno.E2BIG, errno.EPERM)


def _fork(cgroup_dir: str | None) -> tuple[int, bool]:
    """fork(), the child born in ``cgroup_dir`` when one is given and the kernel can: (pid,
    True) then; (pid, False) when the caller must still move the child in."""
    if cgroup_dir is not None:
        try:
            return linux.fork_into_cgroup(
                cgroup_dir, why="the child starts in the container's cgroup: nothing to move"
            ), True
        except OSError as e:
            if e.errno not in _NO_CLONE_INTO_CGROUP:
                raise ContainerRuntimeError(
                    f"start a process in cgroup {cgroup_dir}: {os.strerror(e.errno or 0)}"
                ) from None
            trace.note(f"clone3 into a cgroup failed ({errno.errorcode.get(e.errno or 0)}): "
                       "fork, then move the child")
    return os.fork(), False


def fork_with_pipes(child: Callable[[int, int], None], cgroup_dir: str | None = None
                    ) -> tuple[int, BinaryIO, int, bool]:
    """Fork ``child(status_w, go_r)``: it reads "go" bytes from the caller and answers with
    JSON lines (:func:`_send`); anything it raises is reported the same way and it never
    returns into the caller's code. With ``cgroup_dir`` (a cgroup2 directory, see
    ``Manager.birth_dir``) the child is created in that cgroup where the kernel can.
    Returns (pid, status reader, go writer, whether the child is already in the cgroup)."""
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    with ExitStack() as undo:
        for fd in (status_r, status_w, go_r, go_w):
            undo.callback(os.close, fd)
        pid, placed = _fork(cgroup_dir)
        undo.pop_all()
    if pid == 0:
        try:
            os.close(status_r)
            os.close(go_w)
            child(status_w, go_r)
        except BaseException as e:  # forked: never unwinds into the caller's code, even on ^C
            try:
                text = e.message if isinstance(e, MinidockError) else str(e)
                _send(status_w, error=text, code=125)
            finally:
                os._exit(1)
        os._exit(1)
    os.close(status_w)
    os.close(go_r)
    return pid, os.fdopen(status_r, "rb"), go_w, placed


def _add_timings(msg: dict[str, object]) -> None:
    """--timings: the entries a child measured and sent, into this process's list."""
    sent = msg.get("timings")
    if isinstance(sent, list):
        for name, ms in sent:
            timing.add(str(name), float(ms))


def _read_msg(f: object) -> dict[str, object]:
    line = f.readline()  # type: ignore[attr-defined]
    if not line:
        return {}
    result: dict[str, object] = json.loads(line)
    return result


def reported_failure(msg: dict[str, object], action: str, silent: str) -> MinidockError:
    """The error a child reported on its status pipe ({"error", "code"}), as the class
    Docker's exit code needs (126: cannot invoke, 127: not found); ``silent`` when it died
    without a word."""
    code = int(str(msg.get("code", 125)))
    cls = {126: CommandCannotInvoke, 127: CommandNotFound}.get(code, ContainerRuntimeError)
    return cls(f"OCI runtime {action} failed: {msg.get('error', silent)}")


def create(state_root: str, container_id: str, bundle: str,
           opts: CreateOptions | None = None) -> RuntimeState:
    """Create the container: namespaces, cgroup, rootfs; its init waits for :func:`start`."""
    opts = opts or CreateOptions()
    check_id(container_id)
    spec = load_spec(bundle)
    if spec.process.terminal and opts.console_fd < 0 and not opts.console_socket:
        raise ContainerRuntimeError("create: process.terminal is set but no console socket "
                                    "was given (--console-socket)")
    # After pivot_root the host's site-packages are out of reach: everything the init
    # will need is imported now, before the fork.
    import _prctl  # noqa: F401
    import prctl

    if spec.process.rlimits:
        import resource  # noqa: F401
    if spec.process.terminal:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401
        import termios  # noqa: F401
    threading = sys.modules.get("threading")  # never imported: no thread was started
    if threading is not None and threading.active_count() > 1:
        raise ContainerRuntimeError("create: refusing to fork a multi-threaded process")
    os.makedirs(state_root, mode=0o700, exist_ok=True)
    state_dir = os.path.join(state_root, container_id)
    try:
        os.mkdir(state_dir, 0o711)
    except FileExistsError:
        raise Conflict(f"container with id {container_id} exists") from None
    userns = spec.linux.namespace("user")
    if userns is not None and userns.path is None and not spec.linux.uid_mappings:
        raise ContainerRuntimeError("create: a new user namespace needs linux.uidMappings "
                                    "and linux.gidMappings")
    cgroups_path = spec.linux.cgroups_path or f"/minidock/{container_id}"
    state = RuntimeState(id=container_id, bundle=os.path.abspath(bundle),
                         created=_now(), cgroups_path=cgroups_path,
                         annotations=spec.annotations)
    with ExitStack() as undo:
        undo.callback(_remove_state_dir, state_dir)
        os.mkfifo(os.path.join(state_dir, FIFO), 0o622)
        if spec.linux.uid_mappings:  # the init opens it as the namespace's root (as runc)
            os.chown(os.path.join(state_dir, FIFO), _host_id(spec.linux.uid_mappings, 0),
                     _host_id(spec.linux.gid_mappings, 0))
        # Saved now with pid 0 ("creating"), before the cgroup exists: a create killed from
        # here on leaves a state that ``delete`` can undo (it names the cgroup).
        state.save(state_dir)
        with timing.phase("cgroup"):
            manager = cgroups.new_manager(cgroups_path)
            manager.create()
            undo.callback(manager.destroy)
            if spec.linux.device_rules:
                manager.apply_device_rules([r.to_dict() for r in spec.linux.device_rules])
            if not spec.linux.resources.empty():
                manager.apply_resources(spec.linux.resources)
        cgroup_dirs = None
        if manager.version == 1:
            cgroup_dirs = {k.removeprefix("name="): v for k, v in manager.paths.items() if k}
        if opts.subreaper:
            import prctl

            prctl.set_child_subreaper(1)
        mount_userns = _mount_namespaces(spec, undo)
        child, status, go_w, placed = fork_with_pipes(
            lambda status_w, go_r: _stage1(spec, opts, state_dir, status_w, go_r, cgroup_dirs,
                                           mount_userns),
            manager.birth_dir())
        close_namespaces(mount_userns)
        undo.callback(status.close)
        undo.callback(os.close, go_w)
        # Moving the first process into a cgroup costs 5-20 ms in the kernel (an RCU grace
        # period), so on cgroup v2 the child was born in it (clone3). Otherwise: with a
        # cgroup namespace the child must be in its cgroup before it unshares; without one,
        # the init is moved instead, while it builds its rootfs, so the two overlap. Either
        # way it is in its cgroup before `start` lets it exec.
        join_early = spec.linux.namespace("cgroup") is not None
        if join_early and not placed:
            manager.add_process(child)
        os.write(go_w, b"g")
        msg = _read_msg(status)
        if msg.get("userns"):
            from minidock.linux import idmap

            idmap.write_maps(child, _triples(spec.linux.uid_mappings),
                             _triples(spec.linux.gid_mappings),
                             why="map the container's ids to the host's (linux.uidMappings)")
            os.write(go_w, b"g")
            msg = _read_msg(status)
        os.waitpid(child, 0)
        _add_timings(msg)
        if "pid" not in msg:
            raise ContainerRuntimeError(
                f"create container {container_id}: {msg.get('error', 'child died')}")
        init_pid = int(str(msg["pid"]))
        undo.callback(_kill_and_reap, init_pid)
        os.write(go_w, b"g")
        if not join_early and not placed:
            manager.add_process(init_pid)
        msg = _read_msg(status)
        _add_timings(msg)
        if not msg.get("ready"):
            raise reported_failure(msg, "create", "container init died")
        state.pid = init_pid
        state.start_time = process_start_time(init_pid) or 0
        state.save(state_dir)
        if opts.pid_file:
            _write_pid_file(opts.pid_file, init_pid)
        undo.pop_all()
        status.close()
        os.close(go_w)
    return state


def _host_id(mapping: list[oci.IDMapping], cid: int) -> int:
    from minidock.linux.idmap import to_host

    host = to_host(_triples(mapping), cid)
    if host is None:
        raise ContainerRuntimeError(f"create: id {cid} is not in linux.uidMappings/gidMappings")
    return host


def _triples(mapping: list[oci.IDMapping]) -> list[tuple[int, int, int]]:
    return [(m.container_id, m.host_id, m.size) for m in mapping]


def _mount_namespaces(spec: oci.Spec, undo: ExitStack) -> dict[int, int]:
    """For each mount with its own id mapping (OCI 1.1 idmapped mounts): a user namespace
    carrying it, by spec.mounts index. Only with a new user namespace: stage 1 clones the
    source through it before unsharing."""
    out: dict[int, int] = {}
    if not spec.linux.uid_mappings:
        return out
    from minidock.linux import idmap

    undo.callback(close_namespaces, out)
    made: dict[tuple[tuple[tuple[int, int, int], ...], ...], int] = {}
    for i, m in enumerate(spec.mounts):
        if m.uid_mappings or m.gid_mappings:
            key = (tuple(_triples(m.uid_mappings or spec.linux.uid_mappings)),
                   tuple(_triples(m.gid_mappings or spec.linux.gid_mappings)))
            if key not in made:  # one namespace per mapping, however many mounts use it
                made[key] = idmap.userns_fd(list(key[0]), list(key[1]))
            out[i] = made[key]
    return out


def close_namespaces(fds: dict[int, int]) -> None:
    """Close the namespaces of _mount_namespaces (several mounts may share one) and forget
    them."""
    for fd in set(fds.values()):
        os.close(fd)
    fds.clear()


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_gone(pid, None)


def wait_gone(pid: int, start_time: int | None, timeout: float = 10.0) -> None:
    """Wait until a process we may or may not be the parent of has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            st = process_start_time(pid)
            if st is None or (start_time is not None and st != start_time):
                return
        time.sleep(0.002)


def _remove_state_dir(state_dir: str) -> None:
    for name in (FIFO, "state.json", ".state.json.tmp"):
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(state_dir)
    except FileNotFoundError:
        pass
