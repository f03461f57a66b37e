"""v1 blkio controller: bytes read from and written to block devices."""

from __future__ import annotations

import os

from minidock.cgroups import _fs

# The throttle files count I/O that reached a device under every I/O scheduler; the
# plain blkio.io_service_bytes is CFQ/BFQ-only and often missing.
_FILES = ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes")


def io_bytes(cgroup_dir: str) -> tuple[int, int] | None:
    """(read, written) bytes summed over the devices, None without the controller."""
    for name in _FILES:
        try:
            text = _fs.read(os.path.join(cgroup_dir, name))
        except FileNotFoundError:
            continue
        read = written = 0
        for line in text.splitlines():
            parts = line.split()  # "8:0 Read 4096"; the last line is "Total N"
            if len(parts) == 3 and parts[2].isdigit():
                if parts[1] == "Read":
                    read += int(parts[2])
                elif parts[1] == "Write":
                    written += int(parts[2])
        return read, written
    return None
