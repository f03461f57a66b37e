"""minidock's firewall through iptables, for hosts without nftables (the fallback driver).

The same rules as ``net.firewall``'s nft table, in chains of minidock's own that the built-in
chains jump to, as Docker 20.10 lays out its own::

    *nat
    -A PREROUTING -m addrtype --dst-type LOCAL -j MINIDOCK      to a local address: the ports
    -A OUTPUT -m addrtype --dst-type LOCAL -j MINIDOCK          (the host's own connections too)
    -A POSTROUTING -j MINIDOCK-POSTROUTING
    -A MINIDOCK [-d H/32] -p tcp -m tcp --dport P -j DNAT --to-destination C:p
    -A MINIDOCK-POSTROUTING -s SUBNET ! -o BRIDGE -j MASQUERADE           outbound NAT
    -A MINIDOCK-POSTROUTING -s 127.0.0.0/8 -o BRIDGE -j MASQUERADE        127.0.0.1:P
    -A MINIDOCK-POSTROUTING -s SUBNET -o BRIDGE -m conntrack --ctstate DNAT -j MASQUERADE
    *filter
    -I FORWARD -j MINIDOCK-FORWARD
    -A MINIDOCK-FORWARD -i A -o B -j DROP                 networks are isolated (no sets in
                                                          iptables: one rule per pair)
    -A MINIDOCK-FORWARD -i I ! -o I -j DROP               an --internal network's edge
    -A MINIDOCK-FORWARD -i BRIDGE -j ACCEPT               and the three accepts of each bridge

One ``iptables-save`` tells what is there; when anything differs, one ``iptables-restore
--noflush`` per change rewrites minidock's chains (a declared user chain is flushed and refilled
in the table's one commit) and adds the jumps that are missing. Nobody else's rules are touched.
The lines are written as iptables-save prints them, so comparing is comparing text.
"""

from __future__ import annotations

import subprocess

from minidock.errors import MinidockError
from minidock.linux import trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from minidock.net.ports import Forward

CHAINS = {"nat": ("MINIDOCK", "MINIDOCK-POSTROUTING"), "filter": ("MINIDOCK-FORWARD",)}
JUMPS = {"nat": ("-A PREROUTING -m addrtype --dst-type LOCAL -j MINIDOCK",
                 "-A OUTPUT -m addrtype --dst-type LOCAL -j MINIDOCK",
                 "-A POSTROUTING -j MINIDOCK-POSTROUTING"),
         "filter": ("-A FORWARD -j MINIDOCK-FORWARD",)}


def rules(bridges: Sequence[tuple[str, str, bool]],
          forwards: Iterable[Forward] = ()) -> dict[str, list[str]]:
    """minidock's chains' rules per table, as iptables-save prints them."""
    nat = []
    for f in sorted(forwards, key=lambda f: (f.host_port, f.proto, f.host_ip)):
        match = f"-d {f.host_ip}/32 " if f.host_ip not in ("", "0.0.0.0") else ""
        nat.append(f"-A MINIDOCK {match}-p {f.proto} -m {f.proto} --dport {f.host_port} "
                   f"-j DNAT --to-destination {f.ip}:{f.port}")
    forward = []
    names = [b[0] for b in bridges]
    for name, subnet, internal in bridges:
        forward += [f"-A MINIDOCK-FORWARD -i {name} -o {other} -j DROP"
                    for other in names if other != name]
        if internal:
            forward += [f"-A MINIDOCK-FORWARD -i {name} ! -o {name} -j DROP",
                        f"-A MINIDOCK-FORWARD ! -i {name} -o {name} -j DROP"]
            continue
        nat += [f"-A MINIDOCK-POSTROUTING -s {subnet} ! -o {name} -j MASQUERADE",
                f"-A MINIDOCK-POSTROUTING -s 127.0.0.0/8 -o {name} -j MASQUERADE",
                f"-A MINIDOCK-POSTROUTING -s {subnet} -o {name} -m conntrack --ctstate DNAT "
                "-j MASQUERADE"]
    for name, _, internal in bridges:
        if not internal:
            forward += [f"-A MINIDOCK-FORWARD -i {name} -j ACCEPT",
                        f"-A MINIDOCK-FORWARD -o {name} -m conntrack --ctstate "
                        "RELATED,ESTABLISHED -j ACCEPT",
                        f"-A MINIDOCK-FORWARD -o {name} -m conntrack --ctstate DNAT -j ACCEPT"]
    # (a chain's rules in the order iptables-save lists them: chain by chain)
    nat.sort(key=lambda line: line.split()[1] != "MINIDOCK")
    return {"nat": nat, "filter": forward}


class Saved:
    """What ``iptables-save`` shows of minidock: its chains, their rules, the jumps to them."""

    def __init__(self, text: str) -> None:
        self.chains: dict[str, set[str]] = {t: set() for t in CHAINS}
        self.rules: dict[str, list[str]] = {t: [] for t in CHAINS}
        self.jumps: dict[str, list[str]] = {t: [] for t in CHAINS}
        table = ""
        for line in text.splitlines():
            line = " ".join(line.split())
            if line.startswith("*"):
                table = line[1:]
            if table not in CHAINS:
                continue
            if line.startswith(":") and line[1:].split()[0] in CHAINS[table]:
                self.chains[table].add(line[1:].split()[0])
            elif line.startswith("-A "):
                chain = line.split()[1]
                if chain in CHAINS[table]:
                    self.rules[table].append(line)
                elif line.split()[-1] in CHAINS[table] and " -j " in line:
                    self.jumps[table].append(line)

    def holds(self, want: dict[str, list[str]]) -> bool:
        return all(self.chains[t] == set(CHAINS[t]) and self.rules[t] == want[t]
                   and sorted(self.jumps[t]) == sorted(JUMPS[t]) for t in CHAINS)

    def empty(self) -> bool:
        return not any(self.chains[t] or self.jumps[t] for t in CHAINS)


def saved() -> Saved:
    try:
        r = subprocess.run(["iptables-save"], capture_output=True, text=True)
    except FileNotFoundError:
        raise MinidockError("bridge network: neither nftables nor iptables is installed "
                            "(apt-get install nftables)") from None
    if r.returncode != 0:
        raise MinidockError(f"iptables-save: {r.stderr.strip()}")
    return Saved(r.stdout)


def _restore(text: str, why: str) -> None:
    trace.note(f"iptables-restore --noflush ({why})\n{text}")
    r = subprocess.run(["iptables-restore", "-w", "--noflush"], input=text,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise MinidockError(f"iptables-restore: {r.stderr.strip()}")


def apply(bridges: Sequence[tuple[str, str, bool]], forwards: Iterable[Forward] = ()) -> None:
    """Make minidock's chains what they should be; left untouched when they are."""
    want = rules(bridges, forwards)
    have = saved()
    names = ", ".join(b[0] for b in bridges)
    if have.holds(want):
        trace.note(f"iptables: minidock's chains already hold the rules of {names}: left as "
                   "they are")
        return
    text = []
    for table in CHAINS:
        text.append(f"*{table}")
        text += [f":{chain} - [0:0]" for chain in CHAINS[table]]  # made, or emptied
        text += want[table]
        for jump in JUMPS[table]:
            extra = have.jumps[table].count(jump) - 1
            if extra < 0:  # first in its chain, as Docker puts its own
                chain = jump.split()[1]
                text.append(f"-I {chain} 1 {jump.split(None, 2)[2]}")
            text += ["-D" + jump[2:]] * max(extra, 0)
        text.append("COMMIT")
    _restore("\n".join(text) + "\n", f"minidock's chains for {names}")


def present(bridges: Sequence[tuple[str, str, bool]], forwards: Iterable[Forward] = ()
            ) -> bool:
    return saved().holds(rules(bridges, forwards))


def remove() -> None:
    """Take minidock's jumps and chains away (the driver changed, or nothing uses them)."""
    try:
        have = saved()
    except MinidockError:
        return  # no iptables: nothing of minidock's can be there
    if have.empty():
        return
    text = []
    for table in CHAINS:
        text.append(f"*{table}")
        text += ["-D" + jump[2:] for jump in have.jumps[table]]
        text += [f":{chain} - [0:0]" for chain in sorted(have.chains[table])]
        text += [f"-X {chain}" for chain in sorted(have.chains[table])]
        text.append("COMMIT")
    _restore("\n".join(text) + "\n", "minidock's iptables chains are no longer used")
