"""The links of the default bridge, through netlink (pyroute2, imported only here).

    bridge    minidock0, the gateway address on it, up; route_localnet on it so a port
              published at 127.0.0.1 can be forwarded to a container
    veth      md<10 hex> on the host, enslaved to the bridge (hairpin mode on), up; its peer
              is created straight in the container's netns as eth0 (MAC derived from the
              address, MTU of the host's default route) in the same request
    eth0      configured from inside the container's netns (IPv6 off, address, up, default
              route via the gateway) by a process that joined it: the socket a Netlink
              opens belongs to the netns its opener was in

Every request is one traced step (``--trace`` shows it with its reason).
"""

from __future__ import annotations

import socket

from minidock.linux import trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def iproute_class() -> Any:
    """pyroute2's IPRoute, loaded without the package's ``__init__``.

    ``import pyroute2`` imports every protocol pyroute2 speaks (NDB, IPDB, wireguard, nl80211,
    conntrack...): ~90 ms, most of a container start. IPRoute itself, from
    pyroute2.iproute.linux, needs a third less. So the package is entered as a bare namespace
    (its ``__path__`` only) and the one module loaded; any failure (another pyroute2 layout)
    falls back to the plain import. Only the network helper process does this, and it needs
    nothing else from pyroute2.
    """
    import sys

    loaded = sys.modules.get("pyroute2.iproute.linux")
    if loaded is not None:
        return loaded.IPRoute
    if "pyroute2" not in sys.modules:
        import importlib.util
        import types

        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations:
            package = types.ModuleType("pyroute2")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__package__ = "pyroute2"
            sys.modules["pyroute2"] = package
            try:
                from pyroute2.iproute.linux import IPRoute

                return IPRoute
            except Exception:
                for name in [n for n in sys.modules
                             if n == "pyroute2" or n.startswith("pyroute2.")]:
                    del sys.modules[name]
    from pyroute2 import IPRoute

    return IPRoute


class Netlink:
    """One rtnetlink socket (pyroute2's IPRoute) in the netns of the process that opened it."""

    def __init__(self) -> None:
        self.ipr: Any = iproute_class()()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, what: str, fn: str, *args: Any, why: str = "", **kwargs: Any) -> Any:
        """One request, traced as ``netlink <what> = 0`` (the kernel's answers stay here)."""
        answer: list[Any] = []
        trace.step(f"netlink {what}",
                   lambda: answer.append(getattr(self.ipr, fn)(*args, **kwargs)), why)
        return answer[0]

    def index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    def routes(self, but: str = "") -> list[str]:
        """The host's IPv4 routes of the main table, as CIDR strings; not those through the
        link ``but`` (the bridge's own, when it is there already)."""
        skip = self.index(but) if but else None
        out = []
        for route in self.call("RTM_GETROUTE ipv4 main table", "get_routes",
                               family=socket.AF_INET, table=254,
                               why="a bridge subnet must overlap none of them"):
            dst = route.get_attr("RTA_DST")
            if dst and (skip is None or route.get_attr("RTA_OIF") != skip):
                out.append(f"{dst}/{route['dst_len']}")
        return out

    def default_mtu(self) -> int:
        for route in self.ipr.get_default_routes(family=socket.AF_INET):
            idx = route.get_attr("RTA_OIF")
            if idx:
                return int(self.ipr.get_links(idx)[0].get_attr("IFLA_MTU") or 1500)
        return 1500

    def ensure_bridge(self, name: str, gateway: str, prefix: int) -> int:
        idx = self.index(name)
        if idx is None:
            self.call(f"RTM_NEWLINK {name} type bridge", "link", "add", ifname=name,
                      kind="bridge", why="the switch every container's veth plugs into")
            idx = self.index(name)
            assert idx is not None
        have = set()
        for a in self.ipr.get_addr(index=idx, family=socket.AF_INET):
            address, length = a.get_attr("IFA_ADDRESS"), a["prefixlen"]
            if (address, length) == (gateway, prefix):
                have.add(address)
                continue
            self.call(f"RTM_DELADDR {address}/{length} dev {name}", "addr", "del", index=idx,
                      address=address, prefixlen=length,
                      why="not the gateway of the bridge's subnet (chosen anew since)")
        if gateway not in have:
            self.call(f"RTM_NEWADDR {gateway}/{prefix} dev {name}", "addr", "add", index=idx,
                      address=gateway, prefixlen=prefix, why="the containers' gateway")
        with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "w") as f:
            f.write("1")  # DNAT of 127.0.0.1:<published port> may route to the bridge
        self.call(f"RTM_NEWLINK {name} up", "link", "set", index=idx, state="up")
        return idx

    def add_veth(self, bridge_idx: int, host_name: str, pid: int, mac: str, mtu: int,
                 peer: str = "eth0") -> None:
        """``host_name`` on the bridge, its peer (eth0; another network's: a temporary name,
        see ``configure``) in the netns of ``pid``."""
        stale = self.index(host_name)
        if stale is not None:  # a previous run's, its netns still being torn down
            self.call(f"RTM_DELLINK {host_name}", "link", "del", index=stale,
                      why="left by this container's previous run")
        self.call(f"RTM_NEWLINK {host_name} type veth peer {peer} (netns of pid {pid}, "
                  f"{mac}, mtu {mtu}) master bridge up", "link", "add", ifname=host_name,
                  kind="veth", master=bridge_idx, mtu=mtu, state="up",
                  peer={"ifname": peer, "net_ns_pid": pid, "address": mac, "mtu": mtu},
                  why="a virtual cable: one end on the bridge, the other the container's eth0")
        # a container reaching its own published port (host address -> DNAT -> itself):
        # the bridge must send the frame back out of the port it came in through
        host_idx = self.index(host_name)
        self.call(f"RTM_NEWLINK {host_name} bridge port hairpin on", "brport", "set",
                  index=host_idx, mode=1,
                  why="hairpin: a container may reach itself through its published port")

    def configure(self, ip: str, prefix: int, gateway: str, peer: str = "eth0") -> str:
        """From inside the container's netns: the interface's address, up; eth0 gets the
        default route. Another network's interface (``network connect``), made under a
        temporary name, becomes the lowest free ethN first. Its name."""
        idx = self.index(peer)
        assert idx is not None
        name = peer
        if peer != "eth0":
            taken = {link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()}
            name = next(f"eth{n}" for n in range(1, 100) if f"eth{n}" not in taken)
            self.call(f"RTM_NEWLINK {peer} name {name}", "link", "set", index=idx,
                      ifname=name, why="the container's next interface")
        # the bridge is IPv4 only: no link-local address or router solicitations on it,
        # as Docker on a network without IPv6 (this /proc/sys/net is the netns we are in)
        trace.step(f"write /proc/sys/net/ipv6/conf/{name}/disable_ipv6 = 1",
                   lambda: _write(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1"),
                   "the bridge network has no IPv6")
        self.call(f"RTM_NEWADDR {ip}/{prefix} dev {name}", "addr", "add", index=idx,
                  address=ip, prefixlen=prefix, why="the container's address on the bridge")
        self.call(f"RTM_NEWLINK {name} up", "link", "set", index=idx, state="up")
        if name == "eth0":
            self.call(f"RTM_NEWROUTE default via {gateway}", "route", "add",
                      dst="0.0.0.0/0", gateway=gateway,
                      why="everything off the bridge goes through the host")
        return name

    def remove(self, name: str) -> bool:
        idx = self.index(name)
        if idx is None:
            return False
        try:
            self.call(f"RTM_DELLINK {name}", "link", "del", index=idx)
        except Exception as e:  # pyroute2's NetlinkError carries the errno as .code
            if getattr(e, "code", None) == 19:  # ENODEV: its netns took it meanwhile
                return False
            raise OSError(getattr(e, "code", 0) or 5, f"delete link {name}: {e}") from None
        return True


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def host_routes() -> list[str]:
    """The IPv4 routes of this netns's main table, as CIDR strings."""
    with Netlink() as nl:
        return nl.routes()


def container_links() -> list[str]:
    """The container veths (md<10 hex>) of this netns, from /proc/self/net/dev (sysfs would
    show the netns of whoever mounted it): no netlink needed."""
    try:
        with open("/proc/self/net/dev") as f:
            names = [line.split(":", 1)[0].strip() for line in f.readlines()[2:]]
    except OSError:
        return []
    return sorted(n for n in names if len(n) == 12 and n.startswith("md")
                  and all(c in "0123456789abcdef" for c in n[2:]))


def remove_link(name: str) -> bool:
    """Delete a link of this netns by name (gone already: False)."""
    with Netlink() as nl:
        return nl.remove(name)
