"""Docker's seccomp profile format, resolved into the OCI ``linux.seccomp`` section.

Docker's profiles (``seccomp_default.json`` here, moby's ``profiles/seccomp/default.json``)
are one file for every machine and every capability set: rules carry ``includes`` and
``excludes`` conditions on the container's capabilities (its bounding set), the machine's
architecture (Go's names: amd64, arm64, ...) and the kernel version (``minKernel``), and an
``archMap`` says which ABIs to cover on which machine (x86_64 -> also x86 and x32). The
engine resolves all that once, when it writes config.json, as moby does
(``profiles/seccomp/seccomp_linux.go``): what reaches the runtime is a plain OCI section,
and the runtime only compiles it (minidock/runtime/seccomp.py).
"""

from __future__ import annotations

import json
import os

from minidock.errors import InvalidArgument
from minidock.jsonobj import parse_object

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

# uname machine -> (libseccomp's name, Go's GOARCH as the profile's "arches" use it)
_MACHINES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "i686": ("SCMP_ARCH_X86", "386"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
}


def default_profile() -> dict[str, Any]:
    """Docker's default profile (package data next to this module; 17 kB, parsed in well
    under a millisecond, so it is read on each call rather than cached)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
    with open(path, encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def load_profile(text: str, source: str = "seccomp profile") -> dict[str, Any]:
    return parse_object(text, f"decoding {source}")


def host() -> tuple[str, str, tuple[int, int]]:
    """(libseccomp arch, Go arch, kernel (major, minor)) of this machine."""
    u = os.uname()
    scmp, goarch = _MACHINES.get(u.machine, (f"SCMP_ARCH_{u.machine.upper()}", u.machine))
    return scmp, goarch, _version(u.release)


def _version(text: str) -> tuple[int, int]:
    parts = [*text.split("-")[0].split("."), "0", "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise InvalidArgument(f"seccomp: cannot parse kernel version {text!r}") from None


def _matches(cond: dict[str, Any] | None, caps: set[str], goarch: str,
             kernel: tuple[int, int]) -> tuple[bool, bool, bool]:
    """Which parts of an includes/excludes block hold: (arches, caps, minKernel).
    A part that is absent counts as not holding (callers read it per their semantics)."""
    cond = cond or {}
    arches = goarch in (cond.get("arches") or [])
    needed = cond.get("caps") or []
    caps_hold = bool(needed) and all(c in caps for c in needed)
    min_kernel = cond.get("minKernel")
    kernel_holds = bool(min_kernel) and kernel >= _version(str(min_kernel))
    return arches, caps_hold, kernel_holds


def resolve(profile: dict[str, Any], bounding: list[str], scmp_arch: str, goarch: str,
            kernel: tuple[int, int]) -> dict[str, Any]:
    """Docker profile -> OCI ``linux.seccomp`` for this container and machine (pure)."""
    caps = set(bounding)
    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == scmp_arch:
            arches = [scmp_arch, *(entry.get("subArchitectures") or [])]
            break
    else:
        arches = list(profile.get("architectures") or [])  # the older flat form
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    syscalls = []
    for call in profile.get("syscalls") or []:
        ex = call.get("excludes") or {}
        # excludes: the rule is dropped if the arch is listed, if the container has ANY of
        # the listed capabilities, or if the kernel is at least minKernel
        ex_arch, _, ex_kernel = _matches(ex, caps, goarch, kernel)
        if ex_arch or ex_kernel or any(c in caps for c in ex.get("caps") or []):
            continue
        inc = call.get("includes") or {}
        # includes: the rule is kept only if the arch is listed (when a list is given), the
        # container has ALL the listed capabilities, and the kernel is at least minKernel
        inc_arch, inc_caps, inc_kernel = _matches(inc, caps, goarch, kernel)
        if inc.get("arches") and not inc_arch:
            continue
        if inc.get("caps") and not inc_caps:
            continue
        if inc.get("minKernel") and not inc_kernel:
            continue
        names = list(call.get("names") or [])
        if call.get("name"):  # the older one-name form
            names.append(call["name"])
        rule: dict[str, Any] = {"names": names, "action": call.get("action", "")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [dict(a) for a in call["args"]]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def parse_security_opts(opts: list[str] | None) -> tuple[dict[str, Any] | None, bool]:
    """HostConfig.SecurityOpt -> (Docker profile or None for unconfined, no_new_privileges).

    The strings are what Docker stores: ``seccomp=unconfined``, ``seccomp=<profile JSON>``
    (the CLI reads a ``seccomp=FILE`` and inlines it), ``no-new-privileges[=true|false]``
    (``:`` also accepted as the separator, as Docker does).
    """
    profile: dict[str, Any] | None = default_profile()
    no_new_privs = False
    for opt in opts or []:
        key, sep, value = opt.partition("=")
        if not sep and ":" in opt:
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidArgument(
                    f"invalid --security-opt: {opt!r}: want no-new-privileges[=true|false]")
            no_new_privs = value != "false"
        elif key == "label" and value == "disable":
            pass  # SELinux labels: none here (what Docker stores for --privileged)
        elif key == "seccomp" and value == "unconfined":
            profile = None
        elif key == "seccomp" and value:
            profile = load_profile(value)
        else:
            raise InvalidArgument(f"invalid --security-opt: {opt!r} (supported: "
                                  "seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges)")
    return profile, no_new_privs


def inline_profile_option(opt: str) -> str:
    """What Docker's CLI does with ``--security-opt seccomp=FILE``: the engine stores the
    profile itself, so later starts do not depend on the file still being there."""
    key, sep, value = opt.partition("=")
    if key != "seccomp" or not sep or value in ("", "unconfined"):
        return opt
    try:
        with open(value, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InvalidArgument(
            f"opening seccomp profile ({value}) failed: {(e.strerror or '').lower()}") from None
    doc = load_profile(text, f"seccomp profile {value}")
    return "seccomp=" + json.dumps(doc, separators=(",", ":"))
