"""Seccomp on the real kernel: Docker's default profile, unconfined, custom profiles.

/proc/self/status tells what the kernel installed: ``Seccomp: 2`` is filter mode (0: none)
and ``Seccomp_filters`` counts the filters stacked on the process.
"""

from __future__ import annotations

import json

import pytest

from minidock.runtime.seccomp import ARCHES, native_arch
from minidock.runtime.syscalls import TABLES

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

# the containers run the host's architecture: its numbers for syscall(2)
NR = TABLES[ARCHES[native_arch()].table]
STATUS = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status"


def run(md, *args, **kw):
    return md.run("run", "--rm", *args, **kw)


def status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines())


def test_default_container_is_filtered(md, images):
    r = run(md, "busybox", "sh", "-c", STATUS)
    assert r.returncode == 0, r.stderr
    assert status(r.stdout) == {"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "0"}


def test_unconfined(md, images):
    r = run(md, "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c", STATUS)
    assert r.returncode == 0, r.stderr
    assert status(r.stdout)["Seccomp"] == "0"


def test_no_new_privileges(md, images):
    r = run(md, "--security-opt", "no-new-privileges", "busybox", "sh", "-c", STATUS)
    assert r.returncode == 0, r.stderr
    assert status(r.stdout) == {"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "1"}


@pytest.mark.parametrize("user", ["1000", "1000:1000"])
def test_non_root_user_is_filtered(md, images, user):
    # the filter is loaded before the switch to uid 1000, while the init still has
    # CAP_SYS_ADMIN (no_new_privs is off by default)
    r = run(md, "-u", user, "busybox", "sh", "-c", f"id -u; {STATUS}; unshare -U true")
    lines = r.stdout.splitlines()
    assert lines[0] == "1000"
    assert status("\n".join(lines[1:]))["Seccomp"] == "2"
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_namespace_syscalls_need_cap_sys_admin(md, images):
    # unshare(2) is in the CAP_SYS_ADMIN group of Docker's profile: EPERM, even as root
    # in the container (which has no CAP_SYS_ADMIN either, but this is seccomp's EPERM:
    # unconfined, the same unshare of a user namespace needs no capability and works)
    r = run(md, "busybox", "unshare", "-U", "true")
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr
    r = run(md, "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "true")
    assert r.returncode == 0, r.stderr


def test_keyring_syscalls_denied(md, images):
    # add_key/keyctl are in no group of Docker's profile: never allowed. Python's os has no
    # keyctl, but debian's perl does syscall(2) directly.
    script = (f"$! = 0; syscall({NR['keyctl']}, 1, 0); print $!+0, \"\\n\";"  # GET_KEYRING_ID
              f"$! = 0; syscall({NR['getpid']}); print $!+0, \"\\n\"")  # getpid: allowed
    r = run(md, "debian:bookworm", "perl", "-e", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "0"]  # EPERM, then no error


def test_custom_profile_denies_mkdir(md, images, tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile))
    r = run(md, "--security-opt", f"seccomp={path}", "busybox", "mkdir", "/x")
    assert r.returncode == 1
    assert "Operation not permitted" in r.stderr
    r = run(md, "--security-opt", f"seccomp={path}", "busybox", "sh", "-c", "touch /y && echo ok")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


def test_custom_profile_errno_and_args(md, images, tmp_path):
    # an argument condition and a chosen errno: socket(AF_INET, ...) fails with
    # EAFNOSUPPORT (97), socket(AF_UNIX, ...) works
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                      "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}],
    }
    path = tmp_path / "no-inet.json"
    path.write_text(json.dumps(profile))
    script = ("use Socket; socket(S, PF_INET, SOCK_STREAM, 0) or print $!+0, \"\\n\";"
              "socket(U, PF_UNIX, SOCK_STREAM, 0) and print \"unix\\n\";")
    r = run(md, "--security-opt", f"seccomp={path}", "debian:bookworm", "perl", "-e", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["97", "unix"]


def test_profile_is_stored_inline(md, images, tmp_path):
    # Docker's CLI reads the file at create: removing it afterwards does not matter
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    r = md.run("create", "--security-opt", f"seccomp={path}", "busybox", "mkdir", "/x")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        path.unlink()
        r = md.run("start", "-a", cid)
        assert r.returncode == 1 and "Operation not permitted" in r.stderr
    finally:
        md.run("rm", "-f", cid)


def test_bad_security_opt(md, images, tmp_path):
    r = run(md, "--security-opt", "seccomp=/nonexistent.json", "busybox", "true")
    assert r.returncode == 125 and "/nonexistent.json" in r.stderr
    r = run(md, "--security-opt", "bogus=1", "busybox", "true")
    assert r.returncode == 125 and "security-opt" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_NOPE"}))
    r = run(md, "--security-opt", f"seccomp={bad}", "busybox", "true")
    assert r.returncode == 125 and "SCMP_ACT_NOPE" in r.stderr


def test_workloads_under_default_profile(md, images):
    # a debian userland (dynamic glibc, bash, coreutils, apt's tools) runs unchanged
    r = run(md, "debian:bookworm", "bash", "-c",
            "set -e; mkdir -p /tmp/a && cd /tmp/a && echo hi > f && cp f g && cat g;"
            "ls / >/dev/null; sleep 0.01 & wait; dpkg -s bash >/dev/null && echo dpkg-ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\ndpkg-ok\n"
