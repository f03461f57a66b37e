"""v2 io controller: io.stat, one line per device ("8:0 rbytes=.. wbytes=.. ...")."""

from __future__ import annotations

import os

from minidock.cgroups import _fs


def io_bytes(cgroup_dir: str) -> tuple[int, int] | None:
    """(read, written) bytes summed over the devices, None without the controller."""
    try:
        text = _fs.read(os.path.join(cgroup_dir, "io.stat"))
    except FileNotFoundError:
        return None
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes" and value.isdigit():
                read += int(value)
            elif key == "wbytes" and value.isdigit():
                written += int(value)
    return read, written
