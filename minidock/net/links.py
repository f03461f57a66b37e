"""The links of the default bridge, through netlink (pyroute2, imported only here).

    bridge    minidock0, the gateway address on it, up
    veth      md<10 hex> on the host, enslaved to the bridge, up; its peer is made under a
              temporary name, moved into the container's netns and configured there as eth0
              (address, MAC derived from it, MTU of the host's default route, up, lo up,
              default route via the gateway) by a child that has joined that netns
"""

from __future__ import annotations

import os
import socket

from minidock import linux
from minidock.errors import MinidockError
from minidock.linux import trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _iproute() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def default_mtu() -> int:
    ipr = _iproute()
    try:
        for route in ipr.get_default_routes(family=socket.AF_INET):
            idx = route.get_attr("RTA_OIF")
            if idx:
                link = ipr.get_links(idx)[0]
                return int(link.get_attr("IFLA_MTU") or 1500)
    finally:
        ipr.close()
    return 1500


def ensure_bridge(name: str, gateway: str, prefix: int) -> None:
    ipr = _iproute()
    try:
        found = ipr.link_lookup(ifname=name)
        if not found:
            trace.note(f"create bridge {name}")
            ipr.link("add", ifname=name, kind="bridge")
            found = ipr.link_lookup(ifname=name)
        idx = found[0]
        have = {a.get_attr("IFA_ADDRESS")
                for a in ipr.get_addr(index=idx, family=socket.AF_INET)}
        if gateway not in have:
            trace.note(f"address {gateway}/{prefix} on {name} (the containers' gateway)")
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")
    finally:
        ipr.close()


def remove_link(name: str) -> None:
    ipr = _iproute()
    try:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])
    finally:
        ipr.close()


def add_veth(bridge: str, host_name: str, pid: int, ip: str, prefix: int, gateway: str,
             mac: str, mtu: int) -> None:
    """The container's end of a veth pair as eth0 in the netns of ``pid``."""
    peer = "mdp" + host_name[2:]
    ipr = _iproute()
    try:
        trace.note(f"veth pair {host_name} <-> {peer}, {host_name} on {bridge}")
        ipr.link("add", ifname=host_name, kind="veth", peer=peer)
        host_idx = ipr.link_lookup(ifname=host_name)[0]
        bridge_idx = ipr.link_lookup(ifname=bridge)[0]
        ipr.link("set", index=host_idx, master=bridge_idx, mtu=mtu, state="up")
        peer_idx = ipr.link_lookup(ifname=peer)[0]
        trace.note(f"move {peer} into the container's network namespace (pid {pid})")
        ipr.link("set", index=peer_idx, net_ns_pid=pid)
    except Exception:
        ipr.close()
        remove_link(host_name)
        raise
    ipr.close()
    _inside(pid, peer, ip, prefix, gateway, mac, mtu)


def _inside(pid: int, peer: str, ip: str, prefix: int, gateway: str, mac: str,
            mtu: int) -> None:
    """Configure eth0 from a child that joined the container's netns (we stay outside)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(r)
            linux.setns(fd, linux.CLONE_NEWNET, why="configure the container's eth0")
            ipr = _iproute()
            idx = ipr.link_lookup(ifname=peer)[0]
            ipr.link("set", index=idx, ifname="eth0", address=mac, mtu=mtu)
            ipr.addr("add", index=idx, address=ip, prefixlen=prefix)
            ipr.link("set", index=idx, state="up")
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
            ipr.close()
            os._exit(0)
        except BaseException as e:  # a forked child: report, never unwind into the parent's
            os.write(w, str(e).encode()[:500])
            os._exit(1)
    os.close(w)
    os.close(fd)
    message = os.read(r, 1000).decode(errors="replace")
    os.close(r)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise MinidockError(f"configure eth0 in the container's network namespace: {message}")
