"""A new container: its name, its record, its rw layer and the /etc files it is given; rename.

``create`` takes the image's config and the run/create flags to Docker's Config and
HostConfig, then, holding containers.lock (names and ids), makes containers/<id>/, the rw
layer over a new -init layer and the hostname, hosts and resolv.conf files, and writes the
record last: a create killed before that leaves a directory without a record, which
``system check`` finds. ``rename`` picks a name by the same rules, under the same lock.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import ExitStack

from minidock.engine import spec as specgen
from minidock.engine.containers import reconciler, resources, store
from minidock.engine.containers.record import (
    NETWORK_MODES,
    Container,
    network_names,
    now_rfc3339,
)
from minidock.engine.spec import hostfiles
from minidock.errors import InvalidArgument, MinidockError
from minidock.linux import flock
from minidock.paths import Paths
from minidock.records import field, record
from minidock.storage.atomic import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@record
class CreateOptions:
    image: str
    process: specgen.ProcessOptions = field(default_factory=specgen.ProcessOptions)
    name: str | None = None
    hostname: str | None = None
    network: str = "default"
    ip: str | None = None  # --ip (user networks)
    aliases: list[str] = field(default_factory=list)  # --network-alias (user networks)
    add_hosts: list[str] = field(default_factory=list)  # --add-host NAME:IP
    dns: list[str] = field(default_factory=list)  # --dns
    dns_search: list[str] = field(default_factory=list)  # --dns-search
    dns_options: list[str] = field(default_factory=list)  # --dns-option
    auto_remove: bool = False
    publish: list[str] = field(default_factory=list)  # -p
    publish_all: bool = False  # -P
    expose: list[str] = field(default_factory=list)  # --expose
    labels: dict[str, str] = field(default_factory=dict)  # --label, over the image's
    runtime: str | None = None  # --runtime; None: the settings' default-runtime, or minidock
    cap_add: list[str] = field(default_factory=list)  # --cap-add
    cap_drop: list[str] = field(default_factory=list)  # --cap-drop
    privileged: bool = False  # --privileged
    devices: list[str] = field(default_factory=list)  # --device
    device_cgroup_rules: list[str] = field(default_factory=list)  # --device-cgroup-rule
    pid: str = ""  # --pid host|container:X
    ipc: str = ""  # --ipc private|shareable|host|none|container:X
    uts: str = ""  # --uts host
    cgroupns: str = ""  # --cgroupns host|private
    userns: str = ""  # --userns host|remap
    shm_size: int | None = None  # --shm-size, bytes
    ulimits: list[dict[str, Any]] = field(default_factory=list)  # --ulimit, parsed
    sysctls: dict[str, str] = field(default_factory=dict)  # --sysctl
    group_add: list[str] = field(default_factory=list)  # --group-add
    init: bool = False  # --init
    binds: list[str] = field(default_factory=list)  # -v
    mounts: list[dict[str, Any]] = field(default_factory=list)  # --mount, parsed
    tmpfs: dict[str, str] = field(default_factory=dict)  # --tmpfs
    read_only: bool = False  # --read-only
    volumes_from: list[str] = field(default_factory=list)  # --volumes-from
    #: the resource fields of HostConfig the flags gave (resources.parse_flags)
    resources: dict[str, Any] = field(default_factory=dict)


def create(paths: Paths, opts: CreateOptions) -> Container:
    from minidock.engine import images
    from minidock.linux import timing

    with timing.phase("image lookup"):
        image_id, image_config = images.image_for_container(paths, opts.image)
    icfg = image_config.get("config") or {}
    p = opts.process
    entrypoint = p.entrypoint if p.entrypoint is not None else icfg.get("Entrypoint")
    cmd = p.cmd if p.cmd else (None if p.entrypoint is not None else icfg.get("Cmd"))
    args = specgen.command_line(icfg.get("Entrypoint"), icfg.get("Cmd"), p)
    joined = _joined(paths, opts)  # --network container:X: the container whose netns it is
    networking = _networking(paths, opts) if joined is None else {}
    extra_hosts = _extra_hosts(opts.add_hosts)
    for server in opts.dns:
        if not _is_ip(server):
            raise InvalidArgument(f'invalid argument "{server}" for "--dns" flag: {server} is '
                                  "not an ip address")
    exposed: dict[str, dict[str, object]] = dict(icfg.get("ExposedPorts") or {})
    bindings: dict[str, list[dict[str, str]]] = {}
    if opts.publish or opts.expose:
        from minidock.net import ports  # pure parsing; no netlink

        exposed_now, bindings = ports.parse(opts.publish)
        exposed.update(ports.parse_expose(opts.expose))
        exposed.update(exposed_now)
    if opts.network == "host" and bindings:
        print("WARNING: Published ports are discarded when using host network mode",
              file=sys.stderr)
    isolation = _isolation(opts)
    from minidock.engine.runtime import choose

    runtime = choose(opts.runtime).name  # an unknown name fails now, as Docker's create
    cid = os.urandom(32).hex()
    hostname = opts.hostname or (os.uname().nodename if opts.network == "host" else cid[:12])
    if joined is not None:  # it shares the other's hostname, hosts and resolv.conf
        hostname = str(joined.config.get("Hostname") or joined.short_id)
    env = [e for e in icfg.get("Env") or []] + list(p.env)
    config = {
        "Hostname": hostname, "Domainname": "", "User": p.user or icfg.get("User", ""),
        "AttachStdin": p.stdin_open, "AttachStdout": True, "AttachStderr": True,
        **({"ExposedPorts": dict(sorted(exposed.items()))} if exposed else {}),
        "Tty": p.tty, "OpenStdin": p.stdin_open, "StdinOnce": p.stdin_open,
        "Env": env, "Cmd": cmd, "Image": opts.image, "Volumes": _volumes(icfg, opts) or None,
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
        "NetworkMode": opts.network, "PortBindings": dict(sorted(bindings.items())),
        "AutoRemove": opts.auto_remove,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "Runtime": runtime, "LogConfig": {"Type": "json-file", "Config": {}},
        "Dns": list(opts.dns), "DnsOptions": list(opts.dns_options),
        "DnsSearch": list(opts.dns_search), "ExtraHosts": list(opts.add_hosts) or None,
        "PublishAllPorts": opts.publish_all, **isolation,
    }
    layers = store.image_store(paths)
    with (timing.phase("create (record, rw layer, /etc files)"),
          flock.locked(store.lock_path(paths, "containers.lock")), ExitStack() as undo):
        name = store.pick_name(paths, opts.name)
        d = os.path.join(paths.containers, cid)
        os.makedirs(paths.containers, mode=0o710, exist_ok=True)
        os.mkdir(d, 0o710)
        undo.callback(shutil.rmtree, d, True)
        layers.create_rw_layer(cid, image_id)
        undo.callback(layers.remove_rw_layer, cid)
        atomic_write(os.path.join(d, "hostname"), f"{hostname}\n".encode(), 0o644, durable=False)
        hosts = hostfiles.hosts_file(extra=extra_hosts)
        dns = opts.dns
        if not dns and opts.network not in NETWORK_MODES and joined is None:
            from minidock.net import networks  # its resolver listens on the gateway

            dns = [networks.find(paths, opts.network).gateway]
        resolv = hostfiles.resolv_conf(hostfiles.read_host_resolv_conf(), dns,
                                       opts.dns_search, opts.dns_options)
        if opts.network == "host":
            hosts = _read("/etc/hosts") or hosts
            resolv = hostfiles.read_host_resolv_conf() or resolv
        atomic_write(os.path.join(d, "hosts"), hosts.encode(), 0o644, durable=False)
        atomic_write(os.path.join(d, "resolv.conf"), resolv.encode(), 0o644, durable=False)
        points = _mount_points(paths, opts, config, undo)
        c = Container(id=cid, name=name, created=now_rfc3339(), image_id=image_id,
                      image_ref=opts.image, path=args[0], args=args[1:], config=config,
                      host_config=host_config, dir=d, networking=networking,
                      mount_points=points)
        aliases = networking.get("Aliases")
        if isinstance(aliases, list):
            networking["Aliases"] = [*aliases, cid[:12]]
        store.save(paths, c, host_config=True)
        undo.pop_all()
    return c


def _isolation(opts: CreateOptions) -> dict[str, Any]:
    """HostConfig's fields of what the container may do and use: capabilities and
    --privileged, devices, what it shares (pid, ipc, uts, cgroupns), /dev/shm, sysctls,
    rlimits, mounts and volumes, --init, and the resource limits; Docker's refusals and
    warnings for them."""
    from minidock.engine.spec import privileges, sharing

    pid_mode = sharing.check_mode("pid", "PID", opts.pid, ("", "host", "container:"))
    ipc_mode = sharing.check_mode("ipc", "IPC", opts.ipc or "private",
                                  ("private", "shareable", "host", "none", "container:"))
    uts_mode = sharing.check_mode("uts", "UTS", opts.uts, ("", "host"))
    cgroupns = sharing.check_mode("cgroupns", "CGROUP", opts.cgroupns or _cgroupns(),
                                  ("host", "private"))
    from minidock.engine.spec import remap

    userns = remap.check_mode(opts.userns, opts.privileged, pid_mode, cgroupns)
    if uts_mode == "host" and opts.hostname:
        raise InvalidArgument("Conflicting options: hostname and the UTS mode")
    sharing.check_sysctls(opts.sysctls, ipc_mode, opts.network)
    security_opt = list(opts.process.security_opt) or (
        ["label=disable"] if opts.privileged else [])
    limits = dict(resources.DEFAULTS)
    if opts.resources:
        from minidock import cgroups

        limits, warnings = resources.for_create(opts.resources, cgroups.features())
        for warning in warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
    return {
        "Privileged": opts.privileged, "CgroupnsMode": cgroupns, "IpcMode": ipc_mode,
        "PidMode": pid_mode, "UTSMode": uts_mode, "UsernsMode": userns,
        "ShmSize": 67108864 if opts.shm_size is None else opts.shm_size,
        "GroupAdd": list(opts.group_add) or None,
        **({"Sysctls": dict(opts.sysctls)} if opts.sysctls else {}),
        "Binds": [b for b in opts.binds if ":" in b] or None,
        "CapAdd": privileges.normalize(opts.cap_add, "CapAdd"),
        "CapDrop": privileges.normalize(opts.cap_drop, "CapDrop"),
        "ReadonlyRootfs": opts.read_only, "VolumesFrom": list(opts.volumes_from) or None,
        **({"Mounts": list(opts.mounts)} if opts.mounts else {}),
        "Devices": [privileges.parse_device_flag(d) for d in opts.devices],
        "DeviceCgroupRules": [privileges.parse_cgroup_rule(r)
                              for r in opts.device_cgroup_rules] or None,
        **({"Tmpfs": dict(opts.tmpfs)} if opts.tmpfs else {}),
        "SecurityOpt": security_opt or None, "Init": True if opts.init else None,
        **limits, "Ulimits": list(opts.ulimits),
        "MaskedPaths": None if opts.privileged else list(specgen.MASKED_PATHS),
        "ReadonlyPaths": None if opts.privileged else list(specgen.READONLY_PATHS),
    }


def _volumes(icfg: dict[str, Any], opts: CreateOptions) -> dict[str, dict[str, Any]]:
    """Config.Volumes: the image's VOLUMEs and the bare ``-v /path`` ones (Docker's CLI puts
    those there, not in Binds)."""
    out = dict(icfg.get("Volumes") or {})
    out.update({b: {} for b in opts.binds if ":" not in b})
    return out


def _mount_points(paths: Paths, opts: CreateOptions, config: dict[str, Any],
                  undo: ExitStack) -> dict[str, dict[str, Any]]:
    """The container's mount points; the anonymous volumes made for it go again if the
    create fails after this."""
    if not (opts.binds or opts.mounts or opts.volumes_from or config.get("Volumes")):
        return {}
    from minidock.engine.containers import mounts

    others = []
    for ref in opts.volumes_from:
        other, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode: {mode}")
        others.append((reconciler.get(paths, other).mount_points, mode))
    points = mounts.mount_points(paths, [b for b in opts.binds if ":" in b], opts.mounts,
                                 others, config.get("Volumes") or {})
    from minidock.volume import Volumes

    volumes = Volumes(paths)
    for name in mounts.volume_names(points):
        if volumes.is_anonymous(name) and not any(
                name in mounts.volume_names(p) for p, _ in others):
            undo.callback(volumes.remove, name)
    return points


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _extra_hosts(values: list[str]) -> list[tuple[str, str]]:
    """--add-host values -> (name, address); host-gateway is the default bridge's gateway
    (the host as the containers reach it), as Docker's daemon resolves it."""
    out = []
    for value in values:
        try:
            name, addr = hostfiles.parse_add_host(value)
        except ValueError as e:
            raise InvalidArgument(f'invalid argument "{value}" for "--add-host" flag: {e}') \
                from None
        if addr == "host-gateway":
            from minidock.net import ipam

            with ipam.Leases() as leases:
                addr = str(leases.doc.get("gateway") or "172.17.0.1")
        out.append((name, addr))
    return out


def _joined(paths: Paths, opts: CreateOptions) -> Container | None:
    """--network container:X: X, after Docker's refusals of what cannot go with it."""
    if not opts.network.startswith("container:"):
        return None
    ref = opts.network[len("container:"):]
    for given, what in ((opts.publish or opts.publish_all, "port publishing"),
                        (opts.hostname, "hostname"), (opts.dns, "dns"),
                        (opts.add_hosts, "custom host-to-IP mapping"),
                        (opts.expose, "port exposing")):
        if given:
            raise InvalidArgument(f"conflicting options: {what} and the "
                                  + ("container type network mode" if what.startswith("port")
                                     else "network mode"))
    try:
        return reconciler.get(paths, ref)
    except MinidockError as e:
        raise InvalidArgument(e.message) from None


def _networking(paths: Paths, opts: CreateOptions) -> dict[str, object]:
    """Check --network, --ip and --network-alias as Docker does; a user network's
    EndpointSettings (IPAMConfig, Aliases)."""
    if opts.network in NETWORK_MODES:
        if opts.network == "default":
            return {}  # (Docker ignores --ip and --network-alias without --network)
        if opts.ip:
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        if opts.aliases:
            raise InvalidArgument("network-scoped aliases are only supported for "
                                  "user-defined networks")
        return {}
    from minidock.net import networks

    try:
        net = networks.find(paths, opts.network)
    except MinidockError as e:
        raise InvalidArgument(e.message) from None
    opts.network = net.name
    if not net.user_defined:
        return _networking(paths, opts)
    out: dict[str, object] = {}
    if opts.ip:
        import ipaddress

        try:
            ip = ipaddress.IPv4Address(opts.ip)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {opts.ip}") from None
        subnet = ipaddress.IPv4Network(net.subnet)
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"Invalid address {opts.ip}: It does not belong to any of "
                                  "this network's subnets.")
        if str(ip) == net.gateway:
            raise InvalidArgument("Address already in use")
        out["IPAMConfig"] = {"IPv4Address": str(ip)}
    out["Aliases"] = [*opts.aliases]  # the short id joins them at create, as Docker's
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cgroupns() -> str:
    from minidock import cgroups

    return "private" if cgroups.detect_version() == 2 else "host"


def rename(paths: Paths, ref: str, new_name: str) -> Container:
    """Give a container another name (``docker rename``), running or not."""
    if not new_name.lstrip("/"):
        raise InvalidArgument("Neither old nor new names may be empty")
    cid = reconciler.get(paths, ref).id  # (reconciles first, outside the lock)
    with flock.locked(store.lock_path(paths, "containers.lock")):
        c = store.load_record(paths, cid)
        if c.name == new_name.lstrip("/"):
            raise InvalidArgument("Renaming a container with the same name as its current name")
        name = store.pick_name(paths, new_name)
        with store.container_lock(paths, c.id):
            c = store.load_record(paths, c.id)
            c.name = name
            store.save(paths, c)
            if c.state.running and c.networking.get("Aliases") is not None:
                from minidock import net  # its network's members know it by the new name

                net.rename(c.id, network_names(c))
    return c
