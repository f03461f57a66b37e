"""minidock's own nftables table: outbound NAT, forwarding and published ports of the bridge.

One table, ``ip minidock``, rebuilt from the leases file and replaced as a whole in one
transaction (add, delete, add: idempotent, nobody else's rules touched)::

    table ip minidock {
        chain prerouting {    to a local address of the host? -> the ports chain
        chain output {        the same for the host's own connections (127.0.0.1 too)
        chain ports {         one DNAT per published port: [ip daddr H] tcp dport P dnat to C:p
        chain postrouting {   masquerade what each bridge's subnet sends elsewhere; what
                              reaches a container through a published port from 127.0.0.1 or
                              from a container of the bridge itself (hairpin) is masqueraded
        chain forward {       drop between two bridges (networks are isolated) and across an
                              --internal network's edge; accept what comes from a bridge, the
                              replies to it, and what a published port sends to it
    }

One table for every bridge (minidock0 and the user networks'), rebuilt from their files
in /run/minidock-network under their one lock.

The transaction goes through libnftables (the C library nft itself uses, loaded in-process:
~1 ms) and falls back to the ``nft`` program where the library is missing. Where neither is
installed, or the settings say ``"firewall-driver": "iptables"``, ``net.iptables`` writes the
same rules as iptables chains instead; the driver last used is remembered host-wide
(/run/minidock-network/firewall-driver) and a change takes the other one's rules away. IPv4
forwarding is switched on (net.ipv4.ip_forward), as Docker does.

Next to Docker: dockerd sets iptables' FORWARD policy to DROP. A packet is forwarded only if
every base chain on the hook lets it pass, so minidock's accept is not enough: the bridge's
traffic would die in iptables' FORWARD. dockerd jumps first to a chain kept for its users,
DOCKER-USER, and leaves it alone; minidock puts the same three accepts there (commented
``minidock``) whenever the chain exists without them::

    -i minidock0 -j ACCEPT                                    what the containers send
    -o minidock0 -m conntrack --ctstate RELATED,ESTABLISHED   the replies to it
    -o minidock0 -m conntrack --ctstate DNAT -j ACCEPT        what a published port lets in

through the ``iptables`` of the backend dockerd's chain lives in (nft or legacy). Looking
costs one libnftables listing (or a read of /proc/net/ip_tables_names); iptables runs only
when rules are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from minidock import linux
from minidock.errors import MinidockError
from minidock.linux import trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from minidock.net.ports import Forward

TABLE = "minidock"


def ruleset(bridges: Sequence[tuple[str, str, bool]],
            forwards: Iterable[Forward] = ()) -> str:
    """The whole table, as ``nft -f`` reads it, for these bridges (name, subnet, internal)."""
    dnat = []
    for f in sorted(forwards, key=lambda f: (f.host_port, f.proto, f.host_ip)):
        match = f"ip daddr {f.host_ip} " if f.host_ip not in ("", "0.0.0.0") else ""
        dnat.append(f"\t\t{match}{f.proto} dport {f.host_port} "
                    f"dnat to {f.ip}:{f.port}\n")
    post, forward = [], []
    names = [b[0] for b in bridges]
    for name, subnet, internal in bridges:
        others = [n for n in names if n != name]
        if others:  # networks are isolated from each other (Docker's DOCKER-ISOLATION)
            forward.append(f'\t\tiifname "{name}" oifname {_set(others)} drop\n')
        if internal:  # an --internal network reaches nothing off its bridge, nor is reached
            forward.append(f'\t\tiifname "{name}" oifname != "{name}" drop\n')
            forward.append(f'\t\toifname "{name}" iifname != "{name}" drop\n')
            continue
        post.append(f'\t\tip saddr {subnet} oifname != "{name}" masquerade\n')
        post.append(f'\t\tip saddr 127.0.0.0/8 oifname "{name}" masquerade\n')
        post.append(f'\t\tip saddr {subnet} oifname "{name}" ct status dnat masquerade\n')
    for name, _, internal in bridges:
        if not internal:
            forward.append(f'\t\tiifname "{name}" accept\n')
            forward.append(f'\t\toifname "{name}" ct state established,related accept\n')
            forward.append(f'\t\toifname "{name}" ct status dnat accept\n')
    return (
        f"table ip {TABLE}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        "\t\tfib daddr type local jump ports\n"
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        "\t\tfib daddr type local jump ports\n"
        "\t}\n"
        "\tchain ports {\n"
        + "".join(dnat) +
        "\t}\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        + "".join(post) +
        "\t}\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        + "".join(forward) +
        "\t}\n"
        "}\n"
    )


def _set(names: Sequence[str]) -> str:
    return f'"{names[0]}"' if len(names) == 1 else "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def of(states: Iterable[Any]) -> tuple[list[tuple[str, str, bool]], list[Forward]]:
    """(bridges, forwards) of the bridges' files (ipam.Leases) that have a subnet."""
    bridges, forwards = [], []
    for st in sorted(states, key=lambda st: st.bridge):
        if st.has_subnet():
            bridges.append((st.bridge, str(st.doc["subnet"]), st.internal))
            forwards += st.forwards()
    return bridges, forwards


def driver() -> str:
    """The firewall driver: the settings' ``firewall-driver``, else nftables where libnftables
    or the nft program is installed, else iptables."""
    from minidock.settings import load_engine_config

    chosen = load_engine_config().firewall_driver
    if chosen:
        return chosen
    try:
        if linux.nft_run("list tables\n", why="is libnftables installed?") is not None:
            return "nftables"
    except OSError:
        return "nftables"
    if shutil.which("nft"):
        return "nftables"
    if shutil.which("iptables-restore"):
        return "iptables"
    raise MinidockError("bridge network: neither nftables nor iptables is installed "
                        "(apt-get install nftables)")


def apply(bridges: Sequence[tuple[str, str, bool]], forwards: Iterable[Forward] = ()) -> None:
    """Make the firewall what it should be for these bridges, through the driver in use (when
    the driver changed, the other one's rules go once the new ones are in place)."""
    forwards = list(forwards)
    used = driver()  # (the one decision: present() and describe() ask it too)
    if used == "nftables":
        _apply_nft(bridges, forwards)
    else:
        from minidock.net import iptables

        iptables.apply(bridges, forwards)
    _switch(used)
    with open("/proc/sys/net/ipv4/ip_forward", "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")
    docker_user([name for name, _, internal in bridges if not internal])


DRIVER_FILE = "/run/minidock-network/firewall-driver"


def _switch(used: str) -> None:
    """Remember the driver in use, host-wide; when it changed (or nothing says which it was),
    the other one's rules go."""
    try:
        with open(DRIVER_FILE) as f:
            before = f.read().strip()
    except FileNotFoundError:
        before = ""
    if before == used:
        return
    if used == "iptables":
        trace.note(f"firewall driver now iptables (was {before or 'unknown'}): minidock's nft "
                   "table goes")
        remove()
    else:
        from minidock.net import iptables

        trace.note(f"firewall driver now nftables (was {before or 'unknown'}): minidock's "
                   "iptables chains go")
        iptables.remove()
    os.makedirs(os.path.dirname(DRIVER_FILE), exist_ok=True)
    with open(DRIVER_FILE + ".tmp", "w") as f:
        f.write(used + "\n")
    os.replace(DRIVER_FILE + ".tmp", DRIVER_FILE)


def _apply_nft(bridges: Sequence[tuple[str, str, bool]], forwards: list[Forward]) -> None:
    """Make the table what it should be; a table that already is stays untouched (replacing
    rules costs the kernel an RCU grace period, ~15 ms, on every container start)."""
    text = ruleset(bridges, forwards)
    why = "minidock's nft table, replaced whole in one transaction"
    try:
        listed = linux.nft_run(f"list table ip {TABLE}\n", why="is the table as it should be?")
    except OSError:
        listed = ""  # no such table yet
    names = ", ".join(b[0] for b in bridges)
    if listed is not None and _canonical(listed) == _canonical(text):
        trace.note(f"table ip {TABLE} already holds the NAT rules of {names} and the "
                   f"{len(forwards)} published port(s): left as it is")
    else:
        trace.note(f"table ip {TABLE}: {names}, {len(forwards)} published port(s)\n{text}")
        try:
            done = linux.nft_run(text, why=why) is not None
        except OSError as e:
            raise MinidockError(f"apply nft table ip {TABLE}: {e.strerror}") from None
        if not done:
            _nft_program(text)


MARK = "minidock"


def docker_user_rules(bridge: str) -> list[list[str]]:
    """The accepts minidock keeps in DOCKER-USER (iptables arguments after the chain)."""
    tail = ["-m", "comment", "--comment", MARK, "-j", "ACCEPT"]
    return [["-i", bridge, *tail],
            ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tail],
            ["-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", *tail]]


def _docker_user_missing(bridges: Sequence[str]) -> tuple[str, list[str]] | None:
    """(the iptables program of the backend holding DOCKER-USER, the bridges whose accepts
    are not there), or None when there is no DOCKER-USER chain. One look for all bridges."""
    try:
        listed = linux.nft_run("list chain ip filter DOCKER-USER\n")
    except OSError:
        listed = ""  # no such chain in nftables (iptables-nft keeps its chains there)
    if listed:  # (nft does not show iptables' comments: the rules are matched by shape)
        program, text = "iptables-nft", listed
        shapes = ('iifname "{b}" counter', 'oifname "{b}" ct state related,established',
                  'oifname "{b}" ct status dnat')
    else:
        try:
            with open("/proc/net/ip_tables_names") as f:
                legacy = "filter" in f.read().split()
        except OSError:
            legacy = False
        if not legacy:
            return None
        r = subprocess.run(["iptables-legacy", "-S", "DOCKER-USER"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            return None
        program, text = "iptables-legacy", r.stdout
        shapes = ("-A DOCKER-USER -i {b} ", "-A DOCKER-USER -o {b} -m conntrack --ctstate "
                  "RELATED,ESTABLISHED ", "-A DOCKER-USER -o {b} -m conntrack --ctstate DNAT ")
    lines = [" ".join(line.split()) + " " for line in text.splitlines()]
    missing = [b for b in bridges
               if not all(any(line.startswith(shape.format(b=b)) for line in lines)
                          for shape in shapes)]
    return program, missing


def docker_user(bridges: Sequence[str]) -> bool:
    """Put minidock's accepts in Docker's DOCKER-USER chain, if it exists, for each of
    ``bridges`` whose accepts are not there; whether anything was added."""
    state = _docker_user_missing(bridges)
    if state is None or not state[1]:
        return False
    program, missing = state
    for bridge in missing:
        trace.note(f"Docker's DOCKER-USER chain exists ({program}): dockerd's FORWARD policy "
                   f"DROP would drop {bridge}'s traffic; adding minidock's accepts")
        for rule in reversed(docker_user_rules(bridge)):
            r = subprocess.run([program, "-w", "-I", "DOCKER-USER", *rule],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise MinidockError(f"{program} -I DOCKER-USER {' '.join(rule)}: "
                                    f"{r.stderr.strip()}")
    return True


def docker_user_present(bridges: Sequence[str]) -> bool:
    """Whether DOCKER-USER, if it exists, holds minidock's accepts for every bridge."""
    state = _docker_user_missing(bridges)
    return state is None or not state[1]


def _nft_program(text: str) -> None:
    try:
        r = subprocess.run(["nft", "-f", "-"], input=text.encode(), capture_output=True)
    except FileNotFoundError:
        raise MinidockError("nft is not installed: the bridge network needs nftables "
                            "(apt-get install nftables)") from None
    if r.returncode != 0:
        raise MinidockError(f"nft -f: {r.stderr.decode(errors='replace').strip()}")


def _listing() -> str:
    """``nft list table ip minidock``; "" when there is none."""
    try:
        listed = linux.nft_run(f"list table ip {TABLE}\n")
    except OSError:
        return ""
    if listed is None:
        r = subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True,
                           text=True)
        return r.stdout if r.returncode == 0 else ""
    return listed


def present(bridges: Sequence[tuple[str, str, bool]], forwards: Iterable[Forward] = ()
            ) -> bool:
    """Whether the driver's rules are what they should be (a firewall reload or ``nft flush
    ruleset`` removes them), and DOCKER-USER, if there is one, holds minidock's accepts."""
    if driver() == "iptables":
        from minidock.net import iptables

        held = iptables.present(bridges, forwards)
    else:
        held = _canonical(_listing()) == _canonical(ruleset(bridges, forwards))
    return held and docker_user_present([b[0] for b in bridges if not b[2]])


def describe() -> str:
    """Where the driver in use keeps minidock's rules (for system check's report)."""
    return ("iptables chains MINIDOCK, MINIDOCK-POSTROUTING, MINIDOCK-FORWARD"
            if driver() == "iptables" else f"nft table ip {TABLE}")


def _canonical(text: str) -> list[str]:
    """The table's lines as nft lists them, without the add/delete preamble and blanks; the
    elements of an anonymous set sorted (nft lists them in an order of its own)."""
    lines = [re.sub(r"\{ ([^{}]*) \}",
                    lambda m: "{ " + ", ".join(sorted(m.group(1).split(", "))) + " }",
                    " ".join(line.split())) for line in text.splitlines()]
    lines = [line for line in lines if line]
    while lines and not lines[0].endswith("{"):
        lines.pop(0)
    return lines


def remove() -> None:
    """Take minidock's nft table away (the driver changed to iptables)."""
    try:
        done = linux.nft_run(f"table ip {TABLE}\ndelete table ip {TABLE}\n") is not None
    except OSError:
        done = False
    if not done and shutil.which("nft"):
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
