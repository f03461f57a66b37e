"""Resource limits, the pure parts: Docker's CLI parsing of the flags, its daemon's defaults,
refusals and warnings at create and update, HostConfig -> OCI linux.resources, and the v2
conversions runc makes. Expected values and messages recorded from docker 20.10 (a private
dockerd on this machine: cgroup v1 with swap accounting, 2 CPUs, no blkio weight)."""

from __future__ import annotations

import pytest

from minidock.cgroups import convert
from minidock.cgroups.features import Features
from minidock.engine.containers import resources
from minidock.errors import Conflict, InvalidArgument
from minidock.oci.runtime import Resources, ThrottleDevice, parse_resources

HOST = Features(swap=True, swappiness=True, oom_kill_disable=True, blkio_weight=False,
                cpus="0-1", mems="0", cpu_count=2)
V2 = Features(swap=True, swappiness=False, oom_kill_disable=False, blkio_weight=True,
              cpus="0-1", mems="0", cpu_count=2)


def created(*argv: str, features: Features = HOST) -> tuple[dict, list[str]]:
    flags: dict = {}
    it = iter(argv)
    for flag in it:
        param = flag.lstrip("-").replace("-", "_")
        if param == "oom_kill_disable":
            flags[param] = True
        elif param in ("device_read_bps", "device_write_bps"):
            flags[param] = (*flags.get(param, ()), next(it))
        else:
            flags[param] = next(it)
    fields, warnings = resources.for_create(resources.parse_flags(**flags), features)
    return {k: v for k, v in fields.items() if v != resources.DEFAULTS[k]}, warnings


@pytest.mark.parametrize("argv, want", [
    (("--memory", "512m"), {"Memory": 536870912, "MemorySwap": 1073741824}),
    (("--memory", "512m", "--memory-swap", "1g"), {"Memory": 536870912,
                                                   "MemorySwap": 1073741824}),
    (("--memory", "512m", "--memory-swap", "-1"), {"Memory": 536870912, "MemorySwap": -1}),
    (("--memory", "0"), {}),
    (("--memory-reservation", "256m"), {"MemoryReservation": 268435456}),
    (("--memory", "64m", "--oom-kill-disable"), {"Memory": 67108864, "MemorySwap": 134217728,
                                                 "OomKillDisable": True}),
    (("--cpus", "1.5"), {"NanoCpus": 1500000000}),
    (("--cpus", "0"), {}),
    (("--cpus", "0.001"), {"NanoCpus": 1000000}),
    (("--cpu-shares", "512"), {"CpuShares": 512}),
    (("--cpu-period", "50000", "--cpu-quota", "25000"), {"CpuPeriod": 50000,
                                                        "CpuQuota": 25000}),
    (("--cpu-quota", "-1"), {"CpuQuota": -1}),
    (("--cpuset-cpus", "0-1"), {"CpusetCpus": "0-1"}),
    (("--cpuset-mems", "0"), {"CpusetMems": "0"}),
    (("--pids-limit", "100"), {"PidsLimit": 100}),
    (("--pids-limit", "0"), {}),
    (("--pids-limit", "-1"), {}),
    (("--device-read-bps", "/dev/sda:1mb"), {"BlkioDeviceReadBps": [
        {"Path": "/dev/sda", "Rate": 1048576}]}),
    (("--device-write-bps", "/dev/vda:10mb"), {"BlkioDeviceWriteBps": [
        {"Path": "/dev/vda", "Rate": 10485760}]}),
    (("--memory-swappiness", "50"), {"MemorySwappiness": 50}),
])
def test_create_fills_hostconfig_as_docker(argv, want):
    assert created(*argv) == (want, [])


@pytest.mark.parametrize("argv, message", [
    (("--memory", "512m", "--memory-swap", "256m"),
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (("--memory-swap", "1g"),
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    (("--memory", "4m"), "Minimum memory limit allowed is 6MB"),
    (("--memory-reservation", "4m"), "Minimum memory reservation allowed is 6MB"),
    (("--memory", "256m", "--memory-reservation", "512m"),
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    (("--cpus", "3"), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    (("--cpus", "-1"), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    (("--cpus", "1", "--cpu-period", "100000"),
     "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    (("--cpus", "1", "--cpu-quota", "50000"),
     "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    (("--cpu-period", "500"), "CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)"),
    (("--cpu-quota", "500"), "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    (("--cpuset-cpus", "5"), "Requested CPUs are not available - requested 5, available: 0-1"),
    (("--cpuset-cpus", "abc"), "Invalid value abc for cpuset cpus: invalid format: abc"),
    (("--cpuset-mems", "3"),
     "Requested memory nodes are not available - requested 3, available: 0"),
    # the CLI's own refusals, before anything reaches the daemon
    (("--memory", "abc"), "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: "
                          "'abc'"),
    (("--cpus", "abc"), "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc as "
                        "a rational number"),
    (("--device-read-bps", "/dev/sda"),
     "invalid argument \"/dev/sda\" for \"--device-read-bps\" flag: bad format: /dev/sda"),
    (("--memory-swappiness", "200"),
     "invalid value: 200. Valid memory swappiness range is 0-100"),
])
def test_create_refuses_as_docker(argv, message):
    with pytest.raises(InvalidArgument) as e:
        created(*argv)
    assert e.value.message == message


def test_what_the_host_cannot_limit_is_dropped_with_dockers_warnings():
    assert created("--blkio-weight", "500") == (
        {}, ["Your kernel does not support Block I/O weight or the cgroup is not mounted. "
             "Weight discarded."])
    assert created("--blkio-weight", "5")[1]  # (dropped before the range is checked)
    assert created("--oom-kill-disable") == (
        {"OomKillDisable": True},
        ["OOM killer is disabled for the container, but no memory limit is set, this can "
         "result in the system running out of resources."])
    # cgroup v2: no swappiness, no OOM-killer switch; the weight is io.weight's
    assert created("--memory-swappiness", "10", "--memory", "64m", "--oom-kill-disable",
                   "--blkio-weight", "500", features=V2) == (
        {"Memory": 67108864, "MemorySwap": 134217728, "BlkioWeight": 500},
        ["Your kernel does not support memory swappiness capabilities or the cgroup is not "
         "mounted. Memory swappiness discarded.",
         "Your kernel does not support OomKillDisable. OomKillDisable discarded."])
    no_swap = Features(swap=False, swappiness=False, oom_kill_disable=False,
                       blkio_weight=True, cpus="0-1", mems="0", cpu_count=2)
    assert created("--memory", "64m", features=no_swap) == (
        {"Memory": 67108864, "MemorySwap": -1},
        ["Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
         "Memory limited without swap."])
    with pytest.raises(InvalidArgument, match="Range of blkio weight is from 10 to 1000"):
        created("--blkio-weight", "5", features=V2)


def test_update_changes_only_what_is_given_with_dockers_rules():
    free = resources.DEFAULTS
    with pytest.raises(Conflict, match="Memory limit should be smaller than already set "
                                       "memoryswap limit, update the memoryswap at the same "
                                       "time"):
        resources.for_update(free, {"Memory": 100 << 20}, HOST)
    hc, _ = resources.for_update(free, {"Memory": 100 << 20, "MemorySwap": 200 << 20}, HOST)
    assert (hc["Memory"], hc["MemorySwap"]) == (104857600, 209715200)
    hc, _ = resources.for_update(hc, {"NanoCpus": 500000000}, HOST)
    assert hc["NanoCpus"] == 500000000 and hc["Memory"] == 104857600
    hc, _ = resources.for_update(hc, {"PidsLimit": 30}, HOST)
    hc, _ = resources.for_update(hc, {"Memory": 50 << 20}, HOST)  # below the swap: fine
    hc, _ = resources.for_update(hc, {"MemoryReservation": 300 << 20}, HOST)  # (as Docker)
    hc, _ = resources.for_update(hc, {"MemorySwap": 500 << 20}, HOST)  # swap alone too
    assert {k: hc[k] for k in ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus",
                               "PidsLimit")} == {
        "Memory": 52428800, "MemorySwap": 524288000, "MemoryReservation": 314572800,
        "NanoCpus": 500000000, "PidsLimit": 30}
    hc, _ = resources.for_update(hc, {"PidsLimit": -1}, HOST)
    assert hc["PidsLimit"] is None
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        resources.for_update(hc, {"Memory": 1 << 20}, HOST)


def test_hostconfig_becomes_oci_resources_and_records():
    hc = {**resources.DEFAULTS, "Memory": 64 << 20, "MemorySwap": 128 << 20,
          "MemoryReservation": 32 << 20, "NanoCpus": 500000000, "CpuShares": 512,
          "PidsLimit": 50, "CpusetCpus": "0", "OomKillDisable": True,
          "BlkioDeviceWriteBps": [{"Path": "/dev/null", "Rate": 1024}]}
    oci = resources.to_oci(hc)
    assert oci == {
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                   "disableOOMKiller": True},
        "cpu": {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"},
        "pids": {"limit": 50},
        "blockIO": {"throttleWriteBpsDevice": [{"major": 1, "minor": 3, "rate": 1024}]}}
    assert parse_resources(oci) == Resources(
        memory_limit=67108864, memory_reservation=33554432, memory_swap=134217728,
        disable_oom_killer=True, cpu_shares=512, cpu_quota=50000, cpu_period=100000,
        cpuset_cpus="0", pids_limit=50, throttle_write_bps=[ThrottleDevice(1, 3, 1024)])
    assert resources.to_oci(resources.DEFAULTS) == {}
    with pytest.raises(InvalidArgument, match="stat /dev/nope: no such file or directory"):
        resources.to_oci({**hc, "BlkioDeviceWriteBps": [{"Path": "/dev/nope", "Rate": 1}]})


def test_sizes_as_go_units_reads_them():
    assert resources.ram_in_bytes("100") == 100
    assert resources.ram_in_bytes("1.5g") == 1610612736
    assert resources.ram_in_bytes("64MiB") == 67108864
    assert resources.ram_in_bytes("10 kb") == 10240
    with pytest.raises(ValueError, match="invalid size: '1x'"):
        resources.ram_in_bytes("1x")


def test_v2_values_are_runcs_conversions():
    assert [convert.cpu_weight(s) for s in (0, 2, 512, 1024, 262144)] == [0, 1, 20, 39, 10000]
    assert [convert.io_weight(w) for w in (0, 10, 500, 1000)] == [0, 1, 4950, 10000]
    assert convert.swap_max(None, 64) is None and convert.swap_max(-1, 64) == "max"
    assert convert.swap_max(128, 64) == "64"
    with pytest.raises(InvalidArgument):
        convert.swap_max(32, 64)
    assert convert.cpu_max(50000, 100000) == "50000 100000"
    assert convert.cpu_max(-1, None) == "max 100000"
    assert convert.cpu_max(None, None) is None
