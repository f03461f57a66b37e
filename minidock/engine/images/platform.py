"""The platform of this machine, in the GOARCH terms image configs and indexes use."""

from __future__ import annotations

import os

_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "loongarch64": ("loong64", None),
}


def host_platform() -> tuple[str, str | None]:
    """GOARCH-style architecture and variant of this machine (containerd's DefaultSpec)."""
    machine = os.uname().machine
    return _ARCH.get(machine, (machine.lower(), None))
