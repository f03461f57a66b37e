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
