"""The engine's settings: Docker's daemon.json, the parts that matter (registries, runtimes).

Where it lives (``MINIDOCK_CONFIG_DIR`` overrides the directory, which is how the tests point
minidock at their own registries and CAs)::

    /etc/minidock/config.json                   {"registry-mirrors": ["https://mirror.example"],
                                                 "insecure-registries": ["myhost:5000",
                                                                         "10.0.0.0/8"],
                                                 "runtimes": {"kata": {"path": "/usr/bin/k",
                                                              "runtimeArgs": ["--debug"]}},
                                                 "default-runtime": "runc",
                                                 "bip": "172.26.0.1/16",
                                                 "firewall-driver": "iptables",
                                                 "userns-remap": "default",
                                                 "default-address-pools": [{"base":
                                                   "10.10.0.0/16", "size": 24}]}
    /etc/minidock/certs.d/<host[:port]>/ca.crt  extra CAs trusted for that registry (any *.crt)
    /etc/minidock/certs.d/<host[:port]>/x.cert  client certificate, with x.key next to it

What the settings mean, as in Docker (moby registry/config.go, registry/endpoint_v2.go):

- ``registry-mirrors`` are tried, in order, before Docker Hub when pulling a docker.io image;
  a mirror that fails is skipped. Pushes always go to Docker Hub itself.
- An *insecure* registry may be reached over plain HTTP, and its certificate is not verified
  unless certs.d has a CA for it (stricter than Docker, which never verifies one). localhost and
  127.0.0.0/8 (and ::1) are always insecure, as Docker's default ``insecure-registries``
  is 127.0.0.0/8. An entry is either ``host[:port]`` or a CIDR that an IP literal falls into
  (Docker also resolves names to match CIDRs; minidock does not touch DNS for that).
- ``runtimes`` names OCI runtimes with runc's command line beyond the ones known without
  configuration (``minidock``, the built-in one, and ``runc`` and ``crun`` found on PATH);
  ``default-runtime`` is the one a container gets without ``--runtime`` (else ``minidock``).
- ``bip`` is the default bridge's gateway and prefix; ``default-address-pools`` the ranges its
  subnet (without ``bip``) and the user networks' (without ``--subnet``) are cut from.
- ``firewall-driver`` (netavark's word): ``nftables`` (minidock's table) or ``iptables``
  (chains of its own, as Docker 20.10 keeps); unset, nftables unless it is not installed.
- ``userns-remap``: every container in a user namespace of its own, its root a host uid
  without privileges (Docker's key and lookup; see engine/spec/remap.py). ``run --userns
  host`` opts out, ``run --userns remap`` opts in without it. ``userns-remap-layers``:
  ``idmapped`` (idmapped layers, where the kernel can, else copies) or ``copy`` (Docker's
  chowned copies of the layers).

Not to be confused with an image config (the JSON a manifest points to). Loading is lazy and
pure apart from reading the files; nothing here opens a socket.
"""

from __future__ import annotations

import os

from minidock.errors import InvalidArgument
from minidock.jsonobj import parse_object
from minidock.records import field, record

CONFIG_DIR_ENV = "MINIDOCK_CONFIG_DIR"
DEFAULT_CONFIG_DIR = "/etc/minidock"
MAX_CONFIG_FILE = 1 << 20

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    import ipaddress
    from typing import Any

# Docker's default insecure-registries is 127.0.0.0/8; localhost and ::1 are loopback too.
_LOOPBACK_NETS = ("127.0.0.0/8", "::1/128")


def config_dir() -> str:
    return os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR


def split_host_port(netloc: str) -> tuple[str, int | None]:
    """``host:5000`` -> ("host", 5000); ``[::1]:5000`` -> ("::1", 5000); no port -> None."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidArgument(f"invalid registry address {netloc!r}")
        host, rest = netloc[1:end], netloc[end + 1:]
        if rest and not rest.startswith(":"):
            raise InvalidArgument(f"invalid registry address {netloc!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = netloc.partition(":")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidArgument(f"invalid port in registry address {netloc!r}")
    return host, int(port_text)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    import ipaddress  # only registry talk needs it, not every command that reads settings

    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(netloc: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1, with or without a port."""
    host, _ = split_host_port(netloc)
    if host.lower() == "localhost":
        return True
    ip = _ip(host)
    if ip is None:
        return False
    import ipaddress

    return any(ip in ipaddress.ip_network(net) for net in _LOOPBACK_NETS)


@record(frozen=True)
class EngineConfig:
    """What minidock knows about registries before it talks to one, and the OCI runtimes
    it may run containers with."""

    registry_mirrors: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    certs_dir: str = field(default_factory=lambda: os.path.join(config_dir(), "certs.d"))
    #: ``runtimes``: name -> {"path": ..., "runtimeArgs": [...]}, checked when one is used
    runtimes: dict[str, Any] = field(default_factory=dict)
    default_runtime: str = ""
    #: ``bip``: the default bridge's gateway/prefix ("172.26.0.1/16"); "" picks a free pool
    bip: str = ""
    #: ``default-address-pools``: [{"base": "10.10.0.0/16", "size": 24}, ...], the subnets
    #: bridges are taken from (Docker's daemon.json key); () for Docker's defaults
    address_pools: tuple[tuple[str, int], ...] = ()
    #: ``firewall-driver``: "nftables" or "iptables" (netavark's names); "" for nftables
    #: where it is installed, else iptables
    firewall_driver: str = ""
    #: ``userns-remap``: "default" (the dockremap user, made if missing) or "USER[:GROUP]",
    #: whose /etc/subuid and /etc/subgid ranges every container's ids map to (unless
    #: ``--userns host``); "" for none
    userns_remap: str = ""
    #: ``userns-remap-layers``: "idmapped" (the default, where the kernel can: else copies)
    #: or "copy" (chowned copies of the layers under <root>/<uid>.<gid>/, as Docker)
    userns_remap_layers: str = ""

    def is_insecure(self, netloc: str) -> bool:
        """May ``netloc`` be reached over plain HTTP (and TLS without verification)?"""
        if is_loopback(netloc):
            return True
        host, _ = split_host_port(netloc)
        ip = _ip(host)
        for entry in self.insecure_registries:
            if "/" in entry:
                import ipaddress

                try:
                    net = ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    continue
                if ip is not None and ip in net:
                    return True
            elif entry == netloc or entry.lower() == netloc.lower():
                return True
        return False

    def _certs_for(self, netloc: str) -> str | None:
        # certs.d names a directory per registry; a name with "/" or ".." would leave it.
        if not netloc or "/" in netloc or netloc in (".", "..") or "\0" in netloc:
            return None
        d = os.path.join(self.certs_dir, netloc)
        return d if os.path.isdir(d) else None

    def ca_files(self, netloc: str) -> list[str]:
        """CA certificates (``*.crt``) configured for ``netloc``, sorted."""
        d = self._certs_for(netloc)
        if d is None:
            return []
        return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".crt"))

    def client_cert(self, netloc: str) -> tuple[str, str] | None:
        """A client certificate ``x.cert`` with its key ``x.key`` for ``netloc``, if any."""
        d = self._certs_for(netloc)
        if d is None:
            return None
        for name in sorted(os.listdir(d)):
            if name.endswith(".cert"):
                key = os.path.join(d, name[: -len(".cert")] + ".key")
                if not os.path.isfile(key):
                    raise InvalidArgument(f"client certificate {os.path.join(d, name)} has no "
                                          f"key {key}")
                return os.path.join(d, name), key
        return None


def parse_engine_config(
    data: bytes, source: str = "config.json", certs_dir: str | None = None
) -> EngineConfig:
    """The registry settings of a daemon.json-like document (pure; unit-tested)."""
    doc = parse_object(data, f"parse {source}") if data.strip() else {}

    def strings(key: str) -> tuple[str, ...]:
        value = doc.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{source}: {key} must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    mirrors = strings("registry-mirrors")
    for m in mirrors:
        if not m.startswith(("http://", "https://")):
            raise InvalidArgument(f"{source}: registry mirror {m!r} must start with http:// "
                                  "or https://")
    runtimes = doc.get("runtimes") or {}
    if not isinstance(runtimes, dict):
        raise InvalidArgument(f"{source}: runtimes must be an object of name: {{\"path\": ...}}")
    default_runtime = doc.get("default-runtime") or ""
    if not isinstance(default_runtime, str):
        raise InvalidArgument(f"{source}: default-runtime must be a string")
    bip = doc.get("bip") or ""
    if not isinstance(bip, str):
        raise InvalidArgument(f"{source}: bip must be a string such as \"172.26.0.1/16\"")
    driver = _choice(doc, "firewall-driver", ("nftables", "iptables"), source)
    remap = doc.get("userns-remap") or ""
    if not isinstance(remap, str):
        raise InvalidArgument(f"{source}: userns-remap must be a string such as \"default\"")
    layers = _choice(doc, "userns-remap-layers", ("idmapped", "copy"), source)
    return EngineConfig(
        firewall_driver=driver,
        userns_remap=remap.strip(),
        userns_remap_layers=layers,
        runtimes=runtimes,
        default_runtime=default_runtime.strip(),
        bip=bip.strip(),
        address_pools=_address_pools(doc.get("default-address-pools"), source),
        registry_mirrors=tuple(m.rstrip("/") for m in mirrors),
        insecure_registries=tuple(
            i.removeprefix("http://").removeprefix("https://").rstrip("/")
            for i in strings("insecure-registries")
        ),
        certs_dir=certs_dir or os.path.join(config_dir(), "certs.d"),
    )


def _choice(doc: dict[str, Any], key: str, allowed: tuple[str, str], source: str) -> str:
    """A key that is unset ("") or one of two words."""
    value = doc.get(key) or ""
    if value not in ("", *allowed):
        raise InvalidArgument(f"{source}: {key} must be \"{allowed[0]}\" or \"{allowed[1]}\", "
                              f"not {value!r}")
    return str(value)


def _address_pools(value: Any, source: str) -> tuple[tuple[str, int], ...]:
    import ipaddress

    if not value:
        return ()
    bad = (f"{source}: default-address-pools must be a list such as "
           '[{"base": "10.10.0.0/16", "size": 24}]')
    if not isinstance(value, list):
        raise InvalidArgument(bad)
    out = []
    for pool in value:
        if not isinstance(pool, dict) or not isinstance(pool.get("base"), str) \
                or not isinstance(pool.get("size"), int) or isinstance(pool.get("size"), bool):
            raise InvalidArgument(bad)
        try:
            base = ipaddress.IPv4Network(pool["base"])
        except ValueError:
            raise InvalidArgument(f"{source}: default-address-pools: invalid base "
                                  f"{pool['base']!r}") from None
        if not base.prefixlen <= pool["size"] <= 30:
            raise InvalidArgument(f"{source}: default-address-pools: size {pool['size']} does "
                                  f"not fit base {base} (between /{base.prefixlen} and /30)")
        out.append((str(base), int(pool["size"])))
    return tuple(out)


def load_engine_config(directory: str | None = None) -> EngineConfig:
    """Read ``<dir>/config.json`` (missing file: defaults); certs.d is ``<dir>/certs.d``."""
    directory = directory or config_dir()
    path = os.path.join(directory, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_FILE + 1)
    except FileNotFoundError:
        return EngineConfig(certs_dir=os.path.join(directory, "certs.d"))
    except OSError as e:
        raise InvalidArgument(f"read {path}: {e.strerror}") from e
    if len(data) > MAX_CONFIG_FILE:
        raise InvalidArgument(f"read {path}: larger than {MAX_CONFIG_FILE} bytes")
    return parse_engine_config(data, path, os.path.join(directory, "certs.d"))
