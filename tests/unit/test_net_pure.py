"""The pure parts of minidock.net: the bridge's subnet among the host's routes, leases,
Docker's MAC rule, and the nft table's text."""

from __future__ import annotations

import ipaddress

import pytest

from minidock.errors import InvalidArgument
from minidock.net import firewall, ipam

N = ipaddress.IPv4Network


def test_the_first_default_pool_no_route_overlaps():
    assert ipam.pick_subnet([]) == (N("172.17.0.0/16"), ipaddress.IPv4Address("172.17.0.1"))
    # docker0 on 172.17, a VPN on 172.18.5.0/24: the next pool; the default route is no clash
    net, gw = ipam.pick_subnet([N("0.0.0.0/0"), N("172.17.0.0/16"), N("172.18.5.0/24")])
    assert (str(net), str(gw)) == ("172.19.0.0/16", "172.19.0.1")
    everything = [N("172.16.0.0/12"), N("192.168.0.0/16")]
    with pytest.raises(InvalidArgument, match="no free subnet"):
        ipam.pick_subnet(everything)


def test_bip_is_taken_as_given_unless_it_clashes():
    assert ipam.pick_subnet([], "10.10.0.1/24") == (N("10.10.0.0/24"),
                                                   ipaddress.IPv4Address("10.10.0.1"))
    with pytest.raises(InvalidArgument, match=r"overlaps the host's route to 10\.10\.0\.0/16"):
        ipam.pick_subnet([N("10.10.0.0/16")], "10.10.0.1/24")
    with pytest.raises(InvalidArgument, match="invalid bip"):
        ipam.pick_subnet([], "not-an-address")


def test_leases_take_the_lowest_free_address_after_the_gateway():
    net, gw = N("10.0.0.0/29"), ipaddress.IPv4Address("10.0.0.1")
    assert str(ipam.next_free(net, gw, [])) == "10.0.0.2"
    assert str(ipam.next_free(net, gw, ["10.0.0.2", "10.0.0.4"])) == "10.0.0.3"
    with pytest.raises(InvalidArgument, match=r"no free address left in 10\.0\.0\.0/29"):
        ipam.next_free(net, gw, [f"10.0.0.{i}" for i in range(2, 7)])


def test_mac_from_the_address_as_docker_derives_it():
    assert ipam.mac_of(ipaddress.IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"


def test_the_table_is_replaced_whole_and_names_only_the_bridge():
    text = firewall.ruleset("minidock0", "172.17.0.0/16")
    lines = text.splitlines()
    assert lines[:3] == ["table ip minidock", "delete table ip minidock", "table ip minidock {"]
    assert 'ip saddr 172.17.0.0/16 oifname != "minidock0" masquerade' in text
    assert 'iifname "minidock0" accept' in text
    assert text.count("hook") == 2
