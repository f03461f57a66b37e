"""Capabilities: the bounding set and the process sets, through python-prctl.

Numbers are the kernel's (include/uapi/linux/capability.h); we keep our own table because
python-prctl only knows the capabilities of the headers it was built against, and a
capability the library does not know must still be dropped from the bounding set.
"""

from __future__ import annotations

from collections.abc import Iterable

from minidock.errors import InvalidArgument
from minidock.linux import trace
from minidock.oci.runtime import Capabilities

CAP_NUMBERS: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


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
