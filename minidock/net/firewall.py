"""minidock's own nftables table: outbound NAT and forwarding for the default bridge.

One table, ``ip minidock``, replaced as a whole in one ``nft -f`` transaction (add, delete,
add: idempotent, nobody else's rules touched)::

    table ip minidock {
        chain postrouting {   masquerade what the bridge's subnet sends elsewhere
        chain forward {       accept what comes from the bridge and the replies to it
    }

IPv4 forwarding is switched on (net.ipv4.ip_forward), as Docker does.
"""

from __future__ import annotations

import subprocess

from minidock.errors import MinidockError
from minidock.linux import trace

TABLE = "minidock"


def ruleset(bridge: str, subnet: str) -> str:
    """The whole table, as ``nft -f`` reads it."""
    return (
        f"table ip {TABLE}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f'\t\tip saddr {subnet} oifname != "{bridge}" masquerade\n'
        "\t}\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        f'\t\tiifname "{bridge}" accept\n'
        f'\t\toifname "{bridge}" ct state established,related accept\n'
        "\t}\n"
        "}\n"
    )


def apply(bridge: str, subnet: str) -> None:
    text = ruleset(bridge, subnet)
    trace.note(f"nft -f -: table ip {TABLE} (masquerade {subnet}, forward {bridge})\n{text}")
    try:
        r = subprocess.run(["nft", "-f", "-"], input=text.encode(), capture_output=True)
    except FileNotFoundError:
        raise MinidockError("nft is not installed: the bridge network needs nftables "
                            "(apt-get install nftables)") from None
    if r.returncode != 0:
        raise MinidockError(f"nft -f: {r.stderr.decode(errors='replace').strip()}")
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")


def remove() -> None:
    subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
