"""The forked helper that puts a container on a bridge while the engine creates it.

pyroute2 takes 60-90 ms to import (asyncio, its whole package), longer than the rest of a
start. So the engine forks this helper as soon as it knows the container goes on the bridge;
the helper imports pyroute2 and makes sure of the bridge on the other CPU while the engine
mounts the rootfs and the runtime creates the namespaces, then waits for the one request
only the engine can send, once the container's init exists::

    engine                                  helper (forked, dies with the engine: pdeathsig)
    begin() ---- fork ---------------------> import pyroute2; routes; lease file: the subnet;
    mount, spec, runtime create              bridge up (links.ensure_bridge)
    attach(cid, pid, forwards) -- request -> lease an address, record the published ports,
                                             replace the nft table (firewall), the netns in
                                             /run/netns (netns), veth into the netns of pid
                                             as eth0, members' hosts files and resolver (a
                                             user network's), then setns() into it and
                                             configure eth0 from inside
             <------------------- reply --- {"endpoint": {...}} or {"error", "kind"}

The helper closes every descriptor it inherited but its two pipes, stdio and the trace
descriptor: the engine's locks stay the engine's.
"""

from __future__ import annotations

import json
import os
import signal

from minidock.errors import Conflict, InvalidArgument, MinidockError
from minidock.linux import trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from minidock.net.ports import Forward

_KINDS: dict[str, type[MinidockError]] = {"invalid": InvalidArgument, "conflict": Conflict}


class Setup:
    """The engine's side: a helper that is getting the bridge ready."""

    def __init__(self, network: dict[str, Any] | None = None) -> None:
        """``network``: a user network's {"id", "bridge", "subnet", "gateway", "internal"};
        None for the default bridge."""
        req_r, self._req_w = os.pipe2(os.O_CLOEXEC)
        self._reply_r, reply_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the helper reports through its pipe
            code = 1
            try:
                os.close(self._req_w)
                os.close(self._reply_r)
                _serve(req_r, reply_w, network)
                code = 0
            except BaseException as e:  # forked: report anything, never unwind into the engine
                kind = ("invalid" if isinstance(e, InvalidArgument)
                        else "conflict" if isinstance(e, Conflict) else "error")
                _write(reply_w, {"error": str(e) or type(e).__name__, "kind": kind})
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(reply_w)

    def attach(self, cid: str, pid: int, forwards: list[Forward], ip: str | None = None,
               names: list[str] | None = None, hosts: str = "",
               connect: bool = False) -> dict[str, Any]:
        """Send the request, wait for the helper; the container's NetworkSettings. On a user
        network ``ip`` is --ip, ``names`` what the others may call it (name, aliases) and
        ``hosts`` its /etc/hosts on the host (names.refresh writes the others there).
        ``connect``: a network beside the first (``network connect``): ethN, no default
        route, no second netns entry."""
        request = {"cid": cid, "pid": pid, "ip": ip, "names": names or [], "hosts": hosts,
                   "connect": connect,
                   "forwards": [[f.proto, f.host_ip, f.host_port, f.port] for f in forwards]}
        try:
            os.write(self._req_w, json.dumps(request).encode())
        except BrokenPipeError:
            pass  # the helper failed already: its reply says why
        os.close(self._req_w)
        self._req_w = -1
        reply = self._finish()
        if "endpoint" not in reply:
            cls = _KINDS.get(str(reply.get("kind")), MinidockError)
            raise cls(str(reply.get("error") or "network setup failed"))
        endpoint: dict[str, Any] = reply["endpoint"]
        return endpoint

    def abandon(self) -> None:
        """No container after all: the helper reads EOF and exits having changed nothing
        that belongs to a container (the bridge may be up: it is shared)."""
        if self._req_w >= 0:
            os.close(self._req_w)
            self._req_w = -1
        if self.pid:
            self._finish()

    def _finish(self) -> dict[str, Any]:
        chunks = []
        while True:
            chunk = os.read(self._reply_r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self._reply_r)
        os.waitpid(self.pid, 0)
        self.pid = 0
        data = b"".join(chunks)
        try:
            reply: dict[str, Any] = json.loads(data) if data.strip() else {}
        except ValueError:
            reply = {}
        if not reply:
            reply = {"error": "the network helper died without an answer"}
        return reply


def _write(fd: int, doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    while data:
        data = data[os.write(fd, data):]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _serve(req_r: int, reply_w: int,
           network: dict[str, Any] | None) -> None:  # pragma: no cover - forked
    import prctl

    engine = os.getppid()
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != engine:
        return  # the engine is gone already
    keep = sorted({0, 1, 2, req_r, reply_w, trace.trace_fd()} - {-1})
    low = 0
    for fd in keep:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    trace.set_role("net")

    from minidock.net import firewall, ipam, links, names, netns
    from minidock.settings import load_engine_config

    bridge_name = network["bridge"] if network else ipam.BRIDGE
    with links.Netlink() as nl:
        with ipam.Leases(bridge_name) as leases:
            if network is not None:  # a user network: as its definition says
                changed = leases.define(network["subnet"], network["gateway"],
                                        bool(network["internal"]))
            else:
                # while no container holds an address, the subnet follows the settings' "bip"
                # and the host's routes (not the bridge's own) as they are now
                config = load_engine_config()
                changed = not leases.leases and leases.choose(
                    [ipam.Network(r, strict=False) for r in nl.routes(but=ipam.BRIDGE)],
                    config.bip or None, ipam.pools_of(config.address_pools))
            if changed:
                leases.save()
            subnet, gateway = leases.subnet([], None)
            network_id = network["id"] if network else leases.network_id()
        bridge = nl.ensure_bridge(bridge_name, str(gateway), subnet.prefixlen)
        mtu = nl.default_mtu()
        data = _read_all(req_r)
        if not data:
            return  # abandoned
        req = json.loads(data)
        cid, pid = str(req["cid"]), int(req["pid"])
        with ipam.Leases(bridge_name) as leases:
            ip = leases.lease(cid, subnet, gateway, req.get("ip") or None)
            leases.publish(cid, [ipam.Forward(p, h, int(hp), int(cp), str(ip))
                                 for p, h, hp, cp in req["forwards"]])
            if network is not None:
                leases.members[cid] = {"names": req.get("names") or [],
                                       "hosts": req.get("hosts") or ""}
            leases.save()
            firewall.apply(*firewall.of([leases, *leases.others()]))
            if network is not None:
                names.refresh([leases])
        if network is not None:
            from minidock.net import dns

            dns.start(bridge_name)  # (unless it runs: then it reads the new names itself)
        mac = ipam.mac_of(ip)
        connect = bool(req.get("connect"))
        if connect:
            sandbox = netns.path_of(cid)
            host_veth, peer = extra_veth_name(cid, network_id), "mdtmp" + os.urandom(4).hex()
        else:
            sandbox = netns.publish(cid, pid)
            host_veth, peer = veth_name(cid), "eth0"
        nl.add_veth(bridge, host_veth, pid, mac, mtu, peer)
    ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    from minidock import linux

    linux.setns(ns, linux.CLONE_NEWNET, why="configure eth0 from inside the container's netns")
    with links.Netlink() as inside:
        interface = inside.configure(str(ip), subnet.prefixlen, str(gateway), peer)
    _write(reply_w, {"endpoint": {
        "Bridge": bridge_name, "IPAddress": str(ip), "IPPrefixLen": subnet.prefixlen,
        "Gateway": str(gateway), "MacAddress": mac, "SandboxKey": sandbox,
        "NetworkID": network_id, "Interface": interface}})


def veth_name(cid: str) -> str:
    return "md" + cid[:10]


def extra_veth_name(cid: str, network_id: str) -> str:
    """The host end of a veth ``network connect`` adds (one per container and network)."""
    return f"mdx{cid[:6]}{network_id[:6]}"
