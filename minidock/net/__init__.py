"""Networking: minidock's bridges (the default one and the user networks'), without a daemon.

    begin(network)            as soon as the engine knows a container goes on a bridge: a
                              forked helper (net.helper) loads pyroute2 and readies the bridge
                              while the engine mounts and creates the container
    Setup.attach(cid, pid, forwards, ip, names, hosts, connect)
                              between the runtime's create and start (or for `network
                              connect`): a lease, the published ports in minidock's nft table,
                              a veth into the container's netns as eth0 (ethN), its names on
                              a user network; the endpoint
    release(cid)              when the run ends: its /run/netns entry goes, its leases, ports
                              and names go back on every network (the table is rebuilt, their
                              conntrack entries flushed); the veths go with the netns
    leave, rename             `network disconnect`, `rename` of a member of a user network
    restore_firewall()        the table again, as the bridges' files say (system check)

The package is the only importer of pyroute2 (a contract test says so); only the helper
imports it, and ``release`` only for a container that published ports (conntrack):
``run --network none`` never loads it.
"""

from __future__ import annotations

from minidock.net import ipam, netns
from minidock.net.helper import Setup, extra_veth_name, veth_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Setup", "begin", "extra_veth_name", "leave", "release", "rename",
           "restore_firewall", "veth_name"]


def begin(network: dict[str, Any] | None = None) -> Setup:
    """The helper for a container going on ``network`` (a user network's bridge, subnet,
    gateway; None: the default bridge)."""
    return Setup(network)


def release(cid: str) -> None:
    """The run of ``cid`` ended: its /run/netns entry goes, its address, published ports and
    names go back (the other members' /etc/hosts forget it)."""
    netns.unpublish(cid)
    with ipam.Leases() as default:
        states = [default, *default.others()]
        touched = [st for st in states if cid in st.leases or cid in st.members
                   or cid in (st.doc.get("ports") or {})]
        if not touched:
            return
        published = [f for st in touched for f in st.forwards() if f.ip == st.leases.get(cid)]
        for st in touched:
            st.release(cid)
            st.save()
        from minidock.net import names

        names.refresh(st for st in touched if st.bridge != ipam.BRIDGE)
        if published:
            from minidock.net import firewall

            firewall.apply(*firewall.of(states))
    if published:
        from minidock.net import conntrack

        conntrack.forget(published)


def leave(cid: str, bridge: str, veth: str) -> None:
    """A running container leaves one network (``network disconnect``): its interface there
    goes (deleting the host end of a veth takes the pair), its address and names go back."""
    from minidock.net import links
    from minidock.net import names as hostsfiles

    links.remove_link(veth)
    with ipam.Leases(bridge) as leases:
        hosts = str((leases.members.get(cid) or {}).get("hosts") or "")
        if leases.release(cid):
            leases.save()
            hostsfiles.refresh([leases], gone={cid: hosts} if hosts else None)


def rename(cid: str, names: list[str]) -> None:
    """A member of a user network has new names: every member's /etc/hosts (and the
    network's resolver, which reads the same list) says so."""
    from minidock.net import names as hostsfiles

    with ipam.Leases() as default:
        for st in [default, *default.others()]:
            if cid in st.members:
                st.members[cid]["names"] = names
                st.save()
                hostsfiles.refresh([st])


def restore_firewall() -> None:
    """Apply minidock's nft table again, as the bridges' files say it should be (after a
    firewall reload took it away)."""
    from minidock.net import firewall

    with ipam.Leases() as default:
        firewall.apply(*firewall.of([default, *default.others()]))
