"""Networks by name: the predefined three and the user-defined bridges, as Docker keeps them.

    <root>/network/networks/<id>.json    one user-defined network (Docker's inspect shape:
                                         Name, Id, Created, Driver, IPAM, Internal, Options,
                                         Labels) and its bridge device's name
    <root>/network/predefined.json       the ids of bridge, host and none, made once

Definitions belong to a data root, as Docker's to a daemon; what runs on them (addresses,
ports, members) is the host's, in /run/minidock-network (ipam), like the bridges themselves.
A user network's bridge is ``mdbr-<10 hex of its id>`` unless ``-o
com.docker.network.bridge.name=NAME`` names it. Its subnet is the one given, else the first of
Docker's pools that overlaps no route of the host, no other network of this root and not the
default bridge's. ``create`` brings the bridge up and puts it in minidock's nft table;
``remove`` takes both away, and refuses while a container holds an address on it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time

from minidock.errors import ClientRefused, Conflict, InvalidArgument, NotFound
from minidock.linux import flock
from minidock.net import ipam
from minidock.paths import Paths
from minidock.records import record
from minidock.storage.atomic import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PREDEFINED = ("bridge", "host", "none")
DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_IFNAME = re.compile(r"[a-zA-Z0-9_.-]{1,15}\Z")


@record
class Network:
    """A network as ``run --network`` and ``network inspect`` see it."""

    id: str
    name: str
    driver: str  # bridge, host, null
    bridge: str = ""  # the bridge device ("" for host and none)
    subnet: str = ""  # "" for the default bridge until it is up (ipam chooses it)
    gateway: str = ""
    internal: bool = False
    created: str = ""
    options: dict[str, str] | None = None
    labels: dict[str, str] | None = None

    @property
    def user_defined(self) -> bool:
        return self.name not in PREDEFINED

    def to_inspect(self, containers: dict[str, Any]) -> dict[str, Any]:
        config = [{"Subnet": self.subnet, "Gateway": self.gateway}] if self.subnet else []
        if self.name == "bridge" and config:  # (docker 20.10's shows the subnet alone)
            config = [{"Subnet": self.subnet}]
        options = dict(self.options or {})
        if self.name == "bridge":
            options = {"com.docker.network.bridge.default_bridge": "true",
                       "com.docker.network.bridge.enable_icc": "true",
                       "com.docker.network.bridge.enable_ip_masquerade": "true",
                       "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                       BRIDGE_NAME_OPTION: ipam.BRIDGE,
                       "com.docker.network.driver.mtu": "1500"}
        return {
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local",
            "Driver": self.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if self.name == "bridge" else {},
                     "Config": config},
            "Internal": self.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": options, "Labels": dict(self.labels or {}),
        }


def _dir(paths: Paths) -> str:
    return os.path.join(paths.root, "network", "networks")


def _lock(paths: Paths) -> Any:
    """This root's network definitions, one change at a time."""
    os.makedirs(paths.locks, mode=0o700, exist_ok=True)
    return flock.locked(os.path.join(paths.locks, "networks.lock"))


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _predefined(paths: Paths) -> list[Network]:
    path = os.path.join(paths.root, "network", "predefined.json")
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict) or set(doc) != {*PREDEFINED, "Created"}:
        doc = {name: os.urandom(32).hex() for name in PREDEFINED}
        doc["Created"] = _now()
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write(path, json.dumps(doc).encode(), 0o600)
    out = []
    for name in PREDEFINED:
        net = Network(id=doc[name], name=name, driver=DRIVERS[name], created=doc["Created"])
        if name == "bridge":
            net.bridge = ipam.BRIDGE
            with ipam.Leases() as leases:
                if leases.has_subnet():
                    net.subnet, net.gateway = leases.doc["subnet"], leases.doc["gateway"]
        out.append(net)
    return out


def _load(path: str) -> Network | None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        return Network(id=doc["Id"], name=doc["Name"], driver="bridge", bridge=doc["Bridge"],
                       subnet=doc["Subnet"], gateway=doc["Gateway"],
                       internal=bool(doc.get("Internal")), created=doc.get("Created", ""),
                       options=doc.get("Options") or {}, labels=doc.get("Labels") or {})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def user_networks(paths: Paths) -> list[Network]:
    try:
        names = sorted(os.listdir(_dir(paths)))
    except FileNotFoundError:
        return []
    found = (_load(os.path.join(_dir(paths), n)) for n in names if n.endswith(".json"))
    return [n for n in found if n is not None]


def all_networks(paths: Paths) -> list[Network]:
    """Every network this root knows, sorted by name (as `network ls`)."""
    return sorted(_predefined(paths) + user_networks(paths), key=lambda n: n.name)


def find(paths: Paths, ref: str) -> Network:
    """A network by name, full id or unique id prefix; NotFound as Docker words it."""
    nets = all_networks(paths)
    for net in nets:
        if ref in (net.name, net.id):
            return net
    matches = [n for n in nets if ref and n.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"network {ref} not found")


def _taken_subnets(paths: Paths, first_pool: str) -> list[ipaddress.IPv4Network]:
    taken = [ipaddress.IPv4Network(n.subnet) for n in user_networks(paths)]
    with ipam.Leases() as leases:  # the default bridge's, or the pool it would take first
        taken.append(ipaddress.IPv4Network(leases.doc["subnet"]) if leases.has_subnet()
                     else ipaddress.IPv4Network(first_pool))
    return taken


def create(paths: Paths, name: str, subnet: str | None = None, gateway: str | None = None,
           internal: bool = False, options: dict[str, str] | None = None,
           labels: dict[str, str] | None = None) -> Network:
    """A new bridge network: its definition, its bridge up, its rules in the table."""
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
    options = dict(options or {})
    with _lock(paths):
        if any(n.name == name for n in all_networks(paths)):
            raise Conflict(f"network with name {name} already exists")
        from minidock.net import links
        from minidock.settings import load_engine_config

        address_pools = load_engine_config().address_pools
        taken = _taken_subnets(paths, next(iter(ipam.pools_of(address_pools))))

        routes = [ipaddress.IPv4Network(r, strict=False) for r in links.host_routes()]
        if subnet:
            try:
                net = ipaddress.IPv4Network(subnet, strict=False)
            except ValueError:
                raise InvalidArgument(f"Invalid subnet {subnet} : invalid CIDR address: "
                                      f"{subnet}") from None
            if any(net.overlaps(t) for t in taken) or any(
                    r.prefixlen > 0 and net.overlaps(r) for r in routes):
                raise Conflict("Pool overlaps with other one on this address space")
        else:
            net, _ = ipam.pick_subnet([*routes, *taken], pools=ipam.pools_of(address_pools))
        if gateway:
            try:
                gw = ipaddress.IPv4Address(gateway)
            except ValueError:
                raise ClientRefused(f'invalid argument "{gateway}" for "--gateway" flag: '
                                    "invalid string being converted to IP address: "
                                    f"{gateway}") from None
            if gw not in net:  # (docker's CLI checks it, before the daemon)
                raise ClientRefused(f"no matching subnet for gateway {gateway}")
        else:
            gw = next(net.hosts())
        nid = os.urandom(32).hex()
        bridge = options.get(BRIDGE_NAME_OPTION) or f"mdbr-{nid[:10]}"
        if not _IFNAME.match(bridge):
            raise InvalidArgument(f"invalid bridge name {bridge!r}: at most 15 of "
                                  "[a-zA-Z0-9_.-]")
        if any(n.bridge == bridge for n in user_networks(paths)) or bridge == ipam.BRIDGE:
            raise Conflict(f"bridge name {bridge} is in use by another network")
        network = Network(id=nid, name=name, driver="bridge", bridge=bridge, subnet=str(net),
                          gateway=str(gw), internal=internal, created=_now(),
                          options=options, labels=dict(labels or {}))
        doc = {"Id": nid, "Name": name, "Bridge": bridge, "Subnet": str(net),
               "Gateway": str(gw), "Internal": internal, "Created": network.created,
               "Options": options, "Labels": network.labels}
        os.makedirs(_dir(paths), mode=0o700, exist_ok=True)
        atomic_write(os.path.join(_dir(paths), f"{nid}.json"), json.dumps(doc).encode(), 0o600)
    try:
        bring_up(network)
    except BaseException:
        os.unlink(os.path.join(_dir(paths), f"{nid}.json"))
        raise
    return network


def bring_up(network: Network) -> None:
    """The bridge device and its file in /run/minidock-network, the table with it."""
    from minidock.net import firewall, links

    prefix = ipaddress.IPv4Network(network.subnet).prefixlen
    with ipam.Leases(network.bridge) as leases:
        if leases.define(network.subnet, network.gateway, network.internal):
            leases.save()
        with links.Netlink() as nl:
            nl.ensure_bridge(network.bridge, network.gateway, prefix)
        firewall.apply(*firewall.of([leases, *leases.others()]))


def remove(paths: Paths, ref: str) -> Network:
    """Remove a user network: refused for the predefined ones and while in use."""
    from minidock.net import firewall, links

    with _lock(paths):
        network = find(paths, ref)
        if not network.user_defined:
            raise Conflict(f"{network.name} is a pre-defined network and cannot be removed")
        with ipam.Leases(network.bridge) as leases:
            if leases.leases:
                raise Conflict(f"error while removing network: network {network.name} id "
                               f"{network.id} has active endpoints")
            leases.remove_file()
            try:  # (its resolver, if one still runs, exits: the network's file is gone)
                os.unlink(os.path.join(ipam.STATE_DIR, f"{network.bridge}.dns.lock"))
            except FileNotFoundError:
                pass
            others = leases.others()
            with links.Netlink() as nl:
                nl.remove(network.bridge)
            firewall.apply(*firewall.of(others))
        os.unlink(os.path.join(_dir(paths), f"{network.id}.json"))
    return network


def members(network: Network) -> dict[str, str]:
    """cid -> the address it holds on ``network`` (the host's file, read as it is)."""
    leases = ipam.Leases(network.bridge)
    for st in leases.others(include_self=True):
        if st.bridge == network.bridge:
            return dict(st.leases)
    return {}
