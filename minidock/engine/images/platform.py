"""The platform of this machine, in the GOARCH terms image configs and indexes use."""

from __future__ import annotations

import os


def host_platform() -> tuple[str, str | None]:
    """GOARCH-style architecture and variant of this machine (containerd's DefaultSpec),
    read through oci.image's one table of machine names."""
    from minidock.oci.image import goarch

    return goarch(os.uname().machine)
