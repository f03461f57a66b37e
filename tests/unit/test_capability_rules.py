"""--cap-add, --cap-drop, --privileged: Docker's capability rules (TweakCapabilities) and
its refusals, HostConfig's normalized names (recorded from docker 20.10 here)."""

from __future__ import annotations

import pytest

from minidock.engine.spec import privileges
from minidock.errors import InvalidArgument
from minidock.oci.runtime import CAP_NUMBERS, DEFAULT_CAPABILITIES


def mask(caps: list[str]) -> str:
    return f"{sum(1 << CAP_NUMBERS[c] for c in caps):016x}"


def test_names_are_kept_as_docker_keeps_them():
    assert privileges.normalize(["net_admin", "CAP_SYS_PTRACE", "all", "Kill"], "CapAdd") == [
        "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "ALL", "CAP_KILL"]
    assert privileges.normalize([], "CapAdd") is None
    with pytest.raises(InvalidArgument) as e:
        privileges.normalize(["FOO"], "CapAdd")
    assert e.value.message == 'invalid CapAdd: unknown capability: "CAP_FOO"'
    with pytest.raises(InvalidArgument, match='invalid CapDrop: unknown capability: "CAP_NOPE"'):
        privileges.normalize(["cap_nope"], "CapDrop")


@pytest.mark.parametrize("add, drop, want", [
    ([], [], "00000000a80425fb"),  # Docker's default set
    (["CAP_NET_ADMIN"], [], "00000000a80435fb"),
    ([], ["ALL"], "0000000000000000"),
    (["CAP_KILL"], ["ALL"], "0000000000000020"),
    ([], ["CAP_CHOWN", "CAP_KILL"], "00000000a80425da"),
])
def test_the_sets_docker_gives(add, drop, want):
    assert mask(privileges.capabilities(add, drop, False)) == want


def test_all_and_privileged_mean_what_this_process_may_grant():
    everything = privileges.grantable()
    assert set(DEFAULT_CAPABILITIES) <= set(everything)
    assert privileges.capabilities(None, ["CAP_CHOWN"], True) == everything
    assert privileges.capabilities(["ALL"], ["CAP_CHOWN"], False) == [
        c for c in everything if c != "CAP_CHOWN"]


def test_host_devices_are_device_nodes_of_dev_without_the_defaults():
    devices = privileges.host_devices()
    paths = {d["path"] for d in devices}
    assert "/dev/null" not in paths and "/dev/ptmx" not in paths
    assert all(d["type"] in ("c", "b") and not d["path"].startswith(("/dev/pts/", "/dev/shm/"))
               for d in devices)


def run_filter(program: bytes, kind: str, access: str, major: int, minor: int) -> int:
    """The kernel's part, emulated: what the compiled eBPF program answers for an open or
    mknod (the opcodes the compiler uses, with the kernel's semantics)."""
    import struct

    insns = [struct.unpack("<BBhi", program[i:i + 8]) for i in range(0, len(program), 8)]
    acc = sum({"m": 1, "r": 2, "w": 4}[c] for c in access)
    ctx = [acc << 16 | {"b": 1, "c": 2}[kind], major, minor]
    r, pc = [0] * 11, 0
    while True:
        code, regs, off, imm = insns[pc]
        dst, src = regs & 15, regs >> 4
        pc += 1
        if code == 0x61:
            r[dst] = ctx[off // 4]
        elif code == 0x54:
            r[dst] &= imm & 0xFFFFFFFF
        elif code == 0x74:
            r[dst] >>= imm
        elif code == 0xBC:
            r[dst] = r[src]
        elif code == 0xB4:
            r[dst] = imm
        elif code == 0x55:
            pc += off if r[dst] != imm else 0
        elif code == 0x5D:
            pc += off if r[dst] != r[src] else 0
        elif code == 0x95:
            return r[0]
        else:
            raise AssertionError(f"opcode {code:#x}")


def test_the_v2_device_program_answers_as_the_v1_rules_would():
    from minidock.cgroups import DEFAULT_DEVICE_RULES
    from minidock.cgroups.v2.devices import compile_rules

    default = compile_rules(DEFAULT_DEVICE_RULES)
    assert run_filter(default, "c", "rw", 1, 3) == 1      # /dev/null
    assert run_filter(default, "c", "rw", 136, 7) == 1    # a pty
    assert run_filter(default, "c", "r", 1, 11) == 0      # /dev/kmsg: not allowed
    assert run_filter(default, "b", "r", 8, 0) == 0       # a disk
    assert run_filter(default, "b", "m", 8, 0) == 1       # mknod of anything
    assert run_filter(default, "c", "mr", 1, 11) == 0     # mknod yes, read no: no
    ro = compile_rules([*DEFAULT_DEVICE_RULES,
                        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}])
    assert run_filter(ro, "c", "r", 1, 11) == 1 and run_filter(ro, "c", "w", 1, 11) == 0
    later_deny = compile_rules([*DEFAULT_DEVICE_RULES,
                                {"allow": False, "type": "c", "major": 1, "minor": 3,
                                 "access": "w"}])
    assert run_filter(later_deny, "c", "w", 1, 3) == 0   # the last matching rule wins
    assert run_filter(later_deny, "c", "r", 1, 3) == 1
    everything = compile_rules([{"allow": True, "access": "rwm"}])
    assert len(everything) == 8 * 8 and run_filter(everything, "b", "rw", 8, 0) == 1


def test_device_flags_as_docker_reads_them():
    assert privileges.parse_device_flag("/dev/kmsg") == {
        "PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/kmsg", "CgroupPermissions": "rwm"}
    assert privileges.parse_device_flag("/dev/kmsg:/dev/k:r") == {
        "PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/k", "CgroupPermissions": "r"}
    assert privileges.parse_device_flag("/dev/kmsg:r")["CgroupPermissions"] == "r"
    with pytest.raises(InvalidArgument, match="bad format for path: k"):
        privileges.parse_device_flag("/dev/kmsg:k")
    assert privileges.parse_cgroup_rule("c 1:11 r") == "c 1:11 r"
    with pytest.raises(InvalidArgument, match="invalid device cgroup format 'x 1:1 r'"):
        privileges.parse_cgroup_rule("x 1:1 r")
