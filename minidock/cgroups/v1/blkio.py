"""v1 blkio controller: bytes read from and written to block devices; the weight and the
per-device bandwidth limits."""

from __future__ import annotations

import os

from minidock.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources

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


def weight_file(cgroup_dir: str) -> str | None:
    """The weight file the I/O scheduler offers (CFQ's blkio.weight, BFQ's
    blkio.bfq.weight), None when neither does (mq-deadline, none)."""
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if os.path.exists(os.path.join(cgroup_dir, name)):
            return name
    return None


def set_limits(cgroup_dir: str, res: Resources) -> None:
    if res.blkio_weight:
        name = weight_file(cgroup_dir)
        if name is not None:
            _fs.write(os.path.join(cgroup_dir, name), str(res.blkio_weight),
                      why="--blkio-weight: its share of the disk under contention")
    for name, devices in (("blkio.throttle.read_bps_device", res.throttle_read_bps),
                          ("blkio.throttle.write_bps_device", res.throttle_write_bps)):
        for d in devices:
            _fs.write(os.path.join(cgroup_dir, name), f"{d.major}:{d.minor} {d.rate}",
                      why="--device-read-bps / --device-write-bps: bytes per second")
