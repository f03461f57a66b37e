"""Networking: minidock's default bridge, without a daemon.

    begin(paths)              as soon as the engine knows a container goes on the bridge: a
                              forked helper (net.helper) loads pyroute2 and readies the bridge
                              while the engine mounts and creates the container
    Setup.attach(cid, pid, forwards)
                              between the runtime's create and start: a lease, the published
                              ports in minidock's nft table, a veth into the container's netns
                              as eth0; the container's NetworkSettings
    release(paths, cid)       when the run ends: the lease and the ports go back (the table is
                              rebuilt without them, their conntrack entries flushed); the veth
                              goes with the netns, by the kernel

The package is the only importer of pyroute2 (a contract test says so); only the helper
imports it, and ``release`` only for a container that published ports (conntrack):
``run --network none`` never loads it.
"""

from __future__ import annotations

from minidock.net import ipam
from minidock.net.helper import Setup, veth_name
from minidock.paths import Paths

__all__ = ["Setup", "begin", "release", "veth_name"]


def begin(paths: Paths) -> Setup:
    return Setup(paths)


def release(paths: Paths, cid: str) -> None:
    """The run of ``cid`` ended: its address and published ports go back."""
    with ipam.Leases(paths) as leases:
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
