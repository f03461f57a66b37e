"""Seccomp: compile the OCI ``linux.seccomp`` section into a classic BPF program.

How the kernel uses it. Once a filter is installed (seccomp(SECCOMP_SET_MODE_FILTER) or
prctl(PR_SET_SECCOMP)), every system call the process and its descendants make first runs
the filter: a small program for the classic BPF virtual machine (one 32-bit accumulator A,
forward jumps only, so it always terminates) that reads a read-only ``struct seccomp_data``
and returns a 32-bit verdict. Filters are inherited across fork and execve and can never be
removed: that is what makes them a confinement.

    struct seccomp_data {        offset
        int   nr;                  0    syscall number (of the calling ABI!)
        __u32 arch;                4    AUDIT_ARCH_*: which ABI the call came in through
        __u64 instruction_pointer; 8
        __u64 args[6];            16    args[i] at 16 + 8*i; on little-endian machines the
    };                                  low 32 bits first, the high 32 bits 4 bytes later

    verdict (high 16 bits: action, low 16 bits: data)
        SECCOMP_RET_KILL_PROCESS 0x80000000   SECCOMP_RET_TRACE 0x7ff00000 | data
        SECCOMP_RET_KILL_THREAD  0x00000000   SECCOMP_RET_LOG   0x7ffc0000
        SECCOMP_RET_TRAP         0x00030000   SECCOMP_RET_ALLOW 0x7fff0000
        SECCOMP_RET_ERRNO        0x00050000 | errno (the call fails with that errno)

The shape of the program we generate (libseccomp, which runc uses, makes the same kind):

    ld  [4]                       ; A = arch
    jeq AUDIT_ARCH_X86_64, 0, ->next arch section (a `ja`, since it is far)
    ld  [0]                       ; A = nr
    x86_64 only: nr >= 0x40000000 (the x32 ABI, same arch value) -> kill
    nr > highest number the profile names -> ERRNO(ENOSYS)   (runc does this too: a
          syscall newer than the profile "does not exist", so libc falls back to an older
          one instead of failing with EPERM)
    for each syscall that has argument conditions: a block, tried rule by rule
    for each action: the syscalls it applies to unconditionally, consecutive numbers
          grouped into ranges (jge lo / jgt hi), then `ret action`
    ret defaultAction
    ... the same for each further architecture ...
    ret KILL_PROCESS              ; a call from an ABI the profile does not cover

Why check the arch: the same number means different calls in different ABIs (x86_64's 2 is
open, i386's 2 is fork). A filter that ignored ``arch`` could be bypassed by a 32-bit call.

Conditional jumps in classic BPF have 8-bit offsets (at most 255 instructions ahead) and
``ja`` a 32-bit one; a program may hold at most 4096 instructions (BPF_MAXINSNS). The code
below keeps every conditional jump local and uses ``ja`` for the long ones.

Semantics that follow libseccomp and runc, so an OCI profile means the same here:
- a name the architecture does not have is skipped (``arch_prctl`` on aarch64);
- a rule whose action equals the default action is dropped (it changes nothing);
- rules with arguments are tried before an unconditional rule for the same syscall; the
  conditions of one rule are ANDed, except that when two of them test the same argument the
  rule is split into one rule per condition (ORed), as runc does;
- arguments compare as unsigned 64-bit values (both 32-bit halves), on 32-bit ABIs the low
  half only; SCMP_CMP_MASKED_EQ is ``(arg & value) == valueTwo``.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence

from minidock.errors import InvalidArgument
from minidock.oci.runtime import Seccomp, SeccompArg
from minidock.records import record
from minidock.runtime.syscalls import TABLES

# classic BPF opcodes (linux/bpf_common.h): class | size | mode / op | source
LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS: A = *(u32 *)(data + k)
ALU_AND_K = 0x04 | 0x50 | 0x00  # BPF_ALU | BPF_AND | BPF_K: A &= k
JMP_JA = 0x05 | 0x00  # BPF_JMP | BPF_JA: pc += k
JMP_JEQ_K = 0x05 | 0x10  # pc += (A == k) ? jt : jf
JMP_JGT_K = 0x05 | 0x20  # unsigned A > k
JMP_JGE_K = 0x05 | 0x30  # unsigned A >= k
RET_K = 0x06  # BPF_RET | BPF_K: return k

BPF_MAXINSNS = 4096
SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter { u16 code; u8 jt, jf; u32 k; }

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

OFF_NR = 0
OFF_ARCH = 4
OFF_ARGS = 16
X32_SYSCALL_BIT = 0x40000000

FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}


@record(frozen=True)
class Arch:
    table: str  # key into syscalls.TABLES
    audit: int  # AUDIT_ARCH_* (linux/audit.h): what seccomp_data.arch says
    bits: int  # 32: compare only the low half of arguments
    x32_guard: bool = False


ARCHES = {
    "SCMP_ARCH_X86_64": Arch("X86_64", 0xC000003E, 64, x32_guard=True),
    "SCMP_ARCH_X86": Arch("X86", 0x40000003, 32),
    "SCMP_ARCH_AARCH64": Arch("AARCH64", 0xC00000B7, 64),
}
_MACHINES = {"x86_64": "SCMP_ARCH_X86_64", "amd64": "SCMP_ARCH_X86_64",
             "aarch64": "SCMP_ARCH_AARCH64", "arm64": "SCMP_ARCH_AARCH64",
             "i686": "SCMP_ARCH_X86", "i386": "SCMP_ARCH_X86"}


def native_arch() -> str:
    machine = os.uname().machine
    if machine not in _MACHINES:
        raise InvalidArgument(f"seccomp: architecture {machine} is not supported")
    return _MACHINES[machine]


@record(frozen=True)
class Filter:
    program: bytes  # struct sock_filter[], ready for seccomp(2)
    length: int  # number of instructions
    flags: int  # SECCOMP_FILTER_FLAG_*


def action_value(action: str, errno_ret: int | None, default_errno: int = errno.EPERM) -> int:
    """The 32-bit verdict for an OCI action name (SCMP_ACT_*)."""
    if action == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if action == "SCMP_ACT_ERRNO":
        return RET_ERRNO | ((default_errno if errno_ret is None else errno_ret) & 0xFFFF)
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return RET_TRAP
    if action == "SCMP_ACT_TRACE":
        return RET_TRACE | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_LOG":
        return RET_LOG
    raise InvalidArgument(f"seccomp: action {action} is not supported")


# --- a tiny assembler: instructions with symbolic jump targets, resolved at the end ---


class _Label:
    """A position in the program; jumps name it, :meth:`_Asm.place` fixes it."""


class _Op:
    # a plain class, not a dataclass: this module is imported on every container start
    __slots__ = ("code", "jf", "jt", "k")

    def __init__(self, code: int, k: int = 0, jt: _Label | None = None,
                 jf: _Label | None = None) -> None:
        self.code, self.k = code, k
        self.jt, self.jf = jt, jf  # None: the next instruction (offset 0)


class _Asm:
    def __init__(self) -> None:
        self.items: list[_Op | _Label] = []

    def load(self, offset: int) -> None:
        self.items.append(_Op(LD_W_ABS, offset))

    def and_(self, mask: int) -> None:
        self.items.append(_Op(ALU_AND_K, mask))

    def jump(self, code: int, k: int, jt: _Label | None = None,
             jf: _Label | None = None) -> None:
        self.items.append(_Op(code, k, jt, jf))

    def ja(self, target: _Label) -> None:
        self.items.append(_Op(JMP_JA, 0, target))

    def ret(self, value: int) -> None:
        self.items.append(_Op(RET_K, value))

    def place(self, label: _Label) -> None:
        self.items.append(label)

    def extend(self, other: _Asm) -> None:
        self.items.extend(other.items)

    def __len__(self) -> int:
        return sum(1 for i in self.items if isinstance(i, _Op))

    def assemble(self) -> list[tuple[int, int, int, int]]:
        where: dict[_Label, int] = {}
        pc = 0
        for item in self.items:
            if isinstance(item, _Label):
                where[item] = pc
            else:
                pc += 1
        out = []
        pc = 0
        for item in self.items:
            if isinstance(item, _Label):
                continue

            def offset(target: _Label | None, pc: int = pc) -> int:
                return 0 if target is None else where[target] - pc - 1

            if item.code == JMP_JA:
                out.append((item.code, 0, 0, offset(item.jt)))
            else:
                jt, jf = offset(item.jt), offset(item.jf)
                if not (0 <= jt <= 255 and 0 <= jf <= 255):
                    raise AssertionError(f"seccomp: jump out of range at {pc}: {jt}, {jf}")
                out.append((item.code, jt, jf, item.k))
            pc += 1
        return out


# --- rules -> code ---


class _Rule:
    __slots__ = ("conds", "value")

    def __init__(self, value: int, conds: list[SeccompArg]) -> None:
        self.value = value  # verdict
        self.conds = conds  # ANDed


def _halves(value: int) -> tuple[int, int]:
    value &= 0xFFFFFFFFFFFFFFFF
    return value >> 32, value & 0xFFFFFFFF


def _emit_cond(a: _Asm, arch: Arch, cond: SeccompArg, fail: _Label) -> None:
    """Fall through if the condition holds, jump to ``fail`` if it does not.

    A 64-bit unsigned comparison from two 32-bit ones: the high halves decide unless they
    are equal, then the low halves do. On a 32-bit ABI only the low half exists.
    """
    lo_off = OFF_ARGS + 8 * cond.index  # little-endian: low word first
    hi_off = lo_off + 4
    vhi, vlo = _halves(cond.value)
    wide = arch.bits == 64
    ok = _Label()
    op = cond.op
    if op == "SCMP_CMP_EQ":
        if wide:
            a.load(hi_off)
            a.jump(JMP_JEQ_K, vhi, None, fail)
        a.load(lo_off)
        a.jump(JMP_JEQ_K, vlo, None, fail)
    elif op == "SCMP_CMP_NE":
        if wide:
            a.load(hi_off)
            a.jump(JMP_JEQ_K, vhi, None, ok)  # high halves differ: not equal
        a.load(lo_off)
        a.jump(JMP_JEQ_K, vlo, fail, None)
    elif op == "SCMP_CMP_MASKED_EQ":
        mhi, mlo = vhi, vlo
        dhi, dlo = _halves(cond.value_two)
        if wide and (mhi or dhi):
            a.load(hi_off)
            a.and_(mhi)
            a.jump(JMP_JEQ_K, dhi, None, fail)
        a.load(lo_off)
        a.and_(mlo)
        a.jump(JMP_JEQ_K, dlo, None, fail)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        # arg > v  <=>  hi > vhi  or  (hi == vhi and lo > vlo)
        if wide:
            a.load(hi_off)
            a.jump(JMP_JGT_K, vhi, ok, None)
            a.jump(JMP_JEQ_K, vhi, None, fail)  # hi < vhi
        a.load(lo_off)
        a.jump(JMP_JGT_K if op == "SCMP_CMP_GT" else JMP_JGE_K, vlo, None, fail)
    elif op in ("SCMP_CMP_LT", "SCMP_CMP_LE"):
        # arg < v  <=>  not (arg >= v);  arg <= v  <=>  not (arg > v)
        if wide:
            a.load(hi_off)
            a.jump(JMP_JGT_K, vhi, fail, None)
            a.jump(JMP_JEQ_K, vhi, None, ok)  # hi < vhi
        a.load(lo_off)
        a.jump(JMP_JGE_K if op == "SCMP_CMP_LT" else JMP_JGT_K, vlo, fail, None)
    else:
        raise InvalidArgument(f"seccomp: comparison {op} is not supported")
    a.place(ok)


def _split(args: Sequence[SeccompArg]) -> list[list[SeccompArg]]:
    """runc's rule: conditions on distinct arguments are ANDed in one rule; if two test the
    same argument, each condition becomes a rule of its own (ORed)."""
    indexes = [c.index for c in args]
    if len(set(indexes)) == len(indexes):
        return [list(args)]
    return [[c] for c in args]


def _conditional_block(a: _Asm, arch: Arch, nr: int, rules: list[_Rule],
                       fallback: int) -> None:
    """``if nr == N: try each rule, else return fallback``. A holds nr on entry and still
    does when the block is skipped; inside, every path ends in a ``ret``."""
    body = _Asm()
    for rule in rules:
        next_rule = _Label()
        for cond in rule.conds:
            _emit_cond(body, arch, cond, next_rule)
        body.ret(rule.value)
        body.place(next_rule)
    body.ret(fallback)
    after = _Label()
    if len(body) <= 255:
        a.jump(JMP_JEQ_K, nr, None, after)
    else:  # too far for an 8-bit offset: hop over a `ja`
        inside = _Label()
        a.jump(JMP_JEQ_K, nr, inside, None)
        a.ja(after)
        a.place(inside)
    a.extend(body)
    a.place(after)


def _ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _unconditional_group(a: _Asm, numbers: Sequence[int], value: int) -> None:
    """Return ``value`` if A (nr) is one of ``numbers``; fall through otherwise.

    The compares jump forward to a shared ``ret``; to keep those jumps under 256 the list
    is cut into chunks, each with its own ``ret`` (hopped over by a ``ja``)."""
    chunk: list[tuple[int, int]] = []
    size = 0
    chunks = []
    for lo, hi in _ranges(numbers):
        chunk.append((lo, hi))
        size += 1 if lo == hi else 2
        if size >= 240:
            chunks.append(chunk)
            chunk, size = [], 0
    if chunk:
        chunks.append(chunk)
    for chunk in chunks:
        hit, miss = _Label(), _Label()
        for lo, hi in chunk:
            if lo == hi:
                a.jump(JMP_JEQ_K, lo, hit, None)
            elif hi == lo + 1:
                a.jump(JMP_JEQ_K, lo, hit, None)
                a.jump(JMP_JEQ_K, hi, hit, None)
            else:
                below = _Label()
                a.jump(JMP_JGE_K, lo, None, below)
                a.jump(JMP_JGT_K, hi, None, hit)
                a.place(below)
        a.ja(miss)
        a.place(hit)
        a.ret(value)
        a.place(miss)


def _arch_section(a: _Asm, arch: Arch, sec: Seccomp, default: int, bad_arch: int) -> None:
    table = TABLES[arch.table]
    conditional: dict[int, list[_Rule]] = {}
    unconditional: dict[int, int] = {}  # nr -> verdict (the first rule wins)
    named: list[int] = []
    for call in sec.syscalls:
        value = action_value(call.action, call.errno_ret)
        for name in call.names:
            nr = table.get(name)
            if nr is None:
                continue  # not a syscall of this ABI: libseccomp skips it too
            named.append(nr)
            if value == default:
                continue
            if call.args:
                for conds in _split(call.args):
                    conditional.setdefault(nr, []).append(_Rule(value, conds))
            else:
                unconditional.setdefault(nr, value)

    a.load(OFF_NR)
    if arch.x32_guard:
        # x32 calls arrive with AUDIT_ARCH_X86_64 and bit 30 set in nr. nr == -1 is not a
        # call (a tracer skipped it) and goes on to the default action.
        rules = _Label()
        a.jump(JMP_JGE_K, X32_SYSCALL_BIT, None, rules)
        a.jump(JMP_JEQ_K, 0xFFFFFFFF, rules, None)
        a.ret(bad_arch)
        a.place(rules)
    if named and default not in (RET_ALLOW, RET_LOG):
        known = _Label()
        a.jump(JMP_JGT_K, max(named), None, known)
        a.jump(JMP_JEQ_K, 0xFFFFFFFF, known, None)  # again: nr == -1 is not "newer"
        a.ret(RET_ERRNO | errno.ENOSYS)
        a.place(known)
    for nr in sorted(conditional):
        _conditional_block(a, arch, nr, conditional[nr], unconditional.pop(nr, default))
    by_value: dict[int, list[int]] = {}
    for nr, value in unconditional.items():
        by_value.setdefault(value, []).append(nr)
    # the biggest group (the allow-list) first: the common case exits soonest
    for value, numbers in sorted(by_value.items(), key=lambda kv: -len(kv[1])):
        _unconditional_group(a, numbers, value)
    a.ret(default)


def compile_filter(sec: Seccomp, native: str | None = None) -> Filter:
    """Compile a validated OCI seccomp section for this machine (or for ``native``)."""
    native = native or native_arch()
    default = action_value(sec.default_action, sec.default_errno_ret)
    bad_arch = RET_KILL_PROCESS
    # The native ABI first (it is the one almost every call comes through), then the others
    # the profile lists; an architecture we have no table for is left out, so its calls
    # meet the bad-arch verdict: stricter than asked, never looser.
    names = [native, *(n for n in sec.architectures if n != native)]
    arches = [ARCHES[n] for n in dict.fromkeys(names) if n in ARCHES]
    flags = 0
    for flag in sec.flags:
        if flag not in FILTER_FLAGS:
            raise InvalidArgument(f"seccomp: flag {flag} is not supported")
        flags |= FILTER_FLAGS[flag]
    a = _Asm()
    a.load(OFF_ARCH)
    for arch in arches:
        # `jeq AUDIT_ARCH, +1, +0; ja other`: a section is longer than an 8-bit jump. A still
        # holds arch when `ja` is taken (the section is where A gets reloaded with nr).
        inside, other = _Label(), _Label()
        a.jump(JMP_JEQ_K, arch.audit, inside, None)
        a.ja(other)
        a.place(inside)
        _arch_section(a, arch, sec, default, bad_arch)
        a.place(other)
    a.ret(bad_arch)
    insns = a.assemble()
    if len(insns) > BPF_MAXINSNS:
        raise InvalidArgument(
            f"seccomp: the profile compiles to {len(insns)} BPF instructions, more than the "
            f"kernel's limit of {BPF_MAXINSNS}")
    program = b"".join(SOCK_FILTER.pack(*i) for i in insns)
    return Filter(program, len(insns), flags)


def unpack(program: bytes) -> list[tuple[int, int, int, int]]:
    """struct sock_filter[] back to (code, jt, jf, k) tuples (tests, debugging)."""
    return [SOCK_FILTER.unpack_from(program, i) for i in range(0, len(program),
                                                                  SOCK_FILTER.size)]
