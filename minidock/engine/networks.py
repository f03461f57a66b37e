"""``network create/ls/inspect/rm/prune``: the networks of a data root and who is on them.

Definitions and bridges are minidock.net's (net.networks); this module adds what only the
engine knows: which of its containers hold an address on a network, with their names and
endpoints, for ``inspect``'s Containers and for ``prune``.
"""

from __future__ import annotations

from minidock.engine import containers as ct
from minidock.errors import MinidockError
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
