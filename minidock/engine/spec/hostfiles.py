"""The three files Docker writes for every container: hostname, hosts and resolv.conf.

They live in the container's directory (containers/<id>/) and are bind-mounted over the
image's /etc files, so the image stays untouched and the host can read what the container
sees.
"""

from __future__ import annotations

import re

DEFAULT_HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

# Docker's fallback when the host has no usable nameserver (libnetwork resolvconf)
FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]
SYSTEMD_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"

_LOOPBACK = re.compile(r"^\s*nameserver\s+(127\.\d+\.\d+\.\d+|::1)\s*$")


def hosts_file(ip: str | None = None, hostname: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> str:
    """Docker's order: the defaults, the --add-host entries, then the container's own."""
    text = DEFAULT_HOSTS + "".join(f"{addr}\t{name}\n" for name, addr in extra or [])
    if ip and hostname:
        text += f"{ip}\t{hostname}\n"
    return text


def parse_add_host(value: str) -> tuple[str, str]:
    """--add-host NAME:IP (IP may be IPv6, or host-gateway) -> (name, ip)."""
    import ipaddress

    name, sep, addr = value.partition(":")
    if not sep or not name or not addr:
        raise ValueError(f'bad format for add-host: "{value}"')
    if addr != "host-gateway":
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f'invalid IP address in add-host: "{addr}"') from None
    return name, addr


def resolv_conf(host_text: str, dns: list[str], search: list[str], options: list[str]) -> str:
    """A container's resolv.conf: the host's (loopback servers dropped), with --dns,
    --dns-search and --dns-option each replacing its part, as Docker builds it."""
    base = container_resolv_conf(host_text)
    if not (dns or search or options):
        return base
    keep = [ln for ln in base.splitlines()
            if not (dns and re.match(r"^\s*nameserver\s", ln))
            and not (search and re.match(r"^\s*(search|domain)\s", ln))
            and not (options and re.match(r"^\s*options\s", ln))]
    lines = [ln for ln in keep if not re.match(r"^\s*(nameserver|search|domain|options)\s", ln)]
    lines += [f"nameserver {ns}" for ns in dns] or [
        ln for ln in keep if re.match(r"^\s*nameserver\s", ln)]
    lines += [f"search {' '.join(search)}"] if search else [
        ln for ln in keep if re.match(r"^\s*(search|domain)\s", ln)]
    lines += [f"options {' '.join(options)}"] if options else [
        ln for ln in keep if re.match(r"^\s*options\s", ln)]
    return "\n".join(lines).strip("\n") + "\n"


def rewrite_hosts(path: str, ip: str, hostname: str,
                  extra: list[tuple[str, str]] | None = None) -> None:
    """The container's /etc/hosts with its address, written in place: the file is
    bind-mounted into the container, and a rename would leave the mount on the old one. The
    other members of its user network, below minidock.net.names's mark, stay."""
    from minidock.net.names import MARK

    with open(path, "r+", encoding="utf-8") as f:
        text = f.read()
        others = text[text.index(MARK):] if MARK in text else ""
        f.seek(0)
        f.write(hosts_file(ip, hostname, extra) + others)
        f.truncate()


def container_resolv_conf(host_text: str) -> str:
    """Drop loopback nameservers (they would point at the container itself); if none is
    left, fall back to public resolvers, as Docker does."""
    lines = [ln for ln in host_text.splitlines() if not _LOOPBACK.match(ln)]
    if not any(re.match(r"^\s*nameserver\s+\S+", ln) for ln in lines):
        lines += [f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS]
    return "\n".join(lines).strip("\n") + "\n"


def read_host_resolv_conf() -> str:
    """The host's resolv.conf, or systemd-resolved's upstream list when the host points at
    the 127.0.0.53 stub."""
    try:
        with open("/etc/resolv.conf") as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    if re.search(r"^\s*nameserver\s+127\.0\.0\.53\s*$", text, re.M):
        try:
            with open(SYSTEMD_RESOLVED_UPSTREAM) as f:
                return f.read()
        except FileNotFoundError:
            pass
    return text
