"""The seam between the engine and an OCI runtime, as a type: what the engine may ask of one.

    engine ---- OCIRuntime ----+--> Builtin    minidock's own runtime (minidock.runtime), called
                               |                in-process: create forks the init from this
                               |                process, no second interpreter starts
                               +--> External   any binary with runc's command line (runc, crun,
                                                a path): `create --bundle --pid-file
                                                --console-socket`, `start`, `state`, ...

Both take the same inputs (an OCI bundle directory the engine wrote, the stdio the container
gets) and give the same outputs (the init's host pid, the pty master of a -t container), and
in both the caller is the init's parent: it is made a child subreaper before create, so the
init (forked by the runtime, which then exits) is reparented to it and is its to waitpid().
The engine imports nothing else of minidock.runtime; a container's runtime is named in its
HostConfig.Runtime and each runtime keeps its state under a root of its own
(<run-root>/runtime for minidock's, <run-root>/runtime-<name> for the others).

Terminals: an external runtime connects to a unix socket given as --console-socket and sends
the pty master over it with SCM_RIGHTS (runc's protocol); the socket is made in a private
temp directory (a path in the bundle can exceed sun_path's 108 bytes) and accepted while
`create` runs. The builtin hands it over a socketpair.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable

from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    Conflict,
    ContainerNotFound,
    ContainerRuntimeError,
    InvalidArgument,
    MinidockError,
)
from minidock.linux import trace
from minidock.records import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any, Protocol

    from minidock.paths import Paths
else:
    Protocol = object  # OCIRuntime is a structural type for the checker, a plain class here

BUILTIN = "minidock"
#: Runtimes known by name without any configuration: looked up on PATH.
WELL_KNOWN = ("runc", "crun")
#: How long a runtime verb other than create may take before we give up on it.
VERB_TIMEOUT = 60.0


@record(frozen=True)
class State:
    """What a runtime says of a container it knows: OCI status and the init's host pid."""

    status: str  # creating, created, running, paused, stopped
    pid: int

    @property
    def alive(self) -> bool:
        return self.status in ("created", "running", "paused")


@record
class Started:
    """A process the runtime started for us: its host pid, and the pty master (-t)."""

    pid: int
    master: int = -1


@record
class Stdio:
    """What the container's (or exec'd process's) stdio is: three fds passed through (-1 is
    /dev/null), or a new pty whose master comes back to us."""

    fds: tuple[int, int, int] = (-1, -1, -1)
    tty: bool = False


class OCIRuntime(Protocol):
    """runc's verbs. Errors: ContainerNotFound, Conflict (wrong state), CommandNotFound (127)
    and CommandCannotInvoke (126) for the container's command, ContainerRuntimeError else."""

    name: str
    root: str  # where it keeps its state: <root>/<id>

    def create(self, cid: str, bundle: str, stdio: Stdio, *,
               kill_with_parent: bool = False) -> Started: ...
    def start(self, cid: str) -> None: ...
    def state(self, cid: str) -> State | None: ...
    def kill(self, cid: str, sig: int) -> None: ...
    def pause(self, cid: str) -> None: ...
    def resume(self, cid: str) -> None: ...
    def ps(self, cid: str) -> list[int]: ...
    def delete(self, cid: str, force: bool = False) -> None: ...
    def exec(self, cid: str, bundle: str, process: dict[str, Any], stdio: Stdio, *,
             detach: bool = False) -> Started: ...
    def list(self) -> list[str]: ...


def become_subreaper() -> None:
    """Orphans among our descendants (a container's init whose runtime exited) become our
    children, so we can waitpid() them and see their exit status."""
    import prctl

    prctl.set_child_subreaper(1)


# --- minidock's own runtime ---------------------------------------------------------------


class Builtin:
    """minidock.runtime, in-process: the fast path (the init is a fork of this process)."""

    name = BUILTIN

    def __init__(self, state_root: str) -> None:
        self.root = state_root

    def create(self, cid: str, bundle: str, stdio: Stdio, *,
               kill_with_parent: bool = False) -> Started:
        from minidock import runtime

        def call(console_fd: int) -> int:
            opts = (runtime.CreateOptions(console_fd=console_fd) if console_fd >= 0
                    else runtime.CreateOptions(stdio=stdio.fds))
            opts.subreaper = True
            opts.kill_with_parent = kill_with_parent
            return runtime.create(self.root, cid, bundle, opts).pid

        return _with_console(stdio, "create", call)

    def start(self, cid: str) -> None:
        from minidock import runtime

        runtime.start(self.root, cid)

    def state(self, cid: str) -> State | None:
        from minidock import runtime

        try:
            doc = runtime.state(self.root, cid)
        except ContainerNotFound:
            return None
        return State(doc["status"], int(doc.get("pid") or 0))

    def kill(self, cid: str, sig: int) -> None:
        from minidock import runtime

        runtime.kill(self.root, cid, sig)

    def pause(self, cid: str) -> None:
        from minidock import runtime

        runtime.pause(self.root, cid)

    def resume(self, cid: str) -> None:
        from minidock import runtime

        runtime.resume(self.root, cid)

    def ps(self, cid: str) -> list[int]:
        from minidock import runtime

        return runtime.ps(self.root, cid)

    def delete(self, cid: str, force: bool = False) -> None:
        from minidock import runtime

        runtime.delete(self.root, cid, force=force)

    def exec(self, cid: str, bundle: str, process: dict[str, Any], stdio: Stdio, *,
             detach: bool = False) -> Started:
        from minidock.oci import runtime as oci
        from minidock.runtime import exec as rtexec

        proc = oci.parse({"process": process, "root": {"path": "rootfs"}}).process

        def call(console_fd: int) -> int:
            opts = (rtexec.ExecOptions(console_fd=console_fd, subreaper=not detach)
                    if console_fd >= 0
                    else rtexec.ExecOptions(stdio=stdio.fds, subreaper=not detach))
            return rtexec.exec_process(self.root, cid, proc, opts)

        return _with_console(stdio, "exec", call)

    def list(self) -> list[str]:
        from minidock import runtime

        return runtime.list_ids(self.root)


def _with_console(stdio: Stdio, verb: str, call: Callable[[int], int]) -> Started:
    """Run ``call(console_fd)`` (-1: no terminal) and take the pty master the runtime sends
    over the socketpair whose other end it was given."""
    if not stdio.tty:
        return Started(call(-1))
    import socket

    ours, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        started = Started(call(child_sock.fileno()))
        child_sock.close()
        started.master = _receive_fd(ours, verb)
        return started
    finally:
        child_sock.close()
        ours.close()


def _receive_fd(sock: Any, verb: str) -> int:
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 1024, 1)
    if not fds:
        raise ContainerRuntimeError(f"{verb}: the runtime sent no terminal")
    return int(fds[0])


# --- a runtime binary with runc's command line ----------------------------------------------


#: Words of a runtime's error and the class they make, first match wins: Docker's reading
#: of the OCI runtime's message (moby daemon/start.go) for the container's command, then
#: runc's wording for the container's state.
_ERROR_WORDS: tuple[tuple[tuple[str, ...], type[MinidockError]], ...] = (
    (("executable file not found",), CommandNotFound),
    (("exec:", "no such file or directory"), CommandNotFound),
    (("exec:", "permission denied"), CommandCannotInvoke),
    (("exec:", "is a directory"), CommandCannotInvoke),
    (("does not exist",), ContainerNotFound),
    (("not running",), Conflict),
    (("not paused",), Conflict),
    (("is paused",), Conflict),
    (("is already",), Conflict),
)


def classify(name: str, text: str) -> MinidockError:
    """The error class of what a runtime binary printed when it failed (one line, named)."""
    msg = text.strip() or "failed with no message"
    lowered = msg.lower()
    for words, kind in _ERROR_WORDS:
        if all(w in lowered for w in words):
            return kind(f"{name}: {msg}")
    if "cgroup" in lowered and ("hybrid" in lowered or "v1" in lowered):
        return ContainerRuntimeError(
            f"{name} cannot run containers on this host's cgroup layout: {msg}",
            hint="use another runtime here (--runtime minidock or runc)")
    return ContainerRuntimeError(f"{name}: {msg}")


def last_message(stderr: str) -> str:
    """The error a runtime printed: runc logs logfmt lines (`level=error msg="..."`) or
    JSON ones (--log-format json), crun plain `crun: ...` lines; the last error wins."""
    found = ""
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                found = line
                continue
            if isinstance(doc, dict) and doc.get("level") in ("error", "fatal", None):
                found = str(doc.get("msg", line))
            continue
        if "level=" in line and "msg=" in line:
            level = line.split("level=", 1)[1].split(" ", 1)[0]
            if level not in ("error", "fatal"):
                continue
            rest = line.split("msg=", 1)[1]
            if rest.startswith('"'):
                try:
                    found = json.loads(rest[: _logfmt_end(rest) + 1])
                except ValueError:
                    found = rest.strip('"')
            else:
                found = rest.split(" ", 1)[0]
            continue
        found = line
    return found


def _logfmt_end(quoted: str) -> int:
    i = 1
    while i < len(quoted):
        if quoted[i] == "\\":
            i += 2
            continue
        if quoted[i] == '"':
            return i
        i += 1
    return len(quoted) - 1


class External:
    """A runtime binary driven by runc's command line, one process per verb."""

    def __init__(self, name: str, path: str, state_root: str,
                 args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.path = path
        self.root = state_root
        self.args = args

    def _argv(self, *verb: str) -> list[str]:
        return [self.path, *self.args, "--root", self.root, *verb]

    def _run(self, *verb: str, timeout: float = VERB_TIMEOUT,
             stdio: tuple[int, int, int] | None = None) -> str:
        import subprocess

        argv = self._argv(*verb)
        trace.note(f"run {' '.join(argv)}")
        os.makedirs(self.root, 0o700, exist_ok=True)
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, check=False)
        except FileNotFoundError:
            raise ContainerRuntimeError(f"runtime {self.name}: {self.path} not found") from None
        except subprocess.TimeoutExpired:
            raise ContainerRuntimeError(
                f"{self.name} {verb[0]}: no answer within {timeout:.0f} s") from None
        if p.returncode != 0:
            raise classify(self.name, last_message(p.stderr.decode("utf-8", "replace")))
        return p.stdout.decode("utf-8", "replace")

    def create(self, cid: str, bundle: str, stdio: Stdio, *,
               kill_with_parent: bool = False) -> Started:
        """`create`; the runtime's own 0-2 are what it passes to the init, so the
        container's stdio goes there, and the runtime's error messages to --log (a file in
        the bundle, read back on failure). ``kill_with_parent`` has no runc equivalent: a
        foreground container whose CLI died is reclaimed by reconcile instead."""
        pid_file = os.path.join(bundle, "init.pid")
        log = os.path.join(bundle, f"{self.name}.log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
        code, master = self._spawn(
            ["--log", log, "--log-format", "json", "create", "--bundle", bundle,
             "--pid-file", pid_file], cid, stdio)
        if code != 0:
            raise classify(self.name, last_message(_read(log)) or f"create exited with {code}")
        try:
            pid = int(_read(pid_file).strip())
        except ValueError:
            if master >= 0:
                os.close(master)
            raise ContainerRuntimeError(f"{self.name} create: no pid in {pid_file}") from None
        return Started(pid, master)

    def _spawn(self, verb: list[str], cid: str, stdio: Stdio) -> tuple[int, int]:
        """Run a verb that starts a process in the container (create, exec) with the
        container's stdio as its own; returns its exit code and the pty master (-t).

        The console socket lives in a private directory of its own under the temp dir:
        a path in the bundle can exceed sun_path's 108 bytes, and the runtime connects to
        the path we give it."""
        import socket
        import subprocess
        import tempfile

        become_subreaper()
        os.makedirs(self.root, 0o700, exist_ok=True)
        argv = [self.path, *self.args, "--root", self.root, *verb]
        listener = None
        sock_dir = ""
        if stdio.tty:
            sock_dir = tempfile.mkdtemp(prefix="minidock-console-")  # mode 0700
            sock_path = os.path.join(sock_dir, "sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            listener.bind(sock_path)
            listener.listen(1)
            argv += ["--console-socket", sock_path]
        argv.append(cid)
        trace.note(f"run {' '.join(argv)}")
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        fds = [devnull] * 3 if stdio.tty else [devnull if fd < 0 else fd for fd in stdio.fds]
        master = -1
        try:
            try:
                proc = subprocess.Popen(argv, stdin=fds[0], stdout=fds[1], stderr=fds[2],
                                        close_fds=True)
            except FileNotFoundError:
                raise ContainerRuntimeError(
                    f"runtime {self.name}: {self.path} not found") from None
            if listener is not None:
                master = self._accept_console(listener, proc)
            code = proc.wait()
        finally:
            os.close(devnull)
            if listener is not None:
                listener.close()
                shutil.rmtree(sock_dir, ignore_errors=True)
        if code != 0 and master >= 0:
            os.close(master)
            master = -1
        return code, master

    def _accept_console(self, listener: Any, proc: Any) -> int:
        """Accept the runtime's connection on --console-socket while it runs, and take the
        pty master it sends; a runtime that exits first sent nothing (it failed)."""
        import select

        while True:
            ready, _, _ = select.select([listener], [], [], 0.05)
            if ready:
                conn, _ = listener.accept()
                try:
                    return _receive_fd(conn, "create")
                finally:
                    conn.close()
            if proc.poll() is not None:
                return -1

    def start(self, cid: str) -> None:
        self._run("start", cid)

    def state(self, cid: str) -> State | None:
        try:
            out = self._run("state", cid)
        except ContainerNotFound:
            return None
        try:
            doc = json.loads(out)
        except ValueError:
            raise ContainerRuntimeError(f"{self.name} state {cid}: not JSON: {out[:80]!r}"
                                        ) from None
        return State(str(doc.get("status", "")), int(doc.get("pid") or 0))

    def kill(self, cid: str, sig: int) -> None:
        self._run("kill", cid, str(int(sig)))

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def ps(self, cid: str) -> list[int]:
        out = self._run("ps", "--format", "json", cid)
        try:
            pids = json.loads(out) or []
        except ValueError:
            raise ContainerRuntimeError(f"{self.name} ps {cid}: not JSON: {out[:80]!r}"
                                        ) from None
        return sorted(int(p) for p in pids)

    def delete(self, cid: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), cid)

    def exec(self, cid: str, bundle: str, process: dict[str, Any], stdio: Stdio, *,
             detach: bool = False) -> Started:
        """`exec --detach`: the runtime returns once the process runs; as our orphan it is
        then ours to wait for (``detach`` only says nobody will)."""
        import tempfile

        work = tempfile.mkdtemp(prefix="exec-", dir=bundle)
        try:
            proc_file = os.path.join(work, "process.json")
            with open(proc_file, "w") as f:
                json.dump(process, f)
            pid_file = os.path.join(work, "pid")
            log = os.path.join(work, "log")
            verb = ["--log", log, "--log-format", "json", "exec", "--process", proc_file,
                    "--detach", "--pid-file", pid_file]
            if stdio.tty:
                verb.append("--tty")
            code, master = self._spawn(verb, cid, stdio)
            if code != 0:
                raise classify(self.name, last_message(_read(log)) or f"exec exited with {code}")
            return Started(int(_read(pid_file).strip() or 0), master)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def list(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        out = self._run("list", "--format", "json")
        try:
            docs = json.loads(out) or []
        except ValueError:
            return []
        return sorted(str(d.get("id")) for d in docs if isinstance(d, dict) and d.get("id"))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# --- which runtime ---------------------------------------------------------------------------


@record(frozen=True)
class RuntimeConfig:
    """A runtime the engine can use: Docker's daemon.json ``runtimes`` entry, resolved."""

    name: str  # what HostConfig.Runtime says: "minidock", "runc", a configured name, a path
    path: str = ""  # the binary (empty for the builtin)
    args: tuple[str, ...] = field(default_factory=tuple)  # runtimeArgs


def state_root(paths: Paths, name: str) -> str:
    if name == BUILTIN:
        return paths.runtime_state
    if "/" in name:  # a path given to --runtime: a root of its own, named for it
        import hashlib  # rare (a runtime named by its path): not on every start

        name = "path-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return os.path.join(paths.run_root, f"runtime-{name}")


def _which(name: str) -> str | None:
    return shutil.which(name)


def available(configured: dict[str, Any] | None = None) -> dict[str, RuntimeConfig]:
    """Every runtime usable by name: minidock's, runc and crun where installed, and the
    configured ones (settings ``runtimes``: {"name": {"path": ..., "runtimeArgs": [...]}})."""
    found = {BUILTIN: RuntimeConfig(BUILTIN)}
    for name in WELL_KNOWN:
        path = _which(name)
        if path:
            found[name] = RuntimeConfig(name, path)
    for name, entry in (configured or {}).items():
        found[name] = config_entry(name, entry)
    return found


def config_entry(name: str, entry: Any) -> RuntimeConfig:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise InvalidArgument(f'runtime "{name}" in the settings needs a "path"')
    args = entry.get("runtimeArgs") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise InvalidArgument(f'runtime "{name}": "runtimeArgs" must be a list of strings')
    path = entry["path"]
    if "/" not in path:
        path = _which(path) or path
    return RuntimeConfig(name, path, tuple(args))


def resolve(name: str | None, configured: dict[str, Any] | None = None,
            default: str | None = None) -> RuntimeConfig:
    """The runtime ``--runtime NAME`` (or the default one) names; one clear error else."""
    name = name or default or BUILTIN
    if name == BUILTIN:
        return RuntimeConfig(BUILTIN)
    if configured and name in configured:
        return config_entry(name, configured[name])
    if "/" in name:
        if not os.path.isabs(name):
            raise InvalidArgument(f"runtime path {name!r} must be absolute")
        if not os.access(name, os.X_OK) or os.path.isdir(name):
            raise InvalidArgument(f"runtime {name}: not an executable file")
        return RuntimeConfig(name, name)
    if name in WELL_KNOWN:
        path = _which(name)
        if path:
            return RuntimeConfig(name, path)
        raise InvalidArgument(f"unknown or invalid runtime name: {name} ({name} is not installed)")
    raise InvalidArgument(f"unknown or invalid runtime name: {name}")


def _configured() -> tuple[dict[str, Any], str]:
    """The settings' ``runtimes`` and ``default-runtime`` (read only when one is needed)."""
    from minidock.settings import load_engine_config

    cfg = load_engine_config()
    return cfg.runtimes, cfg.default_runtime


def choose(name: str | None) -> RuntimeConfig:
    """The runtime a new container gets: ``--runtime NAME``, else the settings'
    ``default-runtime``, else minidock's. An unknown name fails here, at create (125)."""
    if name == BUILTIN:
        return RuntimeConfig(BUILTIN)
    configured, default = _configured()
    return resolve(name, configured, default)


def open_runtime(paths: Paths, name: str | None, configured: dict[str, Any] | None = None
                 ) -> OCIRuntime:
    """The OCIRuntime a container recorded with HostConfig.Runtime ``name`` uses."""
    if not name or name == BUILTIN:
        return Builtin(state_root(paths, BUILTIN))
    if configured is None:
        configured, _ = _configured()
    rc = resolve(name, configured)
    return External(rc.name, rc.path, state_root(paths, rc.name), rc.args)


def listing(paths: Paths) -> dict[str, RuntimeConfig]:
    """Every runtime usable by name here (``info``), the configured ones included."""
    configured, _ = _configured()
    return available(configured)


def default_name() -> str:
    return _configured()[1] or BUILTIN
