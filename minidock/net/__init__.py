"""Networking: minidock's default bridge (``--network bridge``), without a daemon.

    attach(paths, cid, pid)   between the runtime's create and start: a lease on the bridge
                              (ipam), the bridge and minidock's nft table made sure of
                              (links, firewall), a veth into the container's netns as eth0
    release(paths, cid)       when the container's run ends: the lease goes back; the veth
                              went with the netns (removed here too if it lingers)

The package is the only importer of pyroute2 (a contract test says so) and loads only when a
container on the bridge starts or stops: ``run --network none`` never imports it.
"""

from __future__ import annotations

import socket

from minidock.net import firewall, ipam, links
from minidock.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def host_routes() -> list[ipam.Network]:
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if dst:
                out.append(ipam.Network(f"{dst}/{route['dst_len']}", strict=False))
    return out


def veth_name(cid: str) -> str:
    return "md" + cid[:10]


def attach(paths: Paths, cid: str, pid: int) -> dict[str, Any]:
    """Put the container whose init is ``pid`` on the default bridge; its NetworkSettings."""
    from minidock.settings import load_engine_config

    bip = load_engine_config().bip or None
    with ipam.Leases(paths) as leases:
        subnet, gateway = leases.subnet(host_routes(), bip)
        ip = leases.lease(cid, subnet, gateway)
        leases.save()
    links.ensure_bridge(ipam.BRIDGE, str(gateway), subnet.prefixlen)
    firewall.apply(ipam.BRIDGE, str(subnet))
    mac = ipam.mac_of(ip)
    links.add_veth(ipam.BRIDGE, veth_name(cid), pid, str(ip), subnet.prefixlen, str(gateway),
                   mac, links.default_mtu())
    return {"Bridge": ipam.BRIDGE, "IPAddress": str(ip), "IPPrefixLen": subnet.prefixlen,
            "Gateway": str(gateway), "MacAddress": mac, "SandboxKey": f"/proc/{pid}/ns/net"}


def release(paths: Paths, cid: str) -> None:
    with ipam.Leases(paths) as leases:
        if leases.release(cid):
            leases.save()
    links.remove_link(veth_name(cid))
