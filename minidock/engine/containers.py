"""Containers: records on disk in Docker's layout, and their lifecycle.

``<root>/containers/<id>/`` holds config.v2.json (with Docker's ``State``),
hostconfig.json, hostname, hosts and resolv.conf. The container's filesystem is an
overlay2 rw layer on top of an -init layer on top of the image (layerdb/mounts/<id>).

Locks (all flock, so a SIGKILLed CLI never leaves one behind):
    <run>/locks/containers.lock     names and ids: held while creating or removing
    <run>/locks/<id>.lock           one container's record: held for each state change
    <run>/locks/<id>.monitor        held by the process that waits for the container's
                                    init (the foreground ``run``). If a record says
                                    "running" and nobody holds this, the CLI that ran it
                                    died: the next command records the container as
                                    exited and cleans up its mount, cgroup and bundle.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from minidock import runtime
from minidock.engine import hostfiles, io, locks
from minidock.engine import spec as specgen
from minidock.engine.passwd import resolve_user
from minidock.engine.state import State, Status
from minidock.errors import (
    Conflict,
    ContainerNotFound,
    InvalidArgument,
    MinidockError,
)
from minidock.linux import trace
from minidock.paths import Paths
from minidock.storage.atomic import atomic_write

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ID_RE = re.compile(r"^[0-9a-f]{64}$")
DRIVER = "overlay2"
EXIT_UNKNOWN = 255  # Docker's code for a container whose end nobody saw


@dataclass
class CreateOptions:
    image: str
    process: specgen.ProcessOptions = field(default_factory=specgen.ProcessOptions)
    name: str | None = None
    hostname: str | None = None
    network: str = "none"
    auto_remove: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # --label, over the image's


@dataclass
class Container:
    id: str
    name: str
    created: str
    image_id: str
    image_ref: str
    path: str
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: State = field(default_factory=State)
    dir: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_config_v2(self, paths: Paths) -> dict[str, Any]:
        d = self.dir
        return {
            "StreamConfig": {},
            "State": self.state.to_docker(),
            "ID": self.id,
            "Created": self.created,
            "Managed": False,
            "Path": self.path,
            "Args": self.args,
            "Config": self.config,
            "Image": self.image_id,
            "ImageManifest": None,
            "NetworkSettings": network_settings(self),
            "LogPath": log_path(self),
            "Name": "/" + self.name,
            "Driver": DRIVER,
            "OS": "linux",
            "RestartCount": 0,
            "HasBeenStartedBefore": self.state.started_at != "0001-01-01T00:00:00Z",
            "HasBeenManuallyStopped": False,
            "MountPoints": {},
            "SecretReferences": None,
            "ConfigReferences": None,
            "AppArmorProfile": "",
            "HostnamePath": os.path.join(d, "hostname"),
            "HostsPath": os.path.join(d, "hosts"),
            "ShmPath": "",
            "ResolvConfPath": os.path.join(d, "resolv.conf"),
            "SeccompProfile": "",
            "NoNewPrivileges": False,
            "LocalLogCacheMeta": {"HaveNotifyEnabled": False},
        }

    @classmethod
    def from_config_v2(cls, doc: dict[str, Any], host_config: dict[str, Any],
                       directory: str) -> Container:
        return cls(
            id=doc["ID"],
            name=doc["Name"].lstrip("/"),
            created=doc["Created"],
            image_id=doc["Image"],
            image_ref=doc["Config"].get("Image", ""),
            path=doc["Path"],
            args=doc["Args"],
            config=doc["Config"],
            host_config=host_config,
            state=State.from_docker(doc["State"]),
            dir=directory,
        )


def network_settings(c: Container) -> dict[str, Any]:
    mode = c.host_config.get("NetworkMode", "none")
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
        "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
        "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": {mode: {"IPAMConfig": None, "Links": None, "Aliases": None,
                            "NetworkID": "", "EndpointID": "", "Gateway": "",
                            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                            "MacAddress": "", "DriverOpts": None}},
    }


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


# --- the store of container records -------------------------------------------------


def lock_path(paths: Paths, name: str) -> str:
    return os.path.join(paths.locks, name)


def _save(paths: Paths, c: Container, host_config: bool = False) -> None:
    """Write config.v2.json (and hostconfig.json, which changes only at create)."""
    if host_config:
        atomic_write(os.path.join(c.dir, "hostconfig.json"),
                     json.dumps(c.host_config).encode(), 0o600)
    atomic_write(os.path.join(c.dir, "config.v2.json"),
                 json.dumps(c.to_config_v2(paths)).encode(), 0o600)


def load_record(paths: Paths, cid: str) -> Container:
    d = os.path.join(paths.containers, cid)
    try:
        with open(os.path.join(d, "config.v2.json"), "rb") as f:
            doc = json.load(f)
        with open(os.path.join(d, "hostconfig.json"), "rb") as f:
            hc = json.load(f)
    except FileNotFoundError:
        raise ContainerNotFound(f"No such container: {cid}") from None
    return Container.from_config_v2(doc, hc, d)


def all_ids(paths: Paths) -> list[str]:
    try:
        return [n for n in os.listdir(paths.containers) if ID_RE.match(n)]
    except FileNotFoundError:
        return []


def resolve(paths: Paths, ref: str) -> str:
    """A container id from a full id, a unique id prefix or a name (Docker's order)."""
    ids = all_ids(paths)
    if ref in ids:
        return ref
    name = ref.lstrip("/")
    for cid in ids:
        try:
            if load_record(paths, cid).name == name:
                return cid
        except ContainerNotFound:
            continue
    if re.fullmatch(r"[0-9a-f]+", ref):
        matches = [cid for cid in ids if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
    raise ContainerNotFound(f"No such container: {ref}")


def get(paths: Paths, ref: str) -> Container:
    cid = resolve(paths, ref)
    reconcile(paths, cid)
    return load_record(paths, cid)


def list_containers(paths: Paths, all_: bool = False) -> list[Container]:
    out = []
    for cid in all_ids(paths):
        try:
            reconcile(paths, cid)
            c = load_record(paths, cid)
        except ContainerNotFound:
            continue  # removed meanwhile
        if all_ or c.state.running:
            out.append(c)
    out.sort(key=lambda c: c.created, reverse=True)
    return out


def users_of_image(paths: Paths, image_id: str) -> list[str]:
    users = []
    for cid in all_ids(paths):
        try:
            if load_record(paths, cid).image_id == image_id:
                users.append(cid)
        except ContainerNotFound:
            continue
    return users


# --- names --------------------------------------------------------------------------

_ADJECTIVES = ("brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen",
               "lucid", "modest", "nifty", "quirky", "serene", "tender", "vibrant", "zen")
_SURNAMES = ("babbage", "curie", "dijkstra", "euler", "hopper", "kare", "lamarr", "lovelace",
             "noether", "pike", "ritchie", "shannon", "thompson", "torvalds", "turing", "wu")


def _names_in_use(paths: Paths) -> set[str]:
    names = set()
    for cid in all_ids(paths):
        try:
            names.add(load_record(paths, cid).name)
        except ContainerNotFound:
            continue
    return names


def _pick_name(paths: Paths, wanted: str | None) -> str:
    used = _names_in_use(paths)
    if wanted is not None:
        if not NAME_RE.match(wanted):
            raise InvalidArgument(
                f"Invalid container name ({wanted}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = wanted.lstrip("/")
        if name in used:
            owner = next(c for c in all_ids(paths) if load_record(paths, c).name == name)
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                           f'container "{owner}". You have to remove (or rename) that '
                           "container to be able to reuse that name.")
        return name
    while True:
        a, b, n = os.urandom(3)
        name = f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_SURNAMES[b % len(_SURNAMES)]}"
        if name not in used:
            return name
        name += str(n % 100)
        if name not in used:
            return name


def rename(paths: Paths, ref: str, new_name: str) -> Container:
    """Give a container another name (``docker rename``), running or not."""
    if not new_name.lstrip("/"):
        raise InvalidArgument("Neither old nor new names may be empty")
    cid = get(paths, ref).id  # (reconciles first, outside the lock)
    with locks.locked(lock_path(paths, "containers.lock")):
        c = load_record(paths, cid)
        if c.name == new_name.lstrip("/"):
            raise InvalidArgument("Renaming a container with the same name as its current name")
        name = _pick_name(paths, new_name)
        with container_lock(paths, c.id):
            c = load_record(paths, c.id)
            c.name = name
            _save(paths, c)
    return c


# --- create -------------------------------------------------------------------------


def image_store(paths: Paths) -> Any:
    from minidock.image.store import ImageStore

    return ImageStore(paths)


def create(paths: Paths, opts: CreateOptions) -> Container:
    from minidock.engine import images

    image_id, image_config = images.image_for_container(paths, opts.image)
    icfg = image_config.get("config") or {}
    p = opts.process
    entrypoint = p.entrypoint if p.entrypoint is not None else icfg.get("Entrypoint")
    cmd = p.cmd if p.cmd else (None if p.entrypoint is not None else icfg.get("Cmd"))
    args = specgen.command_line(icfg.get("Entrypoint"), icfg.get("Cmd"), p)
    if opts.network not in ("none", "host"):
        raise InvalidArgument(f"network {opts.network} not found (supported: none, host)")
    cid = os.urandom(32).hex()
    hostname = opts.hostname or (os.uname().nodename if opts.network == "host" else cid[:12])
    env = [e for e in icfg.get("Env") or []] + list(p.env)
    config = {
        "Hostname": hostname, "Domainname": "", "User": p.user or icfg.get("User", ""),
        "AttachStdin": p.stdin_open, "AttachStdout": True, "AttachStderr": True,
        "Tty": p.tty, "OpenStdin": p.stdin_open, "StdinOnce": p.stdin_open,
        "Env": env, "Cmd": cmd, "Image": opts.image, "Volumes": None,
        "WorkingDir": p.workdir if p.workdir is not None else icfg.get("WorkingDir", ""),
        "Entrypoint": entrypoint or None, "OnBuild": None,
        "Labels": {**(icfg.get("Labels") or {}), **opts.labels},
    }
    if icfg.get("StopSignal"):
        config["StopSignal"] = icfg["StopSignal"]
    workdir = str(config["WorkingDir"] or "")
    if workdir and not workdir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    host_config = {
        "NetworkMode": opts.network, "AutoRemove": opts.auto_remove, "Privileged": False,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "CgroupnsMode": _cgroupns(),
        "IpcMode": "private", "PidMode": "", "UTSMode": "", "ShmSize": 67108864,
        "Runtime": "minidock", "LogConfig": {"Type": "json-file", "Config": {}},
        "Binds": None, "CapAdd": None, "CapDrop": None, "ReadonlyRootfs": False,
        "SecurityOpt": list(p.security_opt) or None, "Init": None,
    }
    store = image_store(paths)
    with locks.locked(lock_path(paths, "containers.lock")), ExitStack() as undo:
        name = _pick_name(paths, opts.name)
        d = os.path.join(paths.containers, cid)
        os.makedirs(paths.containers, mode=0o710, exist_ok=True)
        os.mkdir(d, 0o710)
        undo.callback(shutil.rmtree, d, True)
        store.create_rw_layer(cid, image_id)
        undo.callback(store.remove_rw_layer, cid)
        atomic_write(os.path.join(d, "hostname"), f"{hostname}\n".encode(), 0o644, durable=False)
        hosts = hostfiles.hosts_file()
        resolv = hostfiles.container_resolv_conf(hostfiles.read_host_resolv_conf())
        if opts.network == "host":
            hosts = _read("/etc/hosts") or hosts
            resolv = hostfiles.read_host_resolv_conf() or resolv
        atomic_write(os.path.join(d, "hosts"), hosts.encode(), 0o644, durable=False)
        atomic_write(os.path.join(d, "resolv.conf"), resolv.encode(), 0o644, durable=False)
        c = Container(id=cid, name=name, created=now_rfc3339(), image_id=image_id,
                      image_ref=opts.image, path=args[0], args=args[1:], config=config,
                      host_config=host_config, dir=d)
        _save(paths, c, host_config=True)
        undo.pop_all()
    return c


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cgroupns() -> str:
    from minidock import cgroups

    return "private" if cgroups.detect_version() == 2 else "host"


# --- start and wait -----------------------------------------------------------------


@contextmanager
def container_lock(paths: Paths, cid: str) -> Iterator[None]:
    """The container's record lock. Taking it creates its file, so when the container is
    gone by the time it is let go (removed meanwhile, or by the holder), the file goes too:
    no lock file outlives its container, whoever raced with rm."""
    path = lock_path(paths, f"{cid}.lock")
    with locks.locked(path):
        try:
            yield
        finally:
            if not os.path.isdir(os.path.join(paths.containers, cid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _bundle_dir(paths: Paths, cid: str) -> str:
    return os.path.join(paths.bundles, cid)


def _read_in_root(root: str, path: str) -> str | None:
    from minidock.linux.fs import read_file_in_root

    data = read_file_in_root(root, path, 4 << 20)
    return None if data is None else data.decode("utf-8", "replace")


def _make_workdir(root: str, workdir: str, uid: int, gid: int) -> None:
    """Docker creates a missing WORKDIR/-w inside the container, owned by its user."""
    from minidock.runtime.rootfs import secure_join

    host = secure_join(root, workdir)
    if os.path.isdir(host):
        return
    rel = os.path.relpath(host, root)
    cur = root
    for part in rel.split("/"):
        cur = os.path.join(cur, part)
        if not os.path.lexists(cur):
            os.mkdir(cur, 0o755)
            os.chown(cur, uid, gid, follow_symlinks=False)


def _build_spec(paths: Paths, c: Container, rootfs: str, console: tuple[int, int] | None
                ) -> dict[str, Any]:
    cfg = c.config
    user = resolve_user(cfg.get("User") or "0", _read_in_root(rootfs, "/etc/passwd"),
                        _read_in_root(rootfs, "/etc/group"))
    workdir = cfg.get("WorkingDir") or "/"
    if workdir != "/":
        _make_workdir(rootfs, workdir, user.uid, user.gid)
    env = specgen.merge_env([], cfg.get("Env") or [], cfg["Hostname"], cfg.get("Tty", False),
                            user.home)
    doc = specgen.base_spec(rootfs, [c.path, *c.args], env, workdir, user, cfg["Hostname"],
                            bool(cfg.get("Tty")))
    options = [
        specgen.with_cgroups_path(f"/minidock/{c.id}"),
        specgen.with_bind(os.path.join(c.dir, "resolv.conf"), "/etc/resolv.conf"),
        specgen.with_bind(os.path.join(c.dir, "hostname"), "/etc/hostname"),
        specgen.with_bind(os.path.join(c.dir, "hosts"), "/etc/hosts"),
        specgen.with_annotations({"org.minidock.container.name": c.name}),
    ]
    if c.host_config.get("NetworkMode") == "host":
        options.append(specgen.with_host_network())
    if c.host_config.get("CgroupnsMode") == "private":
        options.append(specgen.with_cgroup_namespace())
    if console:
        options.append(specgen.with_console_size(*console))
    options.append(specgen.with_security_opts(c.host_config.get("SecurityOpt")))  # last: caps
    return specgen.build(doc, *options)


def _waitpid(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


@dataclass
class Launched:
    """A container whose init runs its command, and our ends of its stdio."""

    pid: int
    master: int = -1  # the pty master (-t)
    pipes: io.PipeIO | None = None  # else: our ends of its stdin/stdout/stderr pipes


def launch(paths: Paths, c: Container, undo: ExitStack, *, interactive: bool,
           console_size: tuple[int, int] | None, kill_with_parent: bool) -> Launched:
    """Mount, spec, bundle, runtime create and start; the record says "running" after it.

    Shared by the foreground start (the CLI stays the container's parent) and the detached
    one (the process that becomes the monitor). The caller holds the record lock and the
    monitor lock, and is about to become (or is) a child subreaper: runtime.create makes
    it one, so the container's init is its child to wait for. Everything made here is
    undone by ``undo`` if the caller fails before it owns the container's end.
    """
    store = image_store(paths)
    # The bundle dir comes first: while it exists, the container holds things on the host,
    # so a launch killed at any later point is seen (and undone) by reconcile.
    bundle = _bundle_dir(paths, c.id)
    os.makedirs(bundle, mode=0o700, exist_ok=True)
    undo.callback(shutil.rmtree, bundle, True)
    trace.note(f"mount the container's filesystem (overlay2 rw layer of {c.short_id})")
    rootfs = store.mount_rw_layer(c.id)
    if trace.enabled():
        trace.note(f"from here on <rootfs> stands for {rootfs}")
        trace.alias(rootfs, "<rootfs>")
        trace.alias(c.id, c.short_id)
    undo.callback(store.unmount_rw_layer, c.id)
    tty = bool(c.config.get("Tty"))
    try:
        doc = _build_spec(paths, c, rootfs, console_size if tty else None)
    except MinidockError as e:
        _record_failed_start(paths, c, e)
        raise
    atomic_write(os.path.join(bundle, "config.json"), json.dumps(doc).encode(), 0o600,
                 durable=False)
    pipes = None
    console_sock: Any = None
    if tty:
        import socket

        console_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        undo.callback(console_sock.close)
        undo.callback(child_sock.close)
        opts = runtime.CreateOptions(console_fd=child_sock.fileno())
    else:
        pipes = io.PipeIO.make(interactive)
        undo.callback(pipes.close)
        opts = runtime.CreateOptions(stdio=pipes.child)
    opts.subreaper = True
    opts.kill_with_parent = kill_with_parent
    trace.note(f"OCI bundle written to {bundle}; the runtime takes over")
    try:
        st = runtime.create(paths.runtime_state, c.id, bundle, opts)
    except MinidockError as e:
        _record_failed_start(paths, c, e)
        raise
    undo.callback(_runtime_delete, paths, c.id)
    launched = Launched(pid=st.pid, pipes=pipes)
    if console_sock is not None:
        import socket

        _, fds, _, _ = socket.recv_fds(console_sock, 1024, 1)
        launched.master = fds[0]
        undo.callback(os.close, launched.master)
    elif pipes is not None:
        pipes.close_child_ends()
    c.state.transition(Status.RUNNING)
    c.state.pid = st.pid
    c.state.started_at = now_rfc3339()
    c.state.exit_code = 0
    c.state.error = ""
    _save(paths, c)
    runtime.start(paths.runtime_state, c.id)
    trace.note(f"container {c.short_id} started: init is host pid {st.pid}")
    return launched


def lock_for_start(paths: Paths, ref: str, undo: ExitStack
                   ) -> tuple[Container, locks.HeldLock, locks.HeldLock]:
    """Take the record lock and the monitor lock of a container that may start now.

    The monitor lock must be taken by the process that will wait for the container's init
    (its open file description is what says "watched"). The caller releases the record
    lock once the record says "running"; both are released by ``undo`` on failure.
    """
    c = get(paths, ref)
    record_lock = locks.HeldLock(lock_path(paths, f"{c.id}.lock"))
    undo.callback(record_lock.release)
    c = load_record(paths, c.id)
    if c.state.status not in (Status.CREATED, Status.EXITED):
        raise Conflict(f"container {c.short_id} is {c.state.status.value}")
    monitor = locks.HeldLock(lock_path(paths, f"{c.id}.monitor"))
    undo.callback(monitor.release)
    return c, record_lock, monitor


def start(paths: Paths, ref: str, interactive: bool = False) -> int:
    """Start a created or exited container attached to our stdio; returns its exit code.

    The calling process stays the container's parent (a child subreaper) until the
    container exits, then records the exit and releases the mount, cgroup and bundle.
    """
    with ExitStack() as undo:
        c, record_lock, _monitor = lock_for_start(paths, ref, undo)
        tty = bool(c.config.get("Tty"))
        launched = launch(paths, c, undo, interactive=interactive,
                          console_size=io.window_size(0) if tty else None,
                          kill_with_parent=True)
        record_lock.release()
        from minidock.engine.jsonlog import JsonFileWriter

        log = JsonFileWriter(log_path(c))  # as Docker: `logs` shows a foreground run too
        undo.callback(log.close)
        if launched.master >= 0:
            io.relay_pty(launched.master, interactive, log=log.write)
            code = _waitpid(launched.pid)
        else:
            assert launched.pipes is not None
            with io.SignalProxy(launched.pid):
                launched.pipes.relay(log=log.write)
                code = _waitpid(launched.pid)
        trace.note(f"container {c.short_id} exited with {code}; cleaning up")
        with container_lock(paths, c.id):
            c = load_record(paths, c.id)
            c.state.transition(Status.EXITED)
            c.state.exit_code = code
            c.state.finished_at = now_rfc3339()
            _save(paths, c)
    return code


def _runtime_delete(paths: Paths, cid: str) -> None:
    try:
        runtime.delete(paths.runtime_state, cid, force=True)
    except ContainerNotFound:
        pass


def _record_failed_start(paths: Paths, c: Container, e: MinidockError) -> None:
    """Docker keeps a container whose command could not start as "created", with the
    error and the exit code (126/127) in its State."""
    c.state.exit_code = e.exit_code
    c.state.error = e.message
    _save(paths, c)


def run(paths: Paths, opts: CreateOptions) -> int:
    c = create(paths, opts)
    try:
        return start(paths, c.id, interactive=opts.process.stdin_open)
    finally:
        if opts.auto_remove:
            remove(paths, c.id, force=True)


# --- reconcile, remove, prune -------------------------------------------------------


def log_path(c: Container) -> str:
    """Docker's json-file log: one JSON object per line (written by the monitor)."""
    return os.path.join(c.dir, f"{c.id}-json.log")


def exit_file(paths: Paths, cid: str) -> str:
    """Written by the monitor when the init is reaped, read by cleanup (or reconcile)."""
    return os.path.join(paths.containers, cid, "monitor-exit.json")


def attach_socket(paths: Paths, cid: str) -> str:
    """The unix socket the monitor of a detached -t container serves `attach` on."""
    return os.path.join(paths.run_root, "attach", f"{cid}.sock")


def _read_exit_file(paths: Paths, cid: str) -> tuple[int, str] | None:
    try:
        with open(exit_file(paths, cid), "rb") as f:
            doc = json.load(f)
        return int(doc["ExitCode"]), str(doc["FinishedAt"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _release(paths: Paths, cid: str) -> None:
    """What a run holds on the host: runtime state + cgroup, the mount, the bundle."""
    _runtime_delete(paths, cid)
    image_store(paths).unmount_rw_layer(cid)
    shutil.rmtree(_bundle_dir(paths, cid), ignore_errors=True)
    for path in (attach_socket(paths, cid), exit_file(paths, cid)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _record_exit(paths: Paths, c: Container, code: int, finished_at: str, error: str = ""
                 ) -> None:
    c.state.transition(Status.EXITED)
    c.state.exit_code = code
    c.state.error = error
    c.state.finished_at = finished_at
    _save(paths, c)


def restart_marker(paths: Paths, cid: str) -> str:
    """Present while `restart` stops a container it is about to start again."""
    return os.path.join(paths.containers, cid, "restarting")


def _auto_remove(paths: Paths, c: Container) -> bool:
    """--rm applies when the container ends, not when `restart` stops it (moby turns
    AutoRemove off for the stop of a restart)."""
    return bool(c.host_config.get("AutoRemove")) and not os.path.exists(
        restart_marker(paths, c.id))


def reconcile(paths: Paths, cid: str) -> None:
    """Make the record tell the truth when whoever watched the container died.

    A monitor that wrote its exit file before it died (or whose cleanup died) leaves the
    real exit code; without one, the end was seen by nobody: Docker's 255.
    """
    try:
        c = load_record(paths, cid)
    except ContainerNotFound:
        return
    if not c.state.running:
        # a start killed before the record said "running" (or after it said "exited"):
        # its bundle dir is still there, and maybe a mount, a cgroup, an init
        if os.path.isdir(_bundle_dir(paths, cid)) and not locks.is_held(
                lock_path(paths, f"{cid}.monitor")):
            with container_lock(paths, cid):
                if not locks.is_held(lock_path(paths, f"{cid}.monitor")):
                    _release(paths, cid)
        return
    if locks.is_held(lock_path(paths, f"{cid}.monitor")):
        _align_paused(paths, c)
        return  # someone is watching it: the rest of the record is theirs to update
    with container_lock(paths, cid):
        c = load_record(paths, cid)
        if not c.state.running or locks.is_held(lock_path(paths, f"{cid}.monitor")):
            return
        seen = _read_exit_file(paths, cid)
        _release(paths, cid)
        if seen is not None:
            _record_exit(paths, c, seen[0], seen[1])
        else:
            _record_exit(paths, c, EXIT_UNKNOWN, now_rfc3339(),
                         "the process that monitored the container died")
    if _auto_remove(paths, c):
        remove(paths, cid, force=True)


def _align_paused(paths: Paths, c: Container) -> None:
    """A pause or unpause killed between the runtime and the record: the runtime's word
    (which says "paused" from before the freeze until after the thaw) wins."""
    def runtime_paused() -> bool | None:
        try:
            st = runtime.load(paths.runtime_state, c.id)
        except MinidockError:
            return None
        status = st.status(os.path.join(paths.runtime_state, c.id))
        return None if status not in ("running", "paused") else status == "paused"

    paused = runtime_paused()
    if paused is None or paused == (c.state.status == Status.PAUSED):
        return
    with container_lock(paths, c.id):  # (a pause in progress holds it: wait, look again)
        c = load_record(paths, c.id)
        paused = runtime_paused()
        if paused is None or not c.state.running or paused == (c.state.status == Status.PAUSED):
            return
        c.state.transition(Status.PAUSED if paused else Status.RUNNING)
        _save(paths, c)


def cleanup(paths: Paths, cid: str) -> None:
    """`container cleanup`: what the monitor execs once the container's init is reaped.

    This process inherited the monitor lock (its fd survived both execs), so nobody else
    reconciles the container meanwhile; the lock goes when this process exits.
    """
    with container_lock(paths, cid):
        try:
            c = load_record(paths, cid)
        except ContainerNotFound:
            return
        seen = _read_exit_file(paths, cid)
        _release(paths, cid)
        if c.state.running:
            if seen is None:
                _record_exit(paths, c, EXIT_UNKNOWN, now_rfc3339(),
                             "the monitor wrote no exit status")
            else:
                _record_exit(paths, c, seen[0], seen[1])
    if _auto_remove(paths, c):
        remove(paths, cid, force=True)


# --- stop, kill, wait ---------------------------------------------------------------


def parse_signal(value: str | int) -> int:
    """A signal as Docker takes it: 9, KILL, SIGKILL, sigkill, SIGRTMIN+3."""
    import signal as _signal

    text = str(value).strip().upper()
    if text.isdigit():
        num = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        m = re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)
        if m:
            base = _signal.SIGRTMIN if m.group(1) == "IN" else _signal.SIGRTMAX
            num = int(base) + int(m.group(2) or 0)
        else:
            try:
                num = int(_signal.Signals[name])
            except KeyError:
                raise InvalidArgument(f"Invalid signal: {value}") from None
    if not 0 < num <= int(_signal.SIGRTMAX):
        raise InvalidArgument(f"Invalid signal: {value}")
    return num


def _init_alive(paths: Paths, cid: str) -> bool:
    try:
        st = runtime.load(paths.runtime_state, cid)
    except MinidockError:
        return False
    return st.status(os.path.join(paths.runtime_state, cid)) in runtime.ALIVE


def wait_unwatched(paths: Paths, cid: str, timeout: float | None = None) -> bool:
    """Wait until nobody holds the container's monitor lock (its end is recorded)."""
    import fcntl

    try:
        fd = os.open(lock_path(paths, f"{cid}.monitor"), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
    finally:
        os.close(fd)


def _wait_init_gone(paths: Paths, cid: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _init_alive(paths, cid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _signal_init(paths: Paths, c: Container, sig: int) -> None:
    """Signal the init; a paused container is thawed after a SIGKILL or its stop signal so
    the signal is taken (moby's rule), and its record says "running" again."""
    runtime.kill(paths.runtime_state, c.id, sig)
    stop_sig = parse_signal(c.config.get("StopSignal") or "SIGTERM")
    if sig not in (9, stop_sig):
        return
    with container_lock(paths, c.id):
        c2 = load_record(paths, c.id)
        if c2.state.status != Status.PAUSED:
            return
        try:
            runtime.resume(paths.runtime_state, c.id)
        except Conflict:
            pass  # not paused at the runtime level (a pause that died half-way)
        c2.state.transition(Status.RUNNING)
        _save(paths, c2)


def kill(paths: Paths, ref: str, sig: str | int = "KILL") -> Container:
    """Send a signal to the container's init (Docker's `kill`: no waiting)."""
    num = parse_signal(sig)
    c = get(paths, ref)
    if not c.state.running or not _init_alive(paths, c.id):
        raise Conflict(f"cannot kill container: {ref}: container {c.id} is not running")
    _signal_init(paths, c, num)
    return c


def stop(paths: Paths, ref: str, timeout: float | None = None, signal: str | None = None
         ) -> Container:
    """``signal``, else the image's STOPSIGNAL, else SIGTERM; SIGKILL if the init outlives
    ``timeout`` seconds (default 10); returns once the exit is recorded."""
    sig = parse_signal(signal) if signal else None
    c = get(paths, ref)
    if not c.state.running:
        return c
    if sig is None:
        sig = parse_signal(c.config.get("StopSignal") or "SIGTERM")
    wait = 10.0 if timeout is None else max(0.0, timeout)
    try:
        _signal_init(paths, c, sig)
    except (MinidockError, ProcessLookupError):
        pass  # already on its way out
    if not _wait_init_gone(paths, c.id, wait):
        try:
            _signal_init(paths, c, 9)
        except (MinidockError, ProcessLookupError):
            pass
    wait_unwatched(paths, c.id)
    reconcile(paths, c.id)
    return c


def pause(paths: Paths, ref: str) -> Container:
    """Freeze every process of a running container (``docker pause``)."""
    return _set_paused(paths, ref, True)


def unpause(paths: Paths, ref: str) -> Container:
    """Thaw a paused container (``docker unpause``)."""
    return _set_paused(paths, ref, False)


def _set_paused(paths: Paths, ref: str, paused: bool) -> Container:
    c = get(paths, ref)
    with container_lock(paths, c.id):
        c = load_record(paths, c.id)
        if paused:
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING or not _init_alive(paths, c.id):
                raise Conflict(f"Container {c.id} is not running")
            trace.note(f"pause {c.short_id}: freeze its cgroup")
            runtime.pause(paths.runtime_state, c.id)
        else:
            if c.state.status != Status.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            trace.note(f"unpause {c.short_id}: thaw its cgroup")
            runtime.resume(paths.runtime_state, c.id)
        c.state.transition(Status.PAUSED if paused else Status.RUNNING)
        _save(paths, c)
    return c


def wait(paths: Paths, ref: str) -> int:
    """Block until the container is not running; its exit code.

    The monitor's exit file is watched too: a --rm container's record is gone once its
    cleanup has run, and the file (written before the cleanup starts) is then the only
    place its exit code was seen.
    """
    c = get(paths, ref)
    code = c.state.exit_code
    if c.state.running:
        while not wait_unwatched(paths, c.id, timeout=0.02):
            seen = _read_exit_file(paths, c.id)
            if seen is not None:
                code = seen[0]
        reconcile(paths, c.id)
    try:
        return load_record(paths, c.id).state.exit_code
    except ContainerNotFound:
        return code


def remove(paths: Paths, ref: str, force: bool = False) -> str:
    try:
        c = get(paths, ref)
    except ContainerNotFound:
        raise
    if c.state.running:
        if not force:
            raise Conflict(
                f"cannot remove container \"/{c.name}\": container is running: stop the "
                "container before removing or force remove")
        try:
            _signal_init(paths, c, 9)
        except MinidockError:
            pass
        # the monitor (a foreground run, or a detached container's monitor and then its
        # cleanup) records the exit; wait for it to let go
        wait_unwatched(paths, c.id)
        reconcile(paths, c.id)
    store = image_store(paths)
    with locks.locked(lock_path(paths, "containers.lock")), container_lock(paths, c.id):
        if not os.path.isdir(c.dir):
            return c.id
        _runtime_delete(paths, c.id)
        shutil.rmtree(_bundle_dir(paths, c.id), ignore_errors=True)
        store.unmount_rw_layer(c.id)
        store.remove_rw_layer(c.id)
        shutil.rmtree(c.dir)
    for suffix in (".lock", ".monitor"):
        try:
            os.unlink(lock_path(paths, c.id + suffix))
        except FileNotFoundError:
            pass
    return c.id


def prune(paths: Paths, filters: dict[str, list[str]] | None = None
          ) -> tuple[list[str], int]:
    """``container prune``: remove stopped containers (``until=``: created before then;
    ``label=KEY[=VALUE]``: with every such label); (ids removed, bytes of their rw layers)."""
    from minidock.engine import images

    filters = filters or {}
    until = (images.until_timestamp(filters["until"][-1], time.time())
             if "until" in filters else None)
    removed, reclaimed = [], 0
    store = image_store(paths)
    for c in list_containers(paths, all_=True):
        if until is not None and (images.parse_time(c.created) or 0.0) >= until:
            continue
        labels = c.config.get("Labels") or {}
        if not all(images.label_matches(labels, w) for w in filters.get("label", [])):
            continue
        if c.state.status in (Status.EXITED, Status.CREATED, Status.DEAD):
            try:
                reclaimed += store.rw_layer_size(c.id)
            except (AttributeError, OSError):
                pass
            try:
                remove(paths, c.id)
            except ContainerNotFound:
                continue
            removed.append(c.id)
    return removed, reclaimed


def inspect(paths: Paths, ref: str) -> dict[str, Any]:
    c = get(paths, ref)
    doc = c.to_config_v2(paths)
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": doc["State"],
        "Image": c.image_id,
        "ResolvConfPath": doc["ResolvConfPath"],
        "HostnamePath": doc["HostnamePath"],
        "HostsPath": doc["HostsPath"],
        "LogPath": doc["LogPath"],
        "Name": "/" + c.name,
        "RestartCount": 0,
        "Driver": DRIVER,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": c.host_config,
        "GraphDriver": {"Name": DRIVER, "Data": image_store(paths).rw_layer_metadata(c.id)},
        "Mounts": [],
        "Config": c.config,
        "NetworkSettings": doc["NetworkSettings"],
    }
