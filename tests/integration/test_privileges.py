"""What a container may do, checked from inside it: the capability sets of the default,
--cap-drop ALL, --cap-add NET_ADMIN and --privileged (CapEff/CapBnd/CapInh/CapAmb), no_new_privs
and the seccomp mode, /sys's mount options, /dev, masked /proc paths, and mount(2) refused or
allowed. Expected values recorded from docker 20.10 on this machine (whose own bounding set
lacks CAP_SYS_RESOURCE: --privileged gets what the host may grant)."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

PROBE = ("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; "
         "grep -E ' /sys ' /proc/self/mounts; echo devices=$(ls /dev | wc -l); "
         "echo keys=$(grep -c '/proc/keys ' /proc/self/mounts); "
         "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t 2>/dev/null && echo mount=ok "
         "|| echo mount=refused")


def probe(md, *flags: str) -> dict[str, str]:
    r = md.run("run", "--rm", "--network", "none", *flags, "busybox", "sh", "-c", PROBE)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("sysfs "):
            out["sys"] = line.split()[3]
        elif ":" in line:
            key, value = line.split(":", 1)
            out[key] = value.strip()
        else:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def own_bounding() -> str:
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("CapBnd:"))


def test_the_default_is_dockers_confinement(md, images):
    got = probe(md)
    assert {k: got[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                "NoNewPrivs", "Seccomp")} == {
        "CapInh": "0000000000000000", "CapPrm": "00000000a80425fb",
        "CapEff": "00000000a80425fb", "CapBnd": "00000000a80425fb",
        "CapAmb": "0000000000000000", "NoNewPrivs": "0", "Seccomp": "2"}
    assert got["sys"].startswith("ro,") and got["keys"] == "1"  # /dev/null bound over it
    assert got["mount"] == "refused"


@pytest.mark.parametrize("flags, effective", [
    (("--cap-drop", "ALL"), "0000000000000000"),
    (("--cap-add", "net_admin"), "00000000a80435fb"),
    (("--cap-drop", "all", "--cap-add", "CAP_KILL"), "0000000000000020"),
    (("--cap-drop", "CHOWN", "--cap-drop", "cap_kill"), "00000000a80425da"),
])
def test_cap_add_and_drop_as_docker(md, images, flags, effective):
    got = probe(md, *flags)
    assert got["CapEff"] == got["CapPrm"] == got["CapBnd"] == effective
    assert got["Seccomp"] == "2" and got["mount"] == "refused"


def test_read_only_root_keeps_the_confinement(md, images):
    got = probe(md, "--read-only")
    assert got["CapEff"] == "00000000a80425fb" and got["Seccomp"] == "2"
    r = md.run("run", "--rm", "--network", "none", "--read-only", "busybox", "sh", "-c",
               "grep ' / ' /proc/self/mounts; touch /x 2>&1; touch /dev/shm/y && echo shm-ok",
               check=True)
    root, message, shm = r.stdout.splitlines()
    assert root.split()[3].startswith("ro,") and "Read-only file system" in message
    assert shm == "shm-ok"  # the mounts on it stay writable


def test_cap_add_sys_admin_lets_mount_through_seccomp_too(md, images):
    got = probe(md, "--cap-add", "SYS_ADMIN")
    assert got["mount"] == "ok"  # the default profile allows mount(2) with CAP_SYS_ADMIN


def test_privileged_gets_everything_the_host_may_grant(md, images):
    got = probe(md, "--privileged")
    assert got["CapEff"] == got["CapBnd"] == own_bounding()
    assert got["Seccomp"] == "0" and got["NoNewPrivs"] == "0"
    assert got["sys"].startswith("rw,") and got["keys"] == "0"
    assert int(got["devices"]) > int(probe(md)["devices"])  # the host's devices too
    assert got["mount"] == "ok"
    cid = md.run("create", "--privileged", "busybox", "true", check=True).stdout.strip()
    try:
        hc = json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", cid,
                               check=True).stdout)
        assert (hc["Privileged"], hc["MaskedPaths"], hc["ReadonlyPaths"], hc["SecurityOpt"]
                ) == (True, None, None, ["label=disable"])
    finally:
        md.run("rm", "-f", cid)


def test_hostconfig_keeps_the_names_as_docker_and_refuses_unknown_ones(md, images):
    cid = md.run("create", "--cap-add", "net_admin", "--cap-drop", "all", "busybox", "true",
                 check=True).stdout.strip()
    try:
        hc = json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", cid,
                               check=True).stdout)
        assert (hc["CapAdd"], hc["CapDrop"]) == (["CAP_NET_ADMIN"], ["ALL"])
    finally:
        md.run("rm", "-f", cid)
    r = md.run("run", "--rm", "--cap-add", "FOO", "busybox", "true")
    assert r.returncode == 125 and 'invalid CapAdd: unknown capability: "CAP_FOO"' in r.stderr
    assert md.run("ps", "-aq").stdout == ""


def test_a_non_root_user_gets_the_bounding_set_only(md, images):
    r = md.run("run", "--rm", "--network", "none", "-u", "1000", "--cap-add", "net_admin",
               "busybox", "grep", "^Cap", "/proc/self/status", check=True)
    caps = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert (caps["CapEff"], caps["CapPrm"], caps["CapBnd"]) == (
        "0000000000000000", "0000000000000000", "00000000a80435fb")


WRITE_KMSG = ("mknod /tmp/kmsg c 1 11 && echo 'minidock device test' > /tmp/kmsg && echo wrote; "
              "true")


def test_the_device_cgroup_refuses_what_is_not_allowed(md, images):
    """v1: devices.allow; v2: the eBPF program. mknod of any node is allowed (Docker's
    default), opening one outside the list is not."""
    r = md.run("run", "--rm", "--network", "none", "busybox", "sh", "-c", WRITE_KMSG)
    assert r.returncode == 0 and "wrote" not in r.stdout, r.stdout
    assert "Operation not permitted" in r.stderr, r.stderr
    r = md.run("run", "--rm", "--network", "none", "--device-cgroup-rule", "c 1:11 w",
               "busybox", "sh", "-c", WRITE_KMSG, check=True)
    assert r.stdout == "wrote\n", r.stderr
    r = md.run("run", "--rm", "--network", "none", "--device", "/dev/kmsg:/dev/k:w", "busybox",
               "sh", "-c", "ls -l /dev/k; echo 'minidock device test' > /dev/k && echo wrote",
               check=True)
    assert r.stdout.startswith("c") and r.stdout.endswith("wrote\n"), r.stdout
    r = md.run("run", "--name", "nodev", "--network", "none", "--device", "/dev/nope-md",
               "busybox", "true")
    md.run("rm", "-f", "nodev")  # (created, never started: as Docker leaves it)
    assert r.returncode == 125 and 'error gathering device information while adding custom ' \
        'device "/dev/nope-md": no such file or directory' in r.stderr, r.stderr


# keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) through perl's syscall (perl-base
# is in every Debian): Docker's seccomp profile refuses keyctl with EPERM
KEYCTL = ('my $n = `uname -m` =~ /aarch64/ ? 219 : 250; my $r = syscall($n, 0, -3, 0, 0, 0); '
          'print $r < 0 ? "denied: $!\\n" : "allowed\\n";')


@pytest.mark.parametrize("flags, want", [
    ((), "denied: Operation not permitted"),
    (("--privileged",), "allowed"),
    (("--security-opt", "seccomp=unconfined"), "allowed"),
])
def test_keyctl_is_refused_by_the_default_profile_only(md, images, flags, want):
    r = md.run("run", "--rm", "--network", "none", *flags, "debian:bookworm", "perl", "-e",
               KEYCTL, check=True)
    assert r.stdout.strip() == want
