"""Resource limits: the flags of run/create/update, Docker's HostConfig fields, and the OCI
``linux.resources`` the runtime writes to the cgroup.

Three steps, as Docker splits them between its CLI and its daemon (every message below was
recorded from docker 20.10 on this machine):

    parse_flags(...)        the CLI's part: "512m", "1.5", "/dev/vda:10mb" -> numbers;
                            a malformed value is refused with the CLI's words
    for_create(given)       the daemon's part at create: Docker's defaults (MemorySwap is
                            twice Memory), its refusals (below 6MB, more CPUs than the host
                            has, a cpuset the host lacks...) and its warnings for what this
                            host's cgroups cannot do (the value is then dropped, as Docker)
    for_update(hc, given)   the same for `update`: the new values over the container's
    to_oci(hc)              at start: HostConfig -> linux.resources (NanoCpus -> a CFS quota
                            over a 100 ms period, device paths -> major:minor)

Pure apart from reading what the host's cgroups offer (:func:`minidock.cgroups.features`)
and stat()ing throttled devices at start.
"""

from __future__ import annotations

import os
import re

from minidock.errors import Conflict, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from minidock.cgroups import Features

#: Docker's HostConfig resource fields and their values when no flag sets them (20.10).
DEFAULTS: dict[str, Any] = {
    "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "DeviceRequests": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
}

MIN_MEMORY = 6 * 1024 * 1024  # linuxMinMemory: below it a container cannot even start
CFS_PERIOD = 100_000  # what --cpus is turned into: a quota over Docker's 100 ms period

# --- the CLI's part ------------------------------------------------------------------------

_SIZE = r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$"  # (compiled on first use)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """go-units' RAMInBytes: "512m", "1.5g", "64MiB", "100" (bytes), binary units."""
    m = re.match(_SIZE, text)
    if not m:
        raise ValueError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def _flag_error(flag: str, value: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {why}')


def _size(flag: str, value: str | None, minus_one: bool = False) -> int | None:
    if value is None:
        return None
    if minus_one and value == "-1":
        return -1
    try:
        return ram_in_bytes(value)
    except ValueError as e:
        raise _flag_error(flag, value, str(e)) from None


def _int(flag: str, value: str | None, unsigned_bits: int = 0) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[+-]?\d+", value) or (unsigned_bits and value.startswith("-")):
        fn = "ParseUint" if unsigned_bits else "ParseInt"
        raise _flag_error(flag, value, f'strconv.{fn}: parsing "{value}": invalid syntax')
    n = int(value)
    if unsigned_bits and n >= 1 << unsigned_bits:
        raise _flag_error(flag, value, f'strconv.ParseUint: parsing "{value}": value out of '
                          "range")
    return n


def _nano_cpus(value: str | None) -> int | None:
    """--cpus as Docker's NanoCPUs (a rational number times 1e9)."""
    if value is None:
        return None
    from fractions import Fraction

    try:
        cpus = Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise _flag_error("--cpus", value, f"failed to parse {value} as a rational number"
                          ) from None
    nano = cpus * 1_000_000_000
    if nano.denominator != 1:
        raise _flag_error("--cpus", value, "value is too precise")
    return int(nano)


def _throttle(flag: str, value: str) -> dict[str, Any]:
    path, sep, rate = value.rpartition(":")
    if not sep:
        raise _flag_error(flag, value, f"bad format: {value}")
    if not path.startswith("/dev/"):
        raise _flag_error(flag, value, f"bad format for device path: {value}")
    try:
        n = ram_in_bytes(rate)
    except ValueError:
        n = -1
    if n < 0:
        raise _flag_error(flag, value, f"invalid rate for device: {value}. The correct format "
                          "is <device-path>:<number>[<unit>]. Number must be a positive "
                          "integer. Unit is optional and can be kb, mb, or gb")
    return {"Path": path, "Rate": n}


def parse_flags(memory: str | None = None, memory_swap: str | None = None,
                memory_reservation: str | None = None, memory_swappiness: str | None = None,
                oom_kill_disable: bool = False, cpus: str | None = None,
                cpu_shares: str | None = None, cpu_period: str | None = None,
                cpu_quota: str | None = None, cpuset_cpus: str | None = None,
                cpuset_mems: str | None = None, pids_limit: str | None = None,
                blkio_weight: str | None = None, device_read_bps: tuple[str, ...] = (),
                device_write_bps: tuple[str, ...] = ()) -> dict[str, Any]:
    """The HostConfig fields the flags give (only those given), parsed as Docker's CLI does."""
    out: dict[str, Any] = {}

    def put(key: str, value: object) -> None:
        if value is not None:
            out[key] = value

    put("Memory", _size("-m, --memory", memory))
    put("MemorySwap", _size("--memory-swap", memory_swap, minus_one=True))
    put("MemoryReservation", _size("--memory-reservation", memory_reservation))
    swappiness = _int("--memory-swappiness", memory_swappiness)
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise InvalidArgument(f"invalid value: {swappiness}. Valid memory swappiness range "
                                  "is 0-100")
        out["MemorySwappiness"] = swappiness
    if oom_kill_disable:
        out["OomKillDisable"] = True
    put("NanoCpus", _nano_cpus(cpus))
    put("CpuShares", _int("-c, --cpu-shares", cpu_shares))
    put("CpuPeriod", _int("--cpu-period", cpu_period))
    put("CpuQuota", _int("--cpu-quota", cpu_quota))
    put("CpusetCpus", cpuset_cpus)
    put("CpusetMems", cpuset_mems)
    put("PidsLimit", _int("--pids-limit", pids_limit))
    put("BlkioWeight", _int("--blkio-weight", blkio_weight, unsigned_bits=16))
    if device_read_bps:
        out["BlkioDeviceReadBps"] = [_throttle("--device-read-bps", v) for v in device_read_bps]
    if device_write_bps:
        out["BlkioDeviceWriteBps"] = [_throttle("--device-write-bps", v)
                                      for v in device_write_bps]
    return out


# --- the daemon's part ---------------------------------------------------------------------


def _cpu_list(text: str) -> set[int] | None:
    """Docker's parsers.ParseUintList: "0-2,4" -> {0, 1, 2, 4}; None when malformed."""
    out: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            return None
        lo, hi = int(low), int(high) if dash else int(low)
        if hi < lo:
            return None
        out.update(range(lo, hi + 1))
    return out


def _check_cpuset(kind: str, what: str, wanted: str, available: str) -> None:
    if not wanted:
        return
    ids = _cpu_list(wanted)
    if ids is None:
        raise InvalidArgument(f"Invalid value {wanted} for cpuset {kind}: invalid format: "
                              f"{wanted}")
    if not ids <= (_cpu_list(available) or set()):
        raise InvalidArgument(f"Requested {what} are not available - requested {wanted}, "
                              f"available: {available}")


def _verify(r: dict[str, Any], features: Features, update: bool) -> list[str]:
    """Docker's verifyPlatformContainerResources: refusals raise, dropped values warn."""
    warnings = []
    memory, swap = r.get("Memory", 0), r.get("MemorySwap", 0)
    if memory and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap != -1 and not features.swap:
        warnings.append("Your kernel does not support swap limit capabilities or the cgroup "
                        "is not mounted. Memory limited without swap.")
        r["MemorySwap"] = swap = -1
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    if not memory and swap > 0 and not update:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    if r.get("MemorySwappiness") is not None and not features.swappiness:
        warnings.append("Your kernel does not support memory swappiness capabilities or the "
                        "cgroup is not mounted. Memory swappiness discarded.")
        r["MemorySwappiness"] = None
    reservation = r.get("MemoryReservation", 0)
    if reservation and reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation "
                              "limit, see usage")
    if r.get("OomKillDisable") and not features.oom_kill_disable:
        warnings.append("Your kernel does not support OomKillDisable. OomKillDisable "
                        "discarded.")
        r["OomKillDisable"] = False
    if r.get("OomKillDisable") and not memory:
        warnings.append("OOM killer is disabled for the container, but no memory limit is "
                        "set, this can result in the system running out of resources.")
    nano = r.get("NanoCpus", 0)
    if nano > 0 and r.get("CpuPeriod", 0) > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be "
                              "set")
    if nano > 0 and r.get("CpuQuota", 0) > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    n = features.cpu_count
    if nano < 0 or nano > n * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} "
                              "CPUs available")
    period = r.get("CpuPeriod", 0)
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)")
    if 0 < r.get("CpuQuota", 0) < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    _check_cpuset("cpus", "CPUs", r.get("CpusetCpus", ""), features.cpus)
    _check_cpuset("mems", "memory nodes", r.get("CpusetMems", ""), features.mems)
    weight = r.get("BlkioWeight", 0)
    if weight and not features.blkio_weight:
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not "
                        "mounted. Weight discarded.")
        r["BlkioWeight"] = weight = 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    return warnings


def for_create(given: dict[str, Any], features: Features) -> tuple[dict[str, Any], list[str]]:
    """Every resource field of a new container's HostConfig, and Docker's warnings."""
    r = {**DEFAULTS, **given}
    if r["Memory"] > 0 and r["MemorySwap"] == 0:
        r["MemorySwap"] = r["Memory"] * 2  # Docker's default: as much swap as memory
    if r["PidsLimit"] is not None and r["PidsLimit"] <= 0:
        r["PidsLimit"] = None  # 0 and -1: unlimited
    warnings = _verify(r, features, update=False)
    return r, warnings


def for_update(current: dict[str, Any], given: dict[str, Any], features: Features
               ) -> tuple[dict[str, Any], list[str]]:
    """The container's resource fields after ``update`` (only the given ones change), and
    Docker's warnings; refusals as Docker's ``update`` words them."""
    request = dict(given)
    warnings = _verify(request, features, update=True)
    r = {**DEFAULTS, **{k: v for k, v in current.items() if k in DEFAULTS}}
    memory, swap = request.get("Memory", 0), request.get("MemorySwap", 0)
    if memory:
        if memory > r["MemorySwap"] and not swap:
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, "
                           "update the memoryswap at the same time")
        r["Memory"] = memory
    if swap:
        r["MemorySwap"] = swap
    for key in ("MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
                "BlkioWeight"):
        if request.get(key):
            r[key] = request[key]
    if request.get("NanoCpus"):  # --cpus replaces a period/quota given before
        r["CpuPeriod"] = r["CpuQuota"] = 0
    elif request.get("CpuPeriod") or request.get("CpuQuota"):
        r["NanoCpus"] = 0
    for key in ("CpusetCpus", "CpusetMems"):
        if request.get(key):
            r[key] = request[key]
    if "PidsLimit" in request:
        r["PidsLimit"] = request["PidsLimit"] if request["PidsLimit"] > 0 else None
    return r, warnings


# --- at start ------------------------------------------------------------------------------


def _device(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"stat {path}: {(e.strerror or '').lower()}") from None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def to_oci(hc: dict[str, Any]) -> dict[str, Any]:
    """The OCI ``linux.resources`` entries (beyond devices) for a container's HostConfig."""
    out: dict[str, Any] = {}
    memory = {k: v for k, v in (("limit", hc.get("Memory")),
                                ("reservation", hc.get("MemoryReservation")),
                                ("swap", hc.get("MemorySwap")),
                                ("swappiness", hc.get("MemorySwappiness"))) if v}
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = CFS_PERIOD
        cpu["quota"] = hc["NanoCpus"] * CFS_PERIOD // 1_000_000_000
    else:
        cpu.update({k: v for k, v in (("period", hc.get("CpuPeriod")),
                                      ("quota", hc.get("CpuQuota"))) if v})
    cpu.update({k: v for k, v in (("shares", hc.get("CpuShares")),
                                  ("cpus", hc.get("CpusetCpus")),
                                  ("mems", hc.get("CpusetMems"))) if v})
    if cpu:
        out["cpu"] = cpu
    if hc.get("PidsLimit"):
        out["pids"] = {"limit": hc["PidsLimit"]}
    block: dict[str, Any] = {}
    if hc.get("BlkioWeight"):
        block["weight"] = hc["BlkioWeight"]
    for key, oci in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                     ("BlkioDeviceWriteBps", "throttleWriteBpsDevice")):
        entries = []
        for t in hc.get(key) or []:
            major, minor = _device(t["Path"])
            entries.append({"major": major, "minor": minor, "rate": t["Rate"]})
        if entries:
            block[oci] = entries
    if block:
        out["blockIO"] = block
    return out
