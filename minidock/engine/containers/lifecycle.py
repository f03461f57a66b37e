"""A container's life after create: launch and start it, then stop, kill, pause and wait.

    launch   mount the rw layer, write the OCI bundle, runtime create, record "running",
             runtime start; shared by the foreground start (the CLI stays the init's
             parent and waits for it) and the detached one (containers.monitor)
    start    the foreground start: relay stdio, wait, record the exit; run = create + start
    stop     the stop signal, SIGKILL after the timeout, then wait for the recorded exit
    kill     a signal (SIGKILL: until the exit is recorded); pause/unpause: the freezer
    wait     until the record says the container ended; its exit code

Each state change is made under the container's record lock and checked by
:meth:`State.transition`. The process that waits for the init holds the monitor lock from
before the runtime creates it until the exit is recorded.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack

from minidock.engine import spec as specgen
from minidock.engine.containers import creation, reconciler, resources, signals, store
from minidock.engine.containers.creation import CreateOptions
from minidock.engine.containers.record import (
    BRIDGE_MODES,
    Container,
    Status,
    log_path,
    network_names,
    now_rfc3339,
    on_a_bridge,
)
from minidock.engine.runtime import Stdio
from minidock.engine.spec import hostfiles
from minidock.engine.spec.user import resolve_user
from minidock.engine.stdio import io
from minidock.errors import Conflict, ContainerNotFound, InvalidArgument, MinidockError
from minidock.linux import flock, timing, trace
from minidock.paths import Paths
from minidock.records import record
from minidock.storage.atomic import atomic_write

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


@record
class Launched:
    """A container whose init runs its command, and our ends of its stdio."""

    pid: int
    master: int = -1  # the pty master (-t)
    pipes: io.PipeIO | None = None  # else: our ends of its stdin/stdout/stderr pipes
    #: the published host ports' reservation (net.ports.Reservation), held by whoever waits
    #: for the init: closed with the foreground run, handed to the monitor otherwise
    ports: Any = None


def launch(paths: Paths, c: Container, undo: ExitStack, *, interactive: bool,
           console_size: tuple[int, int] | None, kill_with_parent: bool,
           network: Any = None) -> Launched:
    """Mount, spec, bundle, runtime create and start; the record says "running" after it.

    Shared by the foreground start (the CLI stays the container's parent) and the detached
    one (the process that becomes the monitor). The caller holds the record lock and the
    monitor lock, and is about to become (or is) a child subreaper: runtime.create makes
    it one, so the container's init is its child to wait for. Everything made here is
    undone by ``undo`` if the caller fails before it owns the container's end.
    """
    setup, reservation, endpoint_id = None, None, ""
    if on_a_bridge(str(c.host_config.get("NetworkMode") or "default")):
        setup, reservation, endpoint_id = _begin_network(paths, c, undo, network)
    layers = store.image_store(paths)
    # The bundle dir comes first: while it exists, the container holds things on the host,
    # so a launch killed at any later point is seen (and undone) by reconcile.
    bundle = store.bundle_dir(paths, c.id)
    os.makedirs(bundle, mode=0o700, exist_ok=True)
    undo.callback(shutil.rmtree, bundle, True)
    from minidock.engine.spec import remap

    idmap, copy = remap.for_container(c.host_config) or (None, False)
    trace.note(f"mount the container's filesystem (overlay2 rw layer of {c.short_id})"
               + (", idmapped: --userns remap" if idmap else ""))
    with timing.phase("rootfs mount (overlay)"):
        rootfs = layers.mount_rw_layer(c.id, idmap=idmap, copy=copy)
    if trace.enabled():
        trace.note(f"from here on <rootfs> stands for {rootfs}")
        trace.alias(rootfs, "<rootfs>")
        trace.alias(c.id, c.short_id)
    undo.callback(layers.unmount_rw_layer, c.id)
    tty = bool(c.config.get("Tty"))
    if c.host_config.get("IpcMode") == "shareable":
        _mount_shm(paths, c, undo)
    if c.mount_points:  # (a type/device/o volume gets mounted by the spec's build)
        from minidock.engine.containers.mounts import release_volumes

        undo.callback(release_volumes, paths, c.id)
    try:
        with timing.phase("spec (config.json)"):
            doc = _build_spec(paths, c, rootfs, console_size if tty else None, idmap)
    except MinidockError as e:
        _record_failed_start(paths, c, e)
        raise
    atomic_write(os.path.join(bundle, "config.json"), json.dumps(doc).encode(), 0o600,
                 durable=False)
    rt = store.runtime_of(paths, c)
    pipes = None
    if tty:
        stdio = Stdio(tty=True)
    else:
        pipes = io.PipeIO.make(interactive)
        undo.callback(pipes.close)
        stdio = Stdio(fds=pipes.child)
    trace.note(f"OCI bundle written to {bundle}; the runtime ({rt.name}) takes over")
    try:
        with timing.phase(f"runtime create ({rt.name})"):
            st = rt.create(c.id, bundle, stdio, kill_with_parent=kill_with_parent)
    except MinidockError as e:
        _record_failed_start(paths, c, e)
        raise
    undo.callback(reconciler.runtime_delete, paths, c.id)
    c.endpoint = {}
    if setup is not None:
        from minidock import net

        trace.note("put the container on the default bridge, before its command starts")
        undo.callback(net.release, c.id)
        forwards = reservation.forwards if reservation is not None else []
        asked = c.networking.get("IPAMConfig") or {}
        try:
            with timing.phase("network (veth, address, nft)"):
                c.endpoint = setup.attach(c.id, st.pid, forwards,
                                          ip=asked.get("IPv4Address"), names=network_names(c),
                                          hosts=os.path.join(c.dir, "hosts"))
        except MinidockError as e:
            _record_failed_start(paths, c, e, code=128)
            raise
        c.endpoint["EndpointID"] = endpoint_id
        if forwards or c.config.get("ExposedPorts"):
            from minidock.net import ports

            c.endpoint["Ports"] = ports.settings_ports(c.config, forwards)
        hostfiles.rewrite_hosts(os.path.join(c.dir, "hosts"), c.endpoint["IPAddress"],
                                str(c.config.get("Hostname") or c.short_id),
                                _extra_hosts(c))
        for name in list(c.extra):  # and the networks `network connect` added
            c.extra[name] = connect_running(paths, c, name, st.pid)
    launched = Launched(pid=st.pid, pipes=pipes, master=st.master, ports=reservation)
    if st.master >= 0:
        undo.callback(os.close, st.master)
    if pipes is not None:
        pipes.close_child_ends()
    c.state.transition(Status.RUNNING)
    c.state.pid = st.pid
    c.state.started_at = now_rfc3339()
    c.state.exit_code = 0
    c.state.error = ""
    c.state.oom_killed = False
    store.save(paths, c)
    with timing.phase("exec (runtime start)"):
        rt.start(c.id)
    if timing.enabled():  # (the record lock is still ours: nobody records an exit meanwhile)
        c.state.timings = dict(timing.entries())
        store.save(paths, c)
    trace.note(f"container {c.short_id} started: init is host pid {st.pid}")
    return launched


def _mount_shm(paths: Paths, c: Container, undo: ExitStack) -> None:
    """--ipc shareable: /dev/shm is a tmpfs the engine mounts on the host (Docker's
    containers/<id>/mounts/shm), so a container that joins this one's IPC namespace can be
    given the same /dev/shm. Unmounted when the container's run is released."""
    from minidock import linux

    shm = store.shm_dir(c)
    os.makedirs(shm, 0o700, exist_ok=True)
    size = int(c.host_config.get("ShmSize") or 67108864)
    linux.mount("shm", shm, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                f"mode=1777,size={size}", why="--ipc shareable: a /dev/shm others may join")
    undo.callback(store.unmount_shm, paths, c.id)


def lock_for_start(paths: Paths, ref: str, undo: ExitStack
                   ) -> tuple[Container, flock.HeldLock, flock.HeldLock]:
    """Take the record lock and the monitor lock of a container that may start now.

    The monitor lock must be taken by the process that will wait for the container's init
    (its open file description is what says "watched"). The caller releases the record
    lock once the record says "running"; both are released by ``undo`` on failure.
    """
    c = reconciler.get(paths, ref)
    record_lock = flock.HeldLock(store.lock_path(paths, f"{c.id}.lock"))
    undo.callback(record_lock.release)
    c = store.load_record(paths, c.id)
    if c.state.status not in (Status.CREATED, Status.EXITED):
        raise Conflict(f"container {c.short_id} is {c.state.status.value}")
    monitor = flock.HeldLock(store.lock_path(paths, f"{c.id}.monitor"))
    undo.callback(monitor.release)
    return c, record_lock, monitor


def start(paths: Paths, ref: str, interactive: bool = False, *, stdout: int = 1,
          stderr: int = 2, kill_on_interrupt: bool = False, network: Any = None) -> int:
    """Start a created or exited container attached to our stdio; returns its exit code.

    The calling process stays the container's parent (a child subreaper) until the
    container exits, then records the exit and releases the mount, cgroup and bundle.
    Its output goes to ``stdout`` and ``stderr``. Signals a user sends us are passed on to
    the container's init; with ``kill_on_interrupt`` (a build's RUN) SIGINT, SIGTERM and
    SIGHUP kill it instead and raise KeyboardInterrupt once it is gone and released.
    ``network`` is a bridge helper the caller began already (net.begin), else launch's.
    """
    with ExitStack() as undo:
        if network is not None:
            undo.callback(network.abandon)
        c, record_lock, _monitor = lock_for_start(paths, ref, undo)
        tty = bool(c.config.get("Tty"))
        launched = launch(paths, c, undo, interactive=interactive,
                          console_size=io.window_size(0) if tty else None,
                          kill_with_parent=True, network=network)
        record_lock.release()
        from minidock.engine.stdio.jsonlog import JsonFileWriter

        log = JsonFileWriter(log_path(c))  # as Docker: `logs` shows a foreground run too
        undo.callback(log.close)
        interrupted = False
        if launched.master >= 0:
            io.relay_pty(launched.master, interactive, log=log.write)
            code = _waitpid(launched.pid)
        else:
            assert launched.pipes is not None
            proxy = io.KillOnInterrupt if kill_on_interrupt else io.SignalProxy
            with proxy(launched.pid) as forwarding:
                launched.pipes.relay(stdout=stdout, stderr=stderr, log=log.write)
                code = _waitpid(launched.pid)
            interrupted = forwarding.interrupted
        trace.note(f"container {c.short_id} exited with {code}; cleaning up")
        with store.container_lock(paths, c.id):
            c = store.load_record(paths, c.id)
            c.state.transition(Status.EXITED)
            c.state.exit_code = code
            c.state.finished_at = now_rfc3339()
            c.state.oom_killed = reconciler.oom_killed(c.id)  # (the cgroup goes with undo)
            store.save(paths, c)
        if interrupted:
            raise KeyboardInterrupt
    return code


def run(paths: Paths, opts: CreateOptions) -> int:
    setup = None
    if on_a_bridge(opts.network):
        from minidock import net

        try:  # the bridge gets ready while the container is created
            setup = net.begin(network_spec(paths, opts.network))
        except MinidockError:
            setup = None  # no such network: create says so, in its words
    try:
        c = creation.create(paths, opts)
    except BaseException:
        if setup is not None:
            setup.abandon()
        raise
    try:
        return start(paths, c.id, interactive=opts.process.stdin_open, network=setup)
    finally:
        if opts.auto_remove:  # (its anonymous volumes too, as Docker's --rm)
            reconciler.remove(paths, c.id, force=True, volumes=True)


def kill(paths: Paths, ref: str, sig: str | int = "KILL") -> Container:
    """Send a signal to the container's init. SIGKILL returns once the container's end is
    recorded (as Docker's daemon waits for it), so a `ps` right after no longer lists it;
    any other signal returns at once."""
    num = signals.parse_signal(sig)
    c = reconciler.get(paths, ref)
    if not c.state.running or not signals.init_alive(paths, c.id):
        raise Conflict(f"cannot kill container: {ref}: container {c.id} is not running")
    signals.signal_init(paths, c, num)
    if num == 9:
        signals.wait_unwatched(paths, c.id)
        reconciler.reconcile(paths, c.id)
    return c


def stop(paths: Paths, ref: str, timeout: float | None = None, signal: str | None = None
         ) -> Container:
    """``signal``, else the image's STOPSIGNAL, else SIGTERM; SIGKILL if the init outlives
    ``timeout`` seconds (default 10); returns once the exit is recorded."""
    sig = signals.parse_signal(signal) if signal else None
    c = reconciler.get(paths, ref)
    if not c.state.running:
        return c
    if sig is None:
        sig = signals.parse_signal(c.config.get("StopSignal") or "SIGTERM")
    wait = 10.0 if timeout is None else max(0.0, timeout)
    try:
        signals.signal_init(paths, c, sig)
    except (MinidockError, ProcessLookupError):
        pass  # already on its way out
    if not signals.wait_init_gone(paths, c.id, wait):
        try:
            signals.signal_init(paths, c, 9)
        except (MinidockError, ProcessLookupError):
            pass
    signals.wait_unwatched(paths, c.id)
    reconciler.reconcile(paths, c.id)
    return c


def update_limits(paths: Paths, ref: str, given: dict[str, Any]) -> list[str]:
    """``docker update``: new resource limits (``given``: HostConfig fields from
    resources.parse_flags) in the record and, while the container runs, in its cgroup.
    Docker's warnings for what this host cannot limit."""
    from minidock import cgroups
    from minidock.oci.runtime import parse_resources

    c = reconciler.get(paths, ref)
    with store.container_lock(paths, c.id):
        c = store.load_record(paths, c.id)
        try:
            fields, warnings = resources.for_update(c.host_config, given, cgroups.features())
            if c.state.running:
                limits = parse_resources(resources.to_oci(fields))
                trace.note(f"update {c.short_id}: new limits in its cgroup")
                cgroups.new_manager(store.cgroups_path(c.id)).apply_resources(limits)
        except MinidockError as e:
            raise MinidockError(f"Cannot update container {c.id}: {e.message}",
                                hint=e.hint) from None
        c.host_config.update(fields)
        store.save(paths, c, host_config=True)
    return warnings


def pause(paths: Paths, ref: str) -> Container:
    """Freeze every process of a running container (``docker pause``)."""
    return _set_paused(paths, ref, True)


def unpause(paths: Paths, ref: str) -> Container:
    """Thaw a paused container (``docker unpause``)."""
    return _set_paused(paths, ref, False)


def _set_paused(paths: Paths, ref: str, paused: bool) -> Container:
    c = reconciler.get(paths, ref)
    with store.container_lock(paths, c.id):
        c = store.load_record(paths, c.id)
        if paused:
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING or not signals.init_alive(paths, c.id):
                raise Conflict(f"Container {c.id} is not running")
            trace.note(f"pause {c.short_id}: freeze its cgroup")
            store.runtime_of(paths, c).pause(c.id)
        else:
            if c.state.status != Status.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            trace.note(f"unpause {c.short_id}: thaw its cgroup")
            store.runtime_of(paths, c).resume(c.id)
        c.state.transition(Status.PAUSED if paused else Status.RUNNING)
        store.save(paths, c)
    return c


def wait(paths: Paths, ref: str) -> int:
    """Block until the container is not running; its exit code.

    The monitor's exit file is watched too: a --rm container's record is gone once its
    cleanup has run, and the file (written before the cleanup starts) is then the only
    place its exit code was seen.
    """
    c = reconciler.get(paths, ref)
    code = c.state.exit_code
    if c.state.running:
        while not signals.wait_unwatched(paths, c.id, timeout=0.02):
            seen = store.read_exit_file(paths, c.id)
            if seen is not None:
                code = seen[0]
        reconciler.reconcile(paths, c.id)
    try:
        return store.load_record(paths, c.id).state.exit_code
    except ContainerNotFound:
        return code


def _read_in_root(root: str, path: str) -> str | None:
    from minidock.linux.fs import read_file_in_root

    data = read_file_in_root(root, path, 4 << 20)
    return None if data is None else data.decode("utf-8", "replace")


def _make_workdir(root: str, workdir: str, uid: int, gid: int, idmap: Any = None) -> None:
    """Docker creates a missing WORKDIR/-w inside the container, owned by its user. On an
    idmapped rootfs (--userns remap) as the container's root, with the ids as the mount
    shows them: the host's root is an id that mount cannot store."""
    from minidock.linux.fs import make_dirs_in_root

    if idmap is None:
        make_dirs_in_root(root, workdir, 0o755, uid, gid)
        return
    from minidock import linux
    from minidock.storage.shifted import shift_of

    host = shift_of(idmap)
    with linux.fs_ids(*host(0, 0), why="create -w in the idmapped rootfs"):
        make_dirs_in_root(root, workdir, 0o755, *host(uid, gid))


def _build_spec(paths: Paths, c: Container, rootfs: str, console: tuple[int, int] | None,
                idmap: Any = None) -> dict[str, Any]:
    cfg = c.config
    user = resolve_user(cfg.get("User") or "0", _read_in_root(rootfs, "/etc/passwd"),
                        _read_in_root(rootfs, "/etc/group"))
    workdir = cfg.get("WorkingDir") or "/"
    if workdir != "/":
        _make_workdir(rootfs, workdir, user.uid, user.gid, idmap)
    env = specgen.merge_env([], cfg.get("Env") or [], cfg["Hostname"], cfg.get("Tty", False),
                            user.home)
    doc = specgen.base_spec(rootfs, [c.path, *c.args], env, workdir, user, cfg["Hostname"],
                            bool(cfg.get("Tty")))
    mode = str(c.host_config.get("NetworkMode") or "")
    files = c.dir
    joined = _joined(paths, mode)
    if joined is not None:  # the other's netns, and its hostname, hosts and resolv.conf
        files = joined.dir
    options = [
        specgen.with_cgroups_path(store.cgroups_path(c.id)),
        specgen.with_bind(os.path.join(files, "resolv.conf"), "/etc/resolv.conf"),
        specgen.with_bind(os.path.join(files, "hostname"), "/etc/hostname"),
        specgen.with_bind(os.path.join(files, "hosts"), "/etc/hosts"),
        specgen.with_annotations({"org.minidock.container.name": c.name}),
    ]
    if mode == "host":
        options.append(specgen.with_host_network())
    if joined is not None:
        options.append(specgen.with_network_namespace(f"/proc/{joined.state.pid}/ns/net"))
    if c.host_config.get("CgroupnsMode") == "private":
        options.append(specgen.with_cgroup_namespace())
    options += _sharing(paths, c, rootfs)
    if console:
        options.append(specgen.with_console_size(*console))
    if c.mount_points or c.host_config.get("Tmpfs"):
        from minidock.engine.containers import mounts

        extra = mounts.for_start(c.mount_points, c.host_config.get("Tmpfs"), rootfs, paths)
        options.append(specgen.with_mounts(extra))
        propagation = mounts.root_propagation(extra)
        if propagation:
            options.append(specgen.with_root_propagation(propagation))
    if c.host_config.get("Init"):
        from minidock.engine.containers.monitor import init_binary

        options.append(specgen.with_init(init_binary()))
    if c.host_config.get("ReadonlyRootfs"):
        options.append(specgen.with_readonly_rootfs())
    limits = resources.to_oci(c.host_config)
    if limits:
        options.append(specgen.with_resources(limits))
    hc = c.host_config
    privileged = bool(hc.get("Privileged"))
    if privileged or hc.get("CapAdd") or hc.get("CapDrop"):
        from minidock.engine.spec import privileges

        options.append(privileges.with_capabilities(privileges.capabilities(
            hc.get("CapAdd"), hc.get("CapDrop"), privileged)))
    if hc.get("Devices") or hc.get("DeviceCgroupRules"):
        from minidock.engine.spec import privileges

        options.append(privileges.with_devices(hc.get("Devices") or [],
                                               hc.get("DeviceCgroupRules") or []))
    options.append(specgen.with_security_opts(hc.get("SecurityOpt")))  # after the caps
    if privileged:
        from minidock.engine.spec import privileges

        options.append(privileges.with_privileged())  # last: no seccomp, whatever the opts
    if idmap is not None:
        from minidock.engine.spec import remap

        options.append(remap.with_userns(
            idmap, (paths.containers, os.path.join(paths.root, "volumes")),
            host_network=mode == "host",
            host_ipc=hc.get("IpcMode") == "host"))
    return specgen.build(doc, *options)


def _sharing(paths: Paths, c: Container, rootfs: str) -> list[specgen.SpecOption]:
    """--pid, --ipc, --uts, --shm-size, --ulimit, --sysctl, --group-add."""
    from minidock.engine.spec import sharing

    hc = c.host_config
    out = []
    for key, kind, what in (("PidMode", "pid", "PID"), ("IpcMode", "ipc", "IPC"),
                            ("UTSMode", "uts", "UTS")):
        mode = str(hc.get(key) or "")
        if mode == "host":
            out.append(sharing.with_namespace(kind, None))
        elif mode.startswith("container:"):
            other = reconciler.get(paths, mode[len("container:"):])
            if not other.state.running:
                raise Conflict(f"cannot join {what} of a non running container: {other.id}")
            out.append(sharing.with_namespace(kind, f"/proc/{other.state.pid}/ns/{kind}"))
            if kind == "ipc":  # and its /dev/shm, which only a shareable one has on the host
                donor_shm = store.shm_dir(other)
                if not os.path.ismount(donor_shm):
                    raise Conflict(f"can't join IPC of container {other.id}: non-shareable IPC "
                                   "(hint: use IpcMode:shareable for the donor container)")
                out.append(sharing.with_shm_from(donor_shm))
    ipc = str(hc.get("IpcMode") or "")
    if ipc == "shareable":  # (mounted by launch)
        out.append(sharing.with_shm_from(store.shm_dir(c)))
    shm = int(hc.get("ShmSize") or 67108864)
    if ipc == "none":  # Docker: an IPC namespace of its own and no /dev/shm at all
        out.append(sharing.without_shm())
    elif ipc == "shareable" or ipc.startswith("container:"):
        pass
    elif ipc == "host" or shm != 67108864:
        out.append(sharing.with_shm(shm, host=ipc == "host"))
    if hc.get("Ulimits"):
        out.append(sharing.with_rlimits(hc["Ulimits"]))
    if hc.get("Sysctls"):
        out.append(sharing.with_sysctls(hc["Sysctls"]))
    if hc.get("GroupAdd"):
        gids = sharing.group_ids(hc["GroupAdd"], _read_in_root(rootfs, "/etc/group"))

        def add_groups(spec: dict[str, Any]) -> None:
            user = spec["process"]["user"]
            user["additionalGids"] = [*user.get("additionalGids", []),
                                      *(g for g in gids if g not in user.get(
                                          "additionalGids", []))]
        out.append(add_groups)
    return out


def connect_running(paths: Paths, c: Container, network: str, pid: int) -> dict[str, Any]:
    """Put the running container (init ``pid``) on one more user network: an ethN, an
    address, its names there; the network's EndpointSettings for the record."""
    from minidock import net

    spec = network_spec(paths, network)
    if spec is None:
        raise InvalidArgument(f"minidock connects user-defined networks only: {network}")
    asked = c.extra.get(network) or {}
    setup = net.begin(spec)
    try:
        ep = setup.attach(c.id, pid, [], ip=(asked.get("IPAMConfig") or {}).get("IPv4Address"),
                          names=network_names(c, network), hosts=os.path.join(c.dir, "hosts"),
                          connect=True)
    finally:
        setup.abandon()
    keep = ("NetworkID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")
    return {**{k: v for k, v in asked.items() if k in ("IPAMConfig", "Aliases")},
            **{k: ep[k] for k in keep if k in ep}, "EndpointID": os.urandom(32).hex()}


def _extra_hosts(c: Container) -> list[tuple[str, str]]:
    """The --add-host entries as the hosts file written at create holds them (host-gateway
    resolved then)."""
    wanted = {v.partition(":")[0] for v in c.host_config.get("ExtraHosts") or []}
    out = []
    try:
        with open(os.path.join(c.dir, "hosts"), encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2 and fields[1] in wanted:
                    out.append((fields[1], fields[0]))
                    wanted.discard(fields[1])
    except OSError:
        pass
    return out


def _joined(paths: Paths, mode: str) -> Container | None:
    """--network container:X: X, which must run (its init's netns is the one joined)."""
    if not mode.startswith("container:"):
        return None
    target = reconciler.get(paths, mode[len("container:"):])
    if not target.state.running:
        raise Conflict(f"cannot join network of a non running container: {target.id}")
    return target


def network_spec(paths: Paths, mode: str) -> dict[str, Any] | None:
    """What the network helper needs of a user network (None: the default bridge)."""
    if mode in BRIDGE_MODES or not mode:
        return None
    from minidock.net import networks

    net = networks.find(paths, mode)
    if not net.user_defined:
        return None
    return {"id": net.id, "bridge": net.bridge, "subnet": net.subnet, "gateway": net.gateway,
            "internal": net.internal}


def _begin_network(paths: Paths, c: Container, undo: ExitStack, setup: Any
                   ) -> tuple[Any, Any, str]:
    """The bridge helper (started here unless the caller started it earlier) and the
    published host ports, reserved now: a port someone holds fails the start before any
    mount, and the container stays "created" with the error, as Docker's does."""
    from minidock import net

    if setup is None:
        setup = net.begin(network_spec(paths, str(c.host_config.get("NetworkMode") or "")))
    undo.callback(setup.abandon)
    endpoint_id = os.urandom(32).hex()
    reservation = None
    wants = None
    if c.host_config.get("PortBindings") or c.host_config.get("PublishAllPorts"):
        from minidock.net import ipam, ports

        wants = ports.wanted(c.config, c.host_config)
    if wants:
        reservation = ports.Reservation()
        undo.callback(reservation.close)
        try:
            reservation.take(wants, f"{c.name} ({endpoint_id})", ipam.holder_reader())
        except MinidockError as e:
            _record_failed_start(paths, c, e, code=128)
            raise
    return setup, reservation, endpoint_id


def _record_failed_start(paths: Paths, c: Container, e: MinidockError,
                         code: int | None = None) -> None:
    """Docker keeps a container whose command could not start as "created", with the
    error and the exit code (126/127; 128 when its network could not be set up) in its
    State."""
    c.state.exit_code = e.exit_code if code is None else code
    c.state.error = e.message
    store.save(paths, c)


def _waitpid(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
