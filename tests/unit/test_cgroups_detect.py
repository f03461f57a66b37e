"""cgroup layout detection from mountinfo texts, and the other pure helpers of minidock.cgroups."""

from __future__ import annotations

from pathlib import Path

import pytest

from minidock.cgroups import (
    DEFAULT_DEVICE_RULES,
    default_cgroups_path,
    detect_layout,
    device_rule_line,
    normalize_cgroups_path,
    parse_mountinfo,
)
from minidock.cgroups.v1 import V1Manager
from minidock.cgroups.v2 import V2Manager
from minidock.errors import ContainerRuntimeError, InvalidArgument

# Ubuntu 22.04 / Fedora / Debian 12 (systemd, unified hierarchy), trimmed to the interesting lines.
PURE_V2 = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 28 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4007620k,mode=755
28 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
36 22 0:31 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
"""

# This project's CI host: v1 controllers mounted one per directory (cpu and cpuacct apart),
# systemd's named hierarchy, and a controller-less cgroup2 at /sys/fs/cgroup/unified.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# CentOS 7: co-mounted controllers, systemd's xattr/release_agent options, no cgroup2 at all.
PURE_V1 = """\
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:6 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup \
rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup \
rw,cpuacct,cpu
28 24 0:24 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:9 - cgroup \
cgroup rw,net_prio,net_cls
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup \
rw,memory
30 24 0:26 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup \
rw,freezer
31 24 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
"""


def _join(text: str) -> str:
    return text.replace("\\\n", "")


def test_pure_v2() -> None:
    mounts = parse_mountinfo(_join(PURE_V2))
    assert [(m.mount_point, m.fstype) for m in mounts] == [("/sys/fs/cgroup", "cgroup2")]
    layout = detect_layout(mounts)
    assert (layout.mode, layout.version) == ("v2", 2)
    assert layout.unified == "/sys/fs/cgroup"
    assert layout.hierarchies == ()


def test_hybrid() -> None:
    layout = detect_layout(parse_mountinfo(HYBRID))
    assert (layout.mode, layout.version) == ("hybrid", 1)
    assert layout.unified == "/sys/fs/cgroup/unified"
    names = [m.name for m in layout.hierarchies]
    assert names == [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
        "name=systemd",
    ]
    memory = layout.hierarchy_of("memory")
    assert memory is not None and memory.mount_point == "/sys/fs/cgroup/memory"
    assert layout.hierarchy_of("hugetlb") is None


def test_pure_v1_comounted_and_named() -> None:
    layout = detect_layout(parse_mountinfo(_join(PURE_V1)))
    assert (layout.mode, layout.version, layout.unified) == ("v1", 1, None)
    cpu = layout.hierarchy_of("cpu")
    assert cpu is not None and cpu is layout.hierarchy_of("cpuacct")
    assert cpu.mount_point == "/sys/fs/cgroup/cpu,cpuacct"
    assert cpu.controllers == frozenset({"cpu", "cpuacct"})
    systemd = layout.hierarchy_of("name=systemd")
    # xattr and release_agent=... are options, not controllers
    assert systemd is not None and systemd.controllers == frozenset({"name=systemd"})


def test_v2_wins_over_stray_v1_mounts() -> None:
    text = _join(PURE_V2) + "90 35 0:50 / /run/legacy rw - cgroup cgroup rw,name=legacy\n"
    assert detect_layout(parse_mountinfo(text)).mode == "v2"


def test_mounts_outside_root_are_not_used() -> None:
    with pytest.raises(ContainerRuntimeError, match="no cgroup filesystem is mounted at /mnt/cg"):
        detect_layout(parse_mountinfo(_join(PURE_V2)), root="/mnt/cg")


def test_lone_cgroup2_below_root_is_a_v2_tree() -> None:
    text = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    layout = detect_layout(parse_mountinfo(text))
    assert (layout.mode, layout.root, layout.unified) == (
        "v2", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified"
    )


def test_duplicate_mount_of_a_hierarchy_counts_once() -> None:
    text = HYBRID + "99 31 0:32 / /mnt/memory-again rw,relatime - cgroup cgroup rw,memory\n"
    layout = detect_layout(parse_mountinfo(text))
    memory = [m for m in layout.hierarchies if "memory" in m.controllers]
    assert [m.mount_point for m in memory] == ["/sys/fs/cgroup/memory"]


def test_bind_mounted_subtree_and_escapes() -> None:
    # Inside a v1 container: the hierarchy root is the container's own cgroup; a space in a path.
    text = (
        "1100 1090 0:32 /docker/0123abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
        "1101 1090 0:33 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids\n"
    )
    mounts = parse_mountinfo(text)
    assert mounts[0].root == "/docker/0123abc"
    assert mounts[1].mount_point == "/mnt/my cgroups"


def test_nothing_mounted() -> None:
    text = "28 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    assert parse_mountinfo(text) == []
    with pytest.raises(ContainerRuntimeError, match="no cgroup filesystem is mounted"):
        detect_layout([])


def test_garbage_lines_are_skipped() -> None:
    assert parse_mountinfo("\nnot a mountinfo line\n1 2 3\n") == []


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("/minidock/abc", "/minidock/abc"),
        ("minidock/abc", "/minidock/abc"),
        ("//minidock/./abc/", "/minidock/abc"),
    ],
)
def test_normalize_cgroups_path(given: str, want: str) -> None:
    assert normalize_cgroups_path(given) == want


@pytest.mark.parametrize("bad", ["", "/", "/minidock/../etc", "system.slice:minidock:abc"])
def test_normalize_cgroups_path_refuses(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_cgroups_path(bad)


def test_default_cgroups_path() -> None:
    assert default_cgroups_path("abc123") == "/minidock/abc123"


def test_device_rules_docker_default() -> None:
    lines = [device_rule_line(r) for r in DEFAULT_DEVICE_RULES]
    assert lines[0] == ("devices.deny", "a")
    assert set(lines[1:]) == {
        ("devices.allow", line)
        for line in [
            "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
            "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c *:* m", "b *:* m",
        ]
    }


def test_device_rule_forms() -> None:
    assert device_rule_line({"allow": True}) == ("devices.allow", "a")
    assert device_rule_line({"allow": False, "type": "b", "major": 8, "minor": -1, "access": "r"}) \
        == ("devices.deny", "b 8:* r")
    with pytest.raises(InvalidArgument):
        device_rule_line({"allow": True, "type": "x"})
    with pytest.raises(InvalidArgument):
        device_rule_line({"allow": True, "type": "c", "access": "rwx"})
    with pytest.raises(InvalidArgument, match="allow must be"):
        device_rule_line({"type": "c", "major": 1, "minor": 3})
    with pytest.raises(InvalidArgument, match="major/minor"):
        device_rule_line({"allow": True, "type": "c", "major": "1", "minor": 3})


# --- managers on a fake tree: plain directories stand in for cgroupfs, so the kernel's
# interface files are missing and create() fails part way; it must undo what it made. ---


def test_v1_create_rolls_back_on_failure(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "devices").write_text("")  # not a directory: mkdir below it fails
    text = (
        f"32 31 0:29 / {tmp_path}/cpu rw - cgroup cgroup rw,cpu\n"
        f"36 31 0:33 / {tmp_path}/devices rw - cgroup cgroup rw,devices\n"
    )
    mgr = V1Manager(detect_layout(parse_mountinfo(text), str(tmp_path)), "/minidock/abc")
    assert mgr.paths == {
        "cpu": f"{tmp_path}/cpu/minidock/abc",
        "devices": f"{tmp_path}/devices/minidock/abc",
    }
    with pytest.raises(ContainerRuntimeError) as info:
        mgr.create()
    assert str(info.value) == f"create cgroup {tmp_path}/devices/minidock: not a directory"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cpu", "devices"]
    assert not mgr.exists()


def test_v2_create_rolls_back_on_failure(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    text = f"35 22 0:30 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    mgr = V2Manager(detect_layout(parse_mountinfo(text), str(tmp_path)), "/minidock/abc")
    assert mgr.paths == {"": f"{tmp_path}/minidock/abc"}
    with pytest.raises(ContainerRuntimeError) as info:
        mgr.create()  # minidock/cgroup.controllers does not exist in a plain directory
    assert str(info.value).startswith(f"enable controllers in {tmp_path}/minidock/")
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert not (tmp_path / "minidock").exists()
