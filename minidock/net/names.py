"""Names on a user network, without a daemon: every member's /etc/hosts lists the others.

Docker answers names on a user network from a DNS server inside dockerd (127.0.0.11). minidock
has no process that outlives a command, so it keeps the answer where the C library looks first:
the /etc/hosts of each member (containers/<id>/hosts, bind-mounted, so it is rewritten in
place) gets, below its own lines, one line per member of its networks::

    # minidock: the other containers on user-defined networks
    172.18.0.3	c2 web www

(name, then its --network-alias values, short id, name.network; a member's own entry is
there too, for its aliases). It is rewritten for every member whenever one joins
or leaves, under the lock of the network files, so a container started later is reachable
from those started earlier. What reads /etc/hosts (getent, ping, wget, curl, most language
runtimes) finds the names here; what asks a DNS server directly (nslookup, dig) asks the
network's on-demand resolver (net.dns), which answers from the same list.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

MARK = "# minidock: the other containers on user-defined networks\n"


def refresh(states: Iterable[Any], gone: dict[str, str] | None = None) -> None:
    """Rewrite the hosts file of every member of these networks (ipam.Leases of user
    networks, saved; the default bridge has no names, as Docker's), and of the containers
    in ``gone`` (cid -> hosts file) that just left one. A file lists the members of every
    network its container is on: the other networks' files are read as they are (the
    caller holds their lock)."""
    states = list(states)
    anchor = states[0] if states else None
    every = {st.path: st for st in anchor.others(include_self=True)} if anchor else {}
    every.update({st.path: st for st in states})
    lines_of: dict[str, list[str]] = {}
    for path, st in every.items():
        lines_of[path] = [f"{st.leases[cid]}\t{' '.join(m['names'])}\n"
                          for cid, m in sorted(st.members.items())
                          if st.leases.get(cid) and m.get("names")]
    targets = {cid: str(m.get("hosts") or "") for st in states for cid, m in st.members.items()}
    targets.update(gone or {})
    for cid, hosts in targets.items():
        lines: list[str] = []
        for path, st in every.items():
            if cid in st.members:
                lines += [line for line in lines_of[path] if line not in lines]
        _rewrite(hosts, lines)


def _rewrite(path: str, lines: list[str]) -> None:
    if not path:
        return
    try:
        with open(path, "r+", encoding="utf-8") as f:
            text = f.read()
            own = text.split(MARK, 1)[0]
            f.seek(0)
            f.write(own + (MARK + "".join(lines) if lines else ""))
            f.truncate()
    except FileNotFoundError:
        pass  # the container is being removed
