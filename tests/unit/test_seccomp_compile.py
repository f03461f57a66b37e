"""The seccomp BPF compiler, run in a small classic-BPF interpreter; Docker-profile resolution.

The interpreter does what the kernel's seccomp does with a filter: it checks the program the
way the kernel's checker would (forward jumps in range, aligned loads inside seccomp_data,
ends in a return), then runs it over a ``struct seccomp_data`` and returns the verdict.
"""

from __future__ import annotations

import errno
import itertools
import struct

import pytest

from minidock.engine import spec as specgen
from minidock.engine.spec import seccomp as profiles
from minidock.engine.spec.user import ExecUser
from minidock.errors import InvalidArgument
from minidock.oci import runtime as oci
from minidock.oci.runtime import CAP_NUMBERS
from minidock.runtime import seccomp as sc
from minidock.runtime.syscalls import TABLES

X86_64, I386, AARCH64 = 0xC000003E, 0x40000003, 0xC00000B7
ALLOW, KILL_PROCESS = sc.RET_ALLOW, sc.RET_KILL_PROCESS
EPERM, ENOSYS = sc.RET_ERRNO | errno.EPERM, sc.RET_ERRNO | errno.ENOSYS
X86_64_HOST = ("SCMP_ARCH_X86_64", "amd64", (6, 18))
AARCH64_HOST = ("SCMP_ARCH_AARCH64", "arm64", (6, 18))
DEFAULT_CAPS = list(oci.DEFAULT_CAPABILITIES)


def check(prog: list[tuple[int, int, int, int]]) -> None:
    """What the kernel's sk_chk_filter/seccomp_check_filter insist on."""
    assert 0 < len(prog) <= sc.BPF_MAXINSNS
    for pc, (code, jt, jf, k) in enumerate(prog):
        if code == sc.LD_W_ABS:
            assert k % 4 == 0 and k < 64, f"load at {pc} outside seccomp_data"
        elif code == sc.JMP_JA:
            assert pc + 1 + k < len(prog)
        elif code in (sc.JMP_JEQ_K, sc.JMP_JGT_K, sc.JMP_JGE_K):
            assert pc + 1 + max(jt, jf) < len(prog)
        else:
            assert code in (sc.RET_K, sc.ALU_AND_K), f"unexpected opcode {code:#x} at {pc}"
    assert prog[-1][0] == sc.RET_K


def run_bpf(prog: list[tuple[int, int, int, int]], nr: int, arch: int = X86_64,
            args: tuple[int, ...] = ()) -> int:
    full = (list(args) + [0] * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0x401000, *full)
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == sc.LD_W_ABS:
            a = struct.unpack_from("<I", data, k)[0]
        elif code == sc.ALU_AND_K:
            a &= k
        elif code == sc.JMP_JA:
            pc += k
        elif code == sc.JMP_JEQ_K:
            pc += jt if a == k else jf
        elif code == sc.JMP_JGT_K:
            pc += jt if a > k else jf
        elif code == sc.JMP_JGE_K:
            pc += jt if a >= k else jf
        elif code == sc.RET_K:
            return k
        else:
            raise AssertionError(f"opcode {code:#x}")


def compile_doc(doc: dict, native: str = "SCMP_ARCH_X86_64") -> list[tuple[int, int, int, int]]:
    f = sc.compile_filter(oci._seccomp(doc), native=native)
    prog = sc.unpack(f.program)
    assert len(prog) == f.length
    check(prog)
    return prog


def docker_default(caps=DEFAULT_CAPS, host=X86_64_HOST) -> dict:
    return profiles.resolve(profiles.default_profile(), list(caps), *host)


class Syscalls:
    def __init__(self, prog, table: str = "X86_64", arch: int = X86_64) -> None:
        self.prog, self.table, self.arch = prog, TABLES[table], arch

    def __call__(self, name: str, *args: int) -> int:
        return run_bpf(self.prog, self.table[name], self.arch, args)


# --- Docker's default profile, compiled -------------------------------------------------


def test_default_profile_allow_list_and_denials():
    call = Syscalls(compile_doc(docker_default()))
    for name in ("read", "write", "openat", "mkdir", "execve", "exit_group", "futex", "rseq",
                 "setresuid", "capset", "prctl", "arch_prctl", "modify_ldt", "statx"):
        assert call(name) == ALLOW, name
    for name in ("unshare", "setns", "mount", "umount2", "keyctl", "add_key", "request_key",
                 "kexec_load", "userfaultfd", "bpf", "reboot", "init_module",
                 "open_by_handle_at", "swapon"):
        assert call(name) == EPERM, name
    assert call("chroot") == ALLOW  # CAP_SYS_CHROOT is in Docker's default set
    assert call("ptrace") == ALLOW  # minKernel 4.8
    assert call("clone3") == ENOSYS  # so that libc falls back to clone


def test_default_profile_conditional_rules():
    call = Syscalls(compile_doc(docker_default()))
    thread = 0x3D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|...
    assert call("clone", thread) == ALLOW
    assert call("clone", 0x01200011) == ALLOW  # fork(): SIGCHLD|CHILD_SETTID|CHILD_CLEARTID
    for ns in (0x10000000, 0x20000, 0x40000000, 0x02000000):  # NEWUSER, NEWNS, NEWNET, CGROUP
        assert call("clone", thread | ns) == EPERM
    assert call("clone", thread | (1 << 32)) == ALLOW  # only the low word is masked
    assert call("socket", 2) == ALLOW  # AF_INET
    assert call("socket", 16) == ALLOW  # AF_NETLINK
    assert call("socket", 40) == EPERM  # AF_VSOCK is not in the list
    assert call("socket", 12) == EPERM  # AF_DECnet
    assert call("socket", (1 << 32) | 2) == EPERM  # 64-bit compare: high half must be 0
    assert call("personality", 0xFFFFFFFF) == ALLOW  # query
    assert call("personality", 0x0008) == ALLOW
    assert call("personality", 0x0040000) == EPERM  # ADDR_NO_RANDOMIZE


def test_default_profile_with_cap_sys_admin():
    call = Syscalls(compile_doc(docker_default([*DEFAULT_CAPS, "CAP_SYS_ADMIN"])))
    assert call("unshare", 0x10000000) == ALLOW
    assert call("clone", 0x10000000) == ALLOW
    assert call("clone3") == ALLOW
    assert call("mount") == ALLOW
    assert call("keyctl") == EPERM


def test_arch_checks():
    prog = compile_doc(docker_default())
    # x32 calls come with the x86_64 arch value and bit 30 set in the number
    assert run_bpf(prog, 0x40000000 | TABLES["X86_64"]["read"]) == KILL_PROCESS
    # i386 is covered (its own numbers: 39 is mkdir there, getpid on x86_64)
    i386 = Syscalls(prog, "X86", I386)
    assert i386("mkdir") == ALLOW and i386("unshare") == EPERM and i386("socketcall") == ALLOW
    assert i386("personality", 0xFFFFFFFF) == ALLOW
    assert i386("clone", 0x10000000) == EPERM
    # an ABI the profile does not list
    assert run_bpf(prog, 56, AARCH64) == KILL_PROCESS
    # a syscall newer than anything the profile names: "does not exist" (runc does this too)
    assert run_bpf(prog, 999) == ENOSYS
    assert run_bpf(prog, -1) == EPERM  # a call a tracer skipped: the default action


def test_aarch64_native():
    prog = compile_doc(docker_default(host=AARCH64_HOST), native="SCMP_ARCH_AARCH64")
    call = Syscalls(prog, "AARCH64", AARCH64)
    assert call("openat") == ALLOW and call("unshare") == EPERM and call("clone3") == ENOSYS
    assert "arch_prctl" not in TABLES["AARCH64"]
    assert run_bpf(prog, 2, X86_64) == KILL_PROCESS


def test_program_size():
    for caps in (DEFAULT_CAPS, [*DEFAULT_CAPS, "CAP_SYS_ADMIN"], list(CAP_NUMBERS)):
        f = sc.compile_filter(oci._seccomp(docker_default(caps)), native="SCMP_ARCH_X86_64")
        assert f.length < 600, f.length  # two ABIs, ranges grouped: well under 4096


# --- argument comparisons on 64-bit values ----------------------------------------------

EDGES = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1,
         0x1_7FFFFFFF, 0xFFFFFFFF_00000000, 0xFFFFFFFF_FFFFFFFF, 0x12345678_9ABCDEF0]
OPS = {
    "SCMP_CMP_EQ": lambda a, v, _: a == v,
    "SCMP_CMP_NE": lambda a, v, _: a != v,
    "SCMP_CMP_LT": lambda a, v, _: a < v,
    "SCMP_CMP_LE": lambda a, v, _: a <= v,
    "SCMP_CMP_GT": lambda a, v, _: a > v,
    "SCMP_CMP_GE": lambda a, v, _: a >= v,
    "SCMP_CMP_MASKED_EQ": lambda a, m, d: a & m == d,
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_64bit_comparisons(op):
    for value, value_two in itertools.product(EDGES, [0, 0xFFFFFFFF_00000000, 1]):
        if op != "SCMP_CMP_MASKED_EQ" and value_two:
            continue
        doc = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}]}]}
        prog = compile_doc(doc)
        for arg in EDGES:
            want = ALLOW if OPS[op](arg, value, value_two) else EPERM
            got = run_bpf(prog, 0, X86_64, (0, 0, arg))
            assert got == want, f"{arg:#x} {op} {value:#x}/{value_two:#x}"


def test_32bit_abi_compares_the_low_half():
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
           "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]}]}
    prog = compile_doc(doc)
    assert run_bpf(prog, 3, I386, (6,)) == ALLOW
    assert run_bpf(prog, 3, I386, (5,)) == EPERM


def test_conditions_and_or():
    # distinct arguments: AND; the same argument twice: one rule each (OR), as runc does
    doc = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 2, "value": 10, "op": "SCMP_CMP_GT"}]},
        {"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}]}]}
    call = Syscalls(compile_doc(doc))
    eio = sc.RET_ERRNO | errno.EIO
    assert call("write", 1, 0, 11) == eio
    assert call("write", 1, 0, 10) == ALLOW
    assert call("write", 2, 0, 11) == ALLOW
    assert call("read", 7) == KILL_PROCESS and call("read", 9) == KILL_PROCESS
    assert call("read", 8) == ALLOW


def test_actions_and_defaults():
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_TRAP"},
        {"names": ["write"], "action": "SCMP_ACT_LOG"},
        {"names": ["close"], "action": "SCMP_ACT_KILL"},
        {"names": ["open"], "action": "SCMP_ACT_ERRNO"},  # no errnoRet: EPERM
        {"names": ["stat", "no_such_call"], "action": "SCMP_ACT_ALLOW"},  # unknown: skipped
        {"names": ["stat"], "action": "SCMP_ACT_TRAP"},  # the first rule wins
    ]}
    call = Syscalls(compile_doc(doc))
    assert call("read") == sc.RET_TRAP and call("write") == sc.RET_LOG
    assert call("close") == sc.RET_KILL_THREAD and call("open") == EPERM
    assert call("stat") == ALLOW and call("fstat") == sc.RET_ERRNO | 38


def test_long_lists_stay_in_jump_range():
    # every other number: no ranges, so a few hundred compares; jumps must stay < 256
    numbers = sorted(TABLES["X86_64"].items(), key=lambda kv: kv[1])[::2]
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": [n for n, _ in numbers], "action": "SCMP_ACT_ALLOW"}]}
    prog = compile_doc(doc)
    for name, nr in TABLES["X86_64"].items():
        want = ALLOW if (name, nr) in numbers else EPERM
        if nr > numbers[-1][1]:
            want = ENOSYS
        assert run_bpf(prog, nr) == want, name


def test_flags_and_errors():
    f = sc.compile_filter(oci._seccomp({"defaultAction": "SCMP_ACT_ALLOW",
                                        "flags": ["SECCOMP_FILTER_FLAG_LOG"]}),
                          native="SCMP_ARCH_X86_64")
    assert f.flags == 2
    with pytest.raises(InvalidArgument, match="NOTIFY"):
        sc.compile_filter(oci._seccomp({"defaultAction": "SCMP_ACT_NOTIFY"}),
                          native="SCMP_ARCH_X86_64")
    with pytest.raises(InvalidArgument, match="SCMP_CMP_SOMETIMES"):
        oci._seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]})
    with pytest.raises(InvalidArgument, match="index"):
        oci._seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})
    with pytest.raises(InvalidArgument, match="unsigned 64-bit"):
        oci._seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]})


def test_oci_config_carries_seccomp():
    doc = {"process": {"args": ["sh"]}, "root": {"path": "rootfs"},
           "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
                                 "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}}
    spec = oci.parse(doc)
    assert spec.linux.seccomp is not None
    assert spec.linux.seccomp.syscalls[0].names == ["read"]
    assert oci.parse({"process": {"args": ["sh"]}, "root": {"path": "r"}}).linux.seccomp is None


# --- Docker's profile format -> OCI -----------------------------------------------------


def names_of(resolved: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for rule in resolved["syscalls"]:
        for n in rule["names"]:
            out.setdefault(n, []).append(rule)
    return out


def test_resolve_caps_include_exclude():
    plain = names_of(docker_default())
    assert "unshare" not in plain and "mount" not in plain
    assert [r.get("args") for r in plain["clone"]] == [
        [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]]
    assert plain["clone3"][0]["action"] == "SCMP_ACT_ERRNO"
    assert "chroot" in plain  # CAP_SYS_CHROOT is a default capability
    admin = names_of(docker_default([*DEFAULT_CAPS, "CAP_SYS_ADMIN"]))
    assert "unshare" in admin and "mount" in admin
    assert all("args" not in r for r in admin["clone"])  # the masked rule is excluded
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in admin["clone3"])
    ptrace = names_of(docker_default([*DEFAULT_CAPS, "CAP_SYS_PTRACE"]))
    assert "kcmp" in ptrace and "kcmp" not in plain


def test_resolve_arches_and_kernel():
    x86 = docker_default()
    assert x86["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert x86["defaultAction"] == "SCMP_ACT_ERRNO" and x86["defaultErrnoRet"] == 1
    assert "arch_prctl" in names_of(x86) and "set_tls" not in names_of(x86)
    arm = docker_default(host=AARCH64_HOST)
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in names_of(arm) and "set_tls" in names_of(arm)
    old = profiles.resolve(profiles.default_profile(), DEFAULT_CAPS,
                           "SCMP_ARCH_X86_64", "amd64", (4, 4))
    assert "process_vm_readv" not in names_of(old)  # minKernel 4.8


def test_default_profile_is_dockers():
    prof = profiles.default_profile()
    allow = prof["syscalls"][0]
    assert allow["action"] == "SCMP_ACT_ALLOW" and 350 < len(allow["names"]) < 400
    for denied in ("keyctl", "add_key", "request_key", "kexec_load", "userfaultfd", "unshare",
                   "mount", "socket", "clone"):
        assert denied not in allow["names"]


def test_security_opts():
    profile, nnp = profiles.parse_security_opts([])
    assert profile is not None and not nnp
    assert profiles.parse_security_opts(["seccomp=unconfined"])[0] is None
    assert profiles.parse_security_opts(["no-new-privileges"])[1] is True
    assert profiles.parse_security_opts(["no-new-privileges:true"])[1] is True
    assert profiles.parse_security_opts(["no-new-privileges=false"])[1] is False
    custom = profiles.parse_security_opts(['seccomp={"defaultAction":"SCMP_ACT_LOG"}'])[0]
    assert custom == {"defaultAction": "SCMP_ACT_LOG"}
    with pytest.raises(InvalidArgument):
        profiles.parse_security_opts(["apparmor=x"])
    with pytest.raises(InvalidArgument):
        profiles.parse_security_opts(["seccomp={not json"])


def test_inline_profile_option(tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    assert profiles.inline_profile_option(f"seccomp={p}") == \
        'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'
    assert profiles.inline_profile_option("seccomp=unconfined") == "seccomp=unconfined"
    with pytest.raises(InvalidArgument, match="opening seccomp profile"):
        profiles.inline_profile_option(f"seccomp={tmp_path}/missing.json")


def test_spec_options():
    user = ExecUser(uid=0, gid=0, additional_gids=[], home="/root")
    base = specgen.base_spec("/r", ["sh"], [], "/", user, "h", False)
    doc = specgen.build(base, specgen.with_security_opts([]))
    assert doc["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert doc["process"]["noNewPrivileges"] is False
    oci.parse(doc)  # valid for the runtime
    doc = specgen.build(specgen.base_spec("/r", ["sh"], [], "/", user, "h", False),
                        specgen.with_security_opts(["seccomp=unconfined",
                                                    "no-new-privileges"]))
    assert "seccomp" not in doc["linux"] and doc["process"]["noNewPrivileges"] is True
