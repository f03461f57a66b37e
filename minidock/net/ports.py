"""Published ports: Docker's ``-p`` grammar, the host ports they take, and how they print.

    parse(specs)              -p values -> (ExposedPorts, PortBindings) as Docker stores them
                              in Config and HostConfig (go-connections' nat.ParsePortSpec)
    wanted(config, host_config)
                              what a run publishes: PortBindings, plus every exposed port with
                              a random host port under -P (PublishAllPorts)
    Reservation               one bound socket per published host port, held by the process
                              that waits for the container (the CLI or the monitor): the
                              kernel's own port table says whether a port is free, a host
                              process or another container that took it first makes the run
                              fail with Docker's message, and the port is free again the
                              moment the run ends, however it ends
    settings_ports(...)       NetworkSettings.Ports: every exposed port, null if unpublished
    ps_column(ports)          the PORTS column (docker/cli's DisplayablePorts: runs of ports
                              collapse to ranges)
    port_lines(ports, which)  `minidock port`'s lines

Ports are IPv4 only: a binding to an IPv6 address is refused. Random host ports come from
the kernel's ephemeral range (net.ipv4.ip_local_port_range), lowest free first, as Docker's
allocator does.
"""

from __future__ import annotations

import ipaddress
import socket

from minidock.errors import Conflict, InvalidArgument
from minidock.records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

PROTOS = ("tcp", "udp", "sctp")


@record(frozen=True)
class Forward:
    """One published port: host ``host_ip:host_port``/``proto`` -> container ``ip:port``."""

    proto: str
    host_ip: str
    host_port: int
    port: int
    ip: str = ""


def _port_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports")
    start, sep, end = text.partition("-")
    lo = _uint16(start)
    hi = _uint16(end) if sep else lo
    if hi < lo:
        raise ValueError(f"invalid range specified for port: {text}")
    return lo, hi


def _uint16(text: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFF:
        raise ValueError(text)
    return int(text)


def _split(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    n = len(parts)
    if n == 1:
        return "", "", parts[0]
    if n == 2:
        return "", parts[0], parts[1]
    if n == 3:
        return parts[0], parts[1], parts[2]
    return ":".join(parts[:n - 2]), parts[n - 2], parts[n - 1]


def parse_spec(raw: str) -> list[tuple[str, dict[str, str]]]:
    """One -p value -> [("80/tcp", {"HostIp": "", "HostPort": "8080"}), ...]."""
    ip, host_port, container_port = _split(raw)
    parts = container_port.split("/")
    if not parts[0]:
        proto, container_port = "", ""
    elif len(parts) == 1 or not parts[1]:
        proto, container_port = "tcp", parts[0]
    else:
        proto, container_port = parts[1], parts[0]
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"Invalid ip address: {ip}") from None
        if addr.version == 6:
            raise InvalidArgument(f"publishing on an IPv6 address is not supported by "
                                  f"minidock (IPv4 only): {ip}")
    if not container_port:
        raise InvalidArgument(f"No port specified: {raw}<empty>")
    try:
        start, end = _port_range(container_port)
    except ValueError:
        raise InvalidArgument(f"Invalid containerPort: {container_port}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _port_range(host_port)
        except ValueError:
            raise InvalidArgument(f"Invalid hostPort: {host_port}") from None
    if host_port and end - start != host_end - host_start and end != start:
        raise InvalidArgument("Invalid ranges specified for container and host Ports: "
                              f"{container_port} and {host_port}")
    if proto.lower() not in PROTOS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    if proto.lower() == "sctp":
        raise InvalidArgument(f"publishing sctp ports is not supported by minidock: {raw}")
    out = []
    for i in range(end - start + 1):
        hp = str(host_start + i) if host_port else ""
        if start == end and host_start != host_end:
            hp = f"{host_start}-{host_end}"  # one of the range, whichever is free
        out.append((f"{start + i}/{proto.lower()}", {"HostIp": ip, "HostPort": hp}))
    return out


def parse(specs: Iterable[str]
          ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """-p values -> (ExposedPorts, PortBindings), Docker's shapes."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for raw in specs:
        for key, binding in parse_spec(raw):
            exposed[key] = {}
            bindings.setdefault(key, []).append(binding)
    return exposed, bindings


def parse_expose(values: Iterable[str]) -> dict[str, dict[str, Any]]:
    """--expose values (a port, a range, with /proto) -> ExposedPorts."""
    out: dict[str, dict[str, Any]] = {}
    for raw in values:
        port, _, proto = raw.partition("/")
        proto = (proto or "tcp").lower()
        try:
            start, end = _port_range(port)
        except ValueError:
            raise InvalidArgument(f"invalid range format for --expose: {raw}") from None
        if proto not in PROTOS:
            raise InvalidArgument(f"Invalid proto: {proto}")
        for p in range(start, end + 1):
            out[f"{p}/{proto}"] = {}
    return out


def _key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto or "tcp"


def wanted(config: dict[str, Any], host_config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(container port key, host ip, host port spec) for each binding of this run."""
    bindings = host_config.get("PortBindings") or {}
    out = []
    for key, entries in sorted(bindings.items(), key=lambda kv: _key(kv[0])):
        for b in entries or [{}]:
            out.append((key, b.get("HostIp") or "", b.get("HostPort") or ""))
    if host_config.get("PublishAllPorts"):
        for key in sorted(config.get("ExposedPorts") or {}, key=_key):
            if key not in bindings:
                out.append((key, "", ""))
    return out


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


class Reservation:
    """The host ports of one run, each held by a bound socket (see the module's docstring)."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.forwards: list[Forward] = []

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets = []

    def detach(self) -> list[int]:
        """The sockets' descriptors, now the caller's to keep (the monitor's, across exec)."""
        fds = [s.detach() for s in self.sockets]
        self.sockets = []
        return fds

    def take(self, wants: Sequence[tuple[str, str, str]], endpoint: str,
             holder_of: Any = None) -> None:
        """Bind every wanted host port; Conflict with Docker's message if one is taken."""
        lo, hi = ephemeral_range()
        for key, host_ip, spec in wants:
            port, proto = _key(key)
            if spec and spec != "0":
                first, _, last = spec.partition("-")
                candidates: Iterable[int] = range(int(first), int(last or first) + 1)
                ranged = bool(last)
            else:
                candidates, ranged = range(lo, hi + 1), True
            err: OSError | None = None
            for host_port in candidates:
                s = socket.socket(socket.AF_INET,
                                  socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
                try:
                    s.bind((host_ip or "0.0.0.0", host_port))
                except OSError as e:
                    s.close()
                    err = e
                    if ranged:
                        continue
                    raise self._refusal(endpoint, proto, host_ip, host_port, e,
                                        holder_of) from None
                s.set_inheritable(False)
                self.sockets.append(s)
                self.forwards.append(Forward(proto, host_ip, host_port, port))
                break
            else:
                what = f"{host_ip or '0.0.0.0'}:{spec or f'{lo}-{hi}'}"
                raise Conflict(f"driver failed programming external connectivity on endpoint "
                               f"{endpoint}: no free host port in {what}/{proto}"
                               + (f" ({err.strerror})" if err else ""))

    @staticmethod
    def _refusal(endpoint: str, proto: str, host_ip: str, host_port: int, e: OSError,
                 holder_of: Any) -> Conflict:
        where = f"{host_ip or '0.0.0.0'}:{host_port}"
        head = f"driver failed programming external connectivity on endpoint {endpoint}: "
        if holder_of is not None and holder_of(proto, host_port):
            return Conflict(head + f"Bind for {where} failed: port is already allocated")
        net = "tcp4" if proto == "tcp" else "udp4"
        return Conflict(head + f"listen {net} {where}: bind: "
                        + (e.strerror or str(e)).lower())


def settings_ports(config: dict[str, Any], forwards: Iterable[Forward]
                   ) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports of a running container."""
    out: dict[str, list[dict[str, str]] | None] = {
        key: None for key in sorted(config.get("ExposedPorts") or {}, key=_key)}
    for f in forwards:
        entry = out.get(f"{f.port}/{f.proto}") or []
        entry.append({"HostIp": f.host_ip or "0.0.0.0", "HostPort": str(f.host_port)})
        out[f"{f.port}/{f.proto}"] = entry
    return dict(sorted(out.items()))  # as Go marshals a map: keys in byte order


def _api_ports(ports: dict[str, Any]) -> list[tuple[int, str, int, str]]:
    """(private, ip, public, type) as the API's container list gives them."""
    out = []
    for key, bindings in (ports or {}).items():
        private, proto = _key(key)
        if not bindings:
            out.append((private, "", 0, proto))
            continue
        for b in bindings:
            out.append((private, b.get("HostIp") or "", int(b.get("HostPort") or 0), proto))
    return out


def ps_column(ports: dict[str, Any]) -> str:
    """docker ps's PORTS: runs of ports sharing ip and protocol, where host and container
    port are equal, collapse into a range; other mappings come after, one by one."""
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    for private, ip, public, proto in sorted(_api_ports(ports),
                                             key=lambda p: (p[0], p[1], p[2], p[3])):
        key = proto
        if ip:
            if public != private:
                mappings.append(f"{ip}:{public}->{private}/{proto}")
                continue
            key = f"{ip}/{proto}"
        group = groups.get(key)
        if group is None:
            groups[key] = [private, private]
            order.append(key)
        elif private == group[1] + 1:
            group[1] = private
        else:
            result.append(_group(key, *group))
            groups[key] = [private, private]
    result += [_group(key, *groups[key]) for key in order]
    return ", ".join(result + mappings)


def _group(key: str, first: int, last: int) -> str:
    ip, _, proto = key.rpartition("/")
    text = str(first) if first == last else f"{first}-{last}"
    if ip:
        text = f"{ip}:{text}->{text}"
    return f"{text}/{proto}"


def port_lines(ports: dict[str, Any], which: str | None = None) -> list[str] | None:
    """`port CONTAINER [PRIVATE_PORT[/PROTO]]`: None when ``which`` is not published."""
    if which is None:
        lines = []
        for key, bindings in sorted((ports or {}).items(), key=lambda kv: _key(kv[0])):
            for b in bindings or []:
                lines.append(f"{key} -> {b['HostIp']}:{b['HostPort']}")
        return lines
    bindings = (ports or {}).get(which)
    if not bindings:
        return None
    return [f"{b['HostIp']}:{b['HostPort']}" for b in bindings]
