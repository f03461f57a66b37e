"""Capabilities: the bounding set and the process sets, through python-prctl.

Numbers are the kernel's (include/uapi/linux/capability.h, oci.runtime.CAP_NUMBERS); we keep
our own table because python-prctl only knows the capabilities of the headers it was built
against, and a capability the library does not know must still be dropped from the bounding
set.
"""

from __future__ import annotations

from collections.abc import Iterable

from minidock.errors import InvalidArgument
from minidock.linux import trace
from minidock.oci.runtime import CAP_NUMBERS, Capabilities


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAP_NUMBERS.values())


def normalize(name: str) -> str:
    """``net_admin``, ``NET_ADMIN`` and ``CAP_NET_ADMIN`` all mean CAP_NET_ADMIN."""
    up = name.upper()
    if not up.startswith("CAP_"):
        up = "CAP_" + up
    if up not in CAP_NUMBERS:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return up


def numbers(names: Iterable[str]) -> set[int]:
    return {CAP_NUMBERS[normalize(n)] for n in names}


def apply_bounding(caps: Capabilities) -> None:
    """Drop from the bounding set every capability not listed (needs CAP_SETPCAP: do it
    before switching to the container's user)."""
    import _prctl

    keep = numbers(caps.bounding)
    top = last_cap()
    dropped = [n for n in range(top + 1) if n not in keep]

    def call() -> None:
        for n in dropped:
            _prctl.prctl(_prctl.PR_CAPBSET_DROP, n)

    trace.step(f"prctl(PR_CAPBSET_DROP, x{len(dropped)})", call,
               why=f"keep {len(keep)} capabilities in the bounding set, as Docker's default")


def apply_sets(caps: Capabilities) -> None:
    """Set effective, permitted and inheritable (as root, before the user switch).

    After execve the kernel recomputes the sets: root gets the bounding set back as
    permitted/effective; any other uid gets nothing unless ambient capabilities say so.
    """
    import _prctl

    known = set(CAP_NUMBERS.values()) & set(range(last_cap() + 1))
    eff, perm, inh = numbers(caps.effective), numbers(caps.permitted), numbers(caps.inheritable)

    def call() -> None:
        _prctl.set_caps(sorted(eff), sorted(perm), sorted(inh),
                        sorted(known - eff), sorted(known - perm), sorted(known - inh))

    trace.step(f"capset(effective={len(eff)}, permitted={len(perm)}, inheritable={len(inh)})",
               call, why="the process's own capability sets")
