"""Networking: minidock's default bridge, without a daemon.

    begin()                   as soon as the engine knows a container goes on the bridge: a
                              forked helper (net.helper) loads pyroute2 and readies the bridge
                              while the engine mounts and creates the container
    Setup.attach(cid, pid, forwards)
                              between the runtime's create and start: a lease, the published
                              ports in minidock's nft table, a veth into the container's netns
                              as eth0; the container's NetworkSettings
    release(cid)              when the run ends: its /run/netns entry goes, the lease and the
                              ports go back (the table is rebuilt without them, their conntrack
                              entries flushed); the veth goes with the netns, by the kernel

The package is the only importer of pyroute2 (a contract test says so); only the helper
imports it, and ``release`` only for a container that published ports (conntrack):
``run --network none`` never loads it.
"""

from __future__ import annotations

from minidock.net import ipam, netns
from minidock.net.helper import Setup, veth_name

__all__ = ["Setup", "begin", "release", "restore_firewall", "veth_name"]


def begin() -> Setup:
    return Setup()


def release(cid: str) -> None:
    """The run of ``cid`` ended: its /run/netns entry goes, its address and published ports
    go back."""
    netns.unpublish(cid)
    with ipam.Leases() as leases:
        ip = leases.leases.get(cid)
        published = [f for f in leases.forwards() if f.ip == ip] if ip else []
        if not leases.release(cid):
            return
        leases.save()
        if published and leases.has_subnet():
            from minidock.net import firewall

            subnet, _ = leases.subnet([], None)
            firewall.apply(ipam.BRIDGE, str(subnet), leases.forwards())
    if published:
        from minidock.net import conntrack

        conntrack.forget(published)


def restore_firewall() -> None:
    """Apply minidock's nft table again, as the leases say it should be (after a firewall
    reload took it away)."""
    from minidock.net import firewall

    with ipam.Leases() as leases:
        if leases.has_subnet():
            subnet, _ = leases.subnet([], None)
            firewall.apply(ipam.BRIDGE, str(subnet), leases.forwards())
