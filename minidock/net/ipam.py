"""Addresses on minidock's default bridge: its subnet, and one lease per running container.

Pure choices, and the one file they are kept in::

    pick_subnet(host routes)      settings' "bip" if given, else the first of Docker's default
                                  pools (172.17.0.0/16 ... 172.31.0.0/16, 192.168.0.0/20 ...)
                                  that overlaps no route of the host (docker0's among them)
    next_free(subnet, taken)      the lowest address after the gateway no lease holds
    mac_of(ip)                    02:42 + the address, as Docker derives a container's MAC

    /run/minidock-network/bridge.json
                                  {"name", "id", "subnet", "gateway", "leases": {cid: ip},
                                  "ports": {cid: [[proto, host ip, host port, port], ...]}},
                                  written atomically under network.lock beside it
    /run/minidock-network/<bridge>.json
                                  the same for a user network's bridge, with "internal" and
                                  "members" (the names each member answers to, for the
                                  others' /etc/hosts)

The bridge is the host's, whatever --root or --run-root a command was given, so its leases
are too: two roots leasing from one subnet each would hand out the same address twice. They
live on /run (a tmpfs): after a reboot no container runs and the bridge is gone with them.
"""

from __future__ import annotations

import ipaddress
import json
import os

from minidock.errors import CorruptRecord, InvalidArgument
from minidock.jsonobj import parse_object
from minidock.linux import flock
from minidock.net.ports import Forward
from minidock.storage.atomic import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

BRIDGE = "minidock0"
# Docker's default-address-pools, in its order: /16s of 172.17-31, then /20s of 192.168
DEFAULT_POOLS = ([f"172.{n}.0.0/16" for n in range(17, 32)]
                 + [f"192.168.{n}.0/20" for n in range(0, 256, 16)])

Network = ipaddress.IPv4Network
Address = ipaddress.IPv4Address


def pick_subnet(routes: Iterable[Network], bip: str | None = None,
                pools: Iterable[str] = DEFAULT_POOLS) -> tuple[Network, Address]:
    """(subnet, gateway) for the bridge; InvalidArgument when nothing fits."""
    taken = [r for r in routes if r.prefixlen > 0]  # the default route overlaps everything
    if bip:
        try:
            iface = ipaddress.IPv4Interface(bip)
        except ValueError:
            raise InvalidArgument(f"invalid bip {bip!r}: want an address/prefix such as "
                                  "172.26.0.1/16") from None
        clash = next((r for r in taken if r.overlaps(iface.network)), None)
        if clash is not None:
            raise InvalidArgument(f"bip {bip} overlaps the host's route to {clash}")
        return iface.network, iface.ip
    for pool in pools:
        net = ipaddress.IPv4Network(pool)
        if not any(r.overlaps(net) for r in taken):
            return net, next(net.hosts())
    raise InvalidArgument("no free subnet for the bridge: every default pool overlaps a "
                          "route of this host; set \"bip\" in /etc/minidock/config.json")


def pools_of(address_pools: Iterable[tuple[str, int]]) -> list[str] | Iterator[str]:
    """The candidate subnets of the settings' default-address-pools ([(base, size)]), in
    order; Docker's defaults without any."""
    pools = list(address_pools)
    if not pools:
        return DEFAULT_POOLS
    return (str(net) for base, size in pools
            for net in ipaddress.IPv4Network(base).subnets(new_prefix=size))


def next_free(subnet: Network, gateway: Address, taken: Iterable[str]) -> Address:
    used = {ipaddress.IPv4Address(t) for t in taken} | {gateway}
    for host in subnet.hosts():
        if host not in used:
            return host
    raise InvalidArgument(f"no free address left in {subnet}")


def mac_of(ip: Address) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


STATE_DIR = "/run/minidock-network"


def holder_reader() -> Callable[[str, int], str | None]:
    """A lookup of which container publishes a host port on any bridge, reading the files as
    they are (no lock: it only chooses between two wordings of a refusal)."""
    def holder(proto: str, port: int) -> str | None:
        for leases in Leases().others(include_self=True):
            found = leases.holder_of(proto, port)
            if found:
                return found
        return None

    return holder


def state_file(bridge: str, state_dir: str = STATE_DIR) -> str:
    return os.path.join(state_dir, "bridge.json" if bridge == BRIDGE else f"{bridge}.json")


class Leases:
    """One bridge's file (bridge.json for minidock0, <bridge>.json for a user network's), read
    and written under the one lock of every bridge (``with Leases(bridge) as leases``): the
    nft table is built from all of them at once."""

    def __init__(self, bridge: str = BRIDGE, state_dir: str = STATE_DIR) -> None:
        self.bridge = bridge
        self.state_dir = state_dir
        self.path = state_file(bridge, state_dir)
        self._lock_path = os.path.join(state_dir, "network.lock")
        self.doc: dict[str, Any] = {}
        self._lock: flock.HeldLock | None = None

    def others(self, include_self: bool = False) -> list[Leases]:
        """The other bridges' files as they are (the caller holds the lock, or needs no
        certainty); with ``include_self``, this bridge's as on disk too."""
        out = []
        try:
            names = sorted(os.listdir(self.state_dir))
        except OSError:
            return []
        for name in names:
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.state_dir, name)
            if path == self.path and not include_self:
                continue
            other = Leases(BRIDGE if name == "bridge.json" else name[:-5], self.state_dir)
            try:
                with open(path, "rb") as f:
                    doc = json.loads(f.read())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict):
                other.doc = doc
                out.append(other)
        return out

    @property
    def internal(self) -> bool:
        return bool(self.doc.get("internal"))

    def remove_file(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Leases:
        os.makedirs(os.path.dirname(self._lock_path), mode=0o700, exist_ok=True)
        self._lock = flock.HeldLock(self._lock_path)
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        except BaseException:
            self._lock.release()
            raise
        try:
            self.doc = parse_object(data, f"network leases {self.path}", CorruptRecord) \
                if data.strip() else {}
        except CorruptRecord:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        atomic_write(self.path, json.dumps(self.doc, indent=1, sort_keys=True).encode(), 0o600)

    @property
    def leases(self) -> dict[str, str]:
        out: dict[str, str] = self.doc.setdefault("leases", {})
        return out

    def network_id(self) -> str:
        """The bridge network's id (64 hex, made once, as Docker's NetworkID)."""
        if "id" not in self.doc:
            self.doc["id"] = os.urandom(32).hex()
            self.save()
        return str(self.doc["id"])

    def has_subnet(self) -> bool:
        return "subnet" in self.doc

    def subnet(self, routes: Iterable[Network], bip: str | None) -> tuple[Network, Address]:
        """The bridge's subnet and gateway: as recorded, else chosen now and recorded."""
        if "subnet" not in self.doc:
            self.choose(routes, bip)
        return ipaddress.IPv4Network(self.doc["subnet"]), ipaddress.IPv4Address(self.doc["gateway"])

    def choose(self, routes: Iterable[Network], bip: str | None,
               pools: Iterable[str] = DEFAULT_POOLS) -> bool:
        """Choose the subnet again (nobody holds an address in it); whether it changed."""
        net, gw = pick_subnet(routes, bip, pools)
        return self.define(str(net), str(gw))

    def define(self, subnet: str, gateway: str, internal: bool = False) -> bool:
        """Record the bridge's subnet and gateway (a user network's, as its definition
        says); whether anything changed."""
        before = (self.doc.get("subnet"), self.doc.get("gateway"), self.internal)
        self.doc.update({"name": self.bridge, "subnet": subnet, "gateway": gateway,
                         "internal": internal})
        return before != (subnet, gateway, internal)

    def lease(self, cid: str, subnet: Network, gateway: Address,
              wanted: str | None = None) -> Address:
        """An address for ``cid``: the one it holds, ``wanted`` (--ip) if free, else the
        lowest free one."""
        if cid in self.leases:
            return ipaddress.IPv4Address(self.leases[cid])
        if wanted:
            ip = ipaddress.IPv4Address(wanted)
            holder = next((c for c, a in self.leases.items() if a == wanted), None)
            if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
                raise InvalidArgument(f"Invalid address {wanted}: It does not belong to any "
                                      "of this network's subnets.")
            if holder is not None or ip == gateway:
                raise InvalidArgument("Address already in use")
        else:
            ip = next_free(subnet, gateway, self.leases.values())
        self.leases[cid] = str(ip)
        return ip

    def release(self, cid: str) -> bool:
        """The container's address, published ports and names go back; whether it held
        any."""
        ports = self.doc.get("ports") or {}
        had_ports = ports.pop(cid, None) is not None
        (self.doc.get("members") or {}).pop(cid, None)
        return (self.leases.pop(cid, None) is not None) or had_ports

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        """cid -> {"names": [name, aliases...], "hosts": its /etc/hosts on the host}."""
        out: dict[str, dict[str, Any]] = self.doc.setdefault("members", {})
        return out

    def publish(self, cid: str, forwards: list[Forward]) -> None:
        ports = self.doc.setdefault("ports", {})
        if forwards:
            ports[cid] = [[f.proto, f.host_ip, f.host_port, f.port] for f in forwards]
        else:
            ports.pop(cid, None)

    def forwards(self) -> list[Forward]:
        """Every published port of every leaseholder, with the address it leads to."""
        out = []
        for cid, entries in (self.doc.get("ports") or {}).items():
            ip = self.leases.get(cid)
            if ip is None:
                continue
            for proto, host_ip, host_port, port in entries:
                out.append(Forward(str(proto), str(host_ip), int(host_port), int(port), ip))
        return out

    def holder_of(self, proto: str, host_port: int) -> str | None:
        """The container that publishes host port ``host_port``/``proto``, if any."""
        for cid, entries in (self.doc.get("ports") or {}).items():
            if any(e[0] == proto and int(e[2]) == host_port for e in entries):
                return str(cid)
        return None

    def holders(self) -> Iterator[str]:
        yield from list(self.leases)
