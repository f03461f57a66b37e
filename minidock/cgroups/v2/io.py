"""v2 io controller: io.stat, one line per device ("8:0 rbytes=.. wbytes=.. ..."); the weight
(io.weight, or BFQ's io.bfq.weight) and per-device bandwidth limits (io.max)."""

from __future__ import annotations

import os

from minidock.cgroups import _fs, convert

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minidock.oci.runtime import Resources


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


def set_limits(cgroup_dir: str, res: Resources) -> None:
    if res.blkio_weight:
        if os.path.exists(os.path.join(cgroup_dir, "io.bfq.weight")):  # BFQ: v1's scale
            _fs.write(os.path.join(cgroup_dir, "io.bfq.weight"), str(res.blkio_weight),
                      why="--blkio-weight: its share of the disk under contention (BFQ)")
        elif os.path.exists(os.path.join(cgroup_dir, "io.weight")):
            _fs.write(os.path.join(cgroup_dir, "io.weight"),
                      f"default {convert.io_weight(res.blkio_weight)}",
                      why=f"--blkio-weight {res.blkio_weight} as a v2 io.weight (1..10000)")
    for key, devices in (("rbps", res.throttle_read_bps), ("wbps", res.throttle_write_bps)):
        for d in devices:
            _fs.write(os.path.join(cgroup_dir, "io.max"), f"{d.major}:{d.minor} {key}={d.rate}",
                      why="--device-read-bps / --device-write-bps: bytes per second")
