"""``network create/ls/inspect/rm/prune``: the networks of a data root and who is on them.

Definitions and bridges are minidock.net's (net.networks); this module adds what only the
engine knows: which of its containers hold an address on a network, with their names and
endpoints, for ``inspect``'s Containers and for ``prune``.
"""

from __future__ import annotations

from minidock.engine import containers as ct
from minidock.engine.containers import store
from minidock.errors import Conflict, InvalidArgument, MinidockError
from minidock.net import networks as nets
from minidock.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Network = nets.Network
create = nets.create
find = nets.find
all_networks = nets.all_networks


def inspect(paths: Paths, ref: str) -> dict[str, Any]:
    net = nets.find(paths, ref)
    containers: dict[str, Any] = {}
    if net.driver == "bridge":
        prefix = net.subnet.split("/")[1] if "/" in net.subnet else ""
        for cid, ip in sorted(nets.members(net).items()):
            try:
                c = ct.load_record(paths, cid)
            except MinidockError:
                continue  # another root's container on the default bridge
            containers[cid] = {"Name": c.name, "EndpointID": c.endpoint.get("EndpointID", ""),
                               "MacAddress": c.endpoint.get("MacAddress", ""),
                               "IPv4Address": f"{ip}/{prefix}", "IPv6Address": ""}
    return net.to_inspect(containers)


def remove(paths: Paths, ref: str) -> Network:
    return nets.remove(paths, ref)


def prune(paths: Paths) -> list[str]:
    """Remove the user networks no running container is on; their names."""
    gone = []
    for net in nets.user_networks(paths):
        if nets.members(net):
            continue
        try:
            nets.remove(paths, net.id)
        except MinidockError:
            continue  # a container joined meanwhile
        gone.append(net.name)
    return gone


def connect(paths: Paths, ref: str, container: str, ip: str | None = None,
            aliases: tuple[str, ...] = ()) -> None:
    """``network connect``: one more user network for a container; a running one gets its
    interface at once, a stopped one when it starts."""
    from minidock.engine.containers import lifecycle

    net = nets.find(paths, ref)
    c = ct.get(paths, container)
    mode = str(c.host_config.get("NetworkMode") or "default")
    if mode in ("host", "none") or mode.startswith("container:"):
        raise Conflict(f"container sharing network namespace with another container or host "
                       f"cannot be connected to any other network ({mode})")
    if not net.user_defined:
        raise InvalidArgument(f"minidock connects user-defined networks only: {net.name}")
    if net.name == ct.network_name(mode) or net.name in c.extra:
        raise Conflict(f"endpoint with name {c.name} already exists in network {net.name}")
    asked: dict[str, Any] = {"Aliases": [*aliases, c.short_id]}
    if ip:
        import ipaddress

        if ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network(net.subnet):
            raise InvalidArgument(f"Invalid address {ip}: It does not belong to any of this "
                                  "network's subnets.")
        asked["IPAMConfig"] = {"IPv4Address": ip}
    with ct.container_lock(paths, c.id):
        c = ct.load_record(paths, c.id)
        c.extra[net.name] = asked
        if c.state.running:
            try:
                c.extra[net.name] = lifecycle.connect_running(paths, c, net.name, c.state.pid)
            except BaseException:
                del c.extra[net.name]
                raise
        store.save(paths, c)


def disconnect(paths: Paths, ref: str, container: str) -> None:
    """``network disconnect``: take a network ``connect`` added away again."""
    net = nets.find(paths, ref)
    c = ct.get(paths, container)
    with ct.container_lock(paths, c.id):
        c = ct.load_record(paths, c.id)
        if net.name not in c.extra:
            if net.name == ct.network_name(str(c.host_config.get("NetworkMode") or "")):
                raise InvalidArgument(f"minidock disconnects only the networks `network "
                                      f"connect` added: {net.name} is {c.name}'s first")
            raise InvalidArgument(f"container {c.id} is not connected to network {net.name}")
        if c.state.running:
            from minidock import net as netmod

            netmod.leave(c.id, net.bridge, netmod.extra_veth_name(c.id, net.id))
        del c.extra[net.name]
        store.save(paths, c)
