"""A user network's name server: on demand, one per network, gone with its last member.

Docker answers names on a user network from dockerd (127.0.0.11 inside each container).
minidock has no daemon; the members' /etc/hosts (net.names) serve what reads that file, and
this small resolver serves what asks a DNS server (nslookup, dig, resolvers that skip
/etc/hosts), as podman's aardvark-dns does:

    python -m minidock.net.dns <bridge>     started by the network helper when a container
                                            joins the network and none runs (an exclusive
                                            flock on <bridge>.dns.lock says one runs)
    listens on <gateway>:53/udp             the members' resolv.conf names the gateway
    A <name>                                the members' names (net.names's list), from the
                                            network's file, read at each query
    anything else                           relayed to the host's own name servers
    exits                                   once the network has had no member for 2 s

It never runs with nothing to serve, holds no state of its own, and a kill costs only the
names until the next container joins.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

from minidock.net import ipam

IDLE_SECONDS = 2.0
TTL = 600  # Docker's embedded DNS answers with 600 s


def lock_path(bridge: str) -> str:
    return os.path.join(ipam.STATE_DIR, f"{bridge}.dns.lock")


def running(bridge: str) -> bool:
    from minidock.linux import flock

    return flock.is_held(lock_path(bridge))


def start(bridge: str) -> None:
    """Start the resolver of ``bridge`` unless one runs; it detaches at once."""
    if running(bridge):
        return
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    boot = (f"import sys; sys.path.insert(0, {here!r}); "
            f"from minidock.net.dns import main; main({bridge!r})")
    subprocess.Popen([sys.executable, "-c", boot], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                     start_new_session=True, close_fds=True)


def _members(bridge: str) -> tuple[dict[str, str], str | None]:
    """name (lower case) -> address, and the gateway; ({}, None) when the network is gone."""
    try:
        with open(ipam.state_file(bridge), "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return {}, None
    names: dict[str, str] = {}
    leases = doc.get("leases") or {}
    for cid, member in (doc.get("members") or {}).items():
        ip = leases.get(cid)
        for name in member.get("names") or []:
            if ip:
                names[str(name).lower().rstrip(".")] = str(ip)
    return names, doc.get("gateway")


def _upstreams() -> list[str]:
    """The host's own name servers (this process runs in the host's netns: 127.0.0.53 and
    other local resolvers are reachable from here)."""
    servers = []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    servers.append(fields[1])
    except OSError:
        pass
    return servers or ["8.8.8.8"]


def parse_question(packet: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, end offset of the question) of a one-question query, else None."""
    if len(packet) < 12 or struct.unpack("!H", packet[4:6])[0] != 1:
        return None
    labels, i = [], 12
    while i < len(packet):
        n = packet[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > len(packet):
            return None
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 4 > len(packet):
        return None
    qtype = struct.unpack("!H", packet[i:i + 2])[0]
    return ".".join(labels).lower(), qtype, i + 4


def answer(packet: bytes, end: int, ip: str | None) -> bytes:
    """An authoritative reply to ``packet`` (question up to ``end``): one A record for
    ``ip``, or none (the name is known, not for that type)."""
    qid, flags = struct.unpack("!HH", packet[:4])
    flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080  # QR, AA, RD copied, RA
    head = struct.pack("!HHHHHH", qid, flags, 1, 1 if ip else 0, 0, 0)
    body = packet[12:end]
    if ip:
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + socket.inet_aton(ip)
    return head + body


def _relay(packet: bytes, servers: list[str]) -> bytes | None:
    for server in servers:
        with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET,
                           socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            try:
                s.sendto(packet, (server, 53))
                return s.recv(65535)
            except OSError:
                continue
    return None


def main(bridge: str) -> None:  # pragma: no cover - a process of its own, tested end to end
    from minidock.linux import flock

    os.makedirs(ipam.STATE_DIR, mode=0o700, exist_ok=True)
    try:
        held = flock.HeldLock(lock_path(bridge), blocking=False)
    except BlockingIOError:
        return  # another one serves this network
    names, gateway = _members(bridge)
    if not gateway:
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((gateway, 53))
    except OSError:
        return
    idle_since: float | None = None
    try:
        while True:
            ready, _, _ = select.select([sock], [], [], 0.5)
            names, gw = _members(bridge)
            if gw != gateway:
                return  # the network went (or changed)
            if names:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_SECONDS:
                return
            if not ready:
                continue
            packet, peer = sock.recvfrom(65535)
            question = parse_question(packet)
            if question is None:
                continue
            name, qtype, end = question
            if name.rstrip(".") in names:
                reply = answer(packet, end, names[name.rstrip(".")] if qtype == 1 else None)
            else:
                relayed = _relay(packet, _upstreams())
                if relayed is None:
                    continue
                reply = relayed
            sock.sendto(reply, peer)
    finally:
        sock.close()
        held.release()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1])
