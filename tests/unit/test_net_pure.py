"""The pure parts of minidock.net: the bridge's subnet among the host's routes, leases,
Docker's MAC rule, the nft table's text, and published ports: Docker's -p grammar and its
refusals, NetworkSettings.Ports, ps's PORTS column and `port`'s lines (expected values
recorded from docker 20.10 here)."""

from __future__ import annotations

import ipaddress

import pytest

from minidock.errors import InvalidArgument
from minidock.net import firewall, ipam, ports
from minidock.net.ports import Forward

N = ipaddress.IPv4Network
DEFAULT = ("minidock0", "172.17.0.0/16", False)


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
    text = firewall.ruleset([DEFAULT])
    lines = text.splitlines()
    assert lines[:3] == ["table ip minidock", "delete table ip minidock", "table ip minidock {"]
    assert 'ip saddr 172.17.0.0/16 oifname != "minidock0" masquerade' in text
    assert 'iifname "minidock0" accept' in text
    assert text.count("hook") == 4  # prerouting, output (DNAT); postrouting, forward
    assert "chain ports {\n\t}" in text  # nothing published


def test_networks_are_isolated_and_an_internal_one_reaches_nothing_off_its_bridge():
    text = firewall.ruleset([DEFAULT, ("mdbr-1", "172.18.0.0/16", False),
                             ("mdbr-2", "172.19.0.0/16", True)])
    assert 'iifname "minidock0" oifname { "mdbr-1", "mdbr-2" } drop' in text
    assert 'iifname "mdbr-1" oifname { "minidock0", "mdbr-2" } drop' in text
    assert 'iifname "mdbr-2" oifname != "mdbr-2" drop' in text
    assert 'oifname "mdbr-2" iifname != "mdbr-2" drop' in text
    assert "ip saddr 172.18.0.0/16" in text and "172.19.0.0/16" not in text  # no NAT out
    assert 'iifname "mdbr-2" accept' not in text
    # the drops come before any accept of the forward chain
    rules = text.split("chain forward")[1].split("policy accept;\n")[1]
    assert rules.index(" drop") < rules.index(" accept")


def test_published_ports_become_dnat_rules_bound_to_their_host_address():
    text = firewall.ruleset([DEFAULT], [
        Forward("tcp", "", 8080, 80, "172.17.0.2"),
        Forward("udp", "127.0.0.1", 5353, 53, "172.17.0.3")])
    assert "\t\ttcp dport 8080 dnat to 172.17.0.2:80\n" in text
    assert "\t\tip daddr 127.0.0.1 udp dport 5353 dnat to 172.17.0.3:53\n" in text
    assert "fib daddr type local jump ports" in text
    assert 'ip saddr 172.17.0.0/16 oifname "minidock0" ct status dnat masquerade' in text


def test_the_listing_nft_prints_compares_equal_to_the_table_it_was_made_from():
    made = firewall.ruleset([DEFAULT], [Forward("tcp", "", 1, 2, "x")])
    listed = made.split("delete table ip minidock\n", 1)[1].replace("\t", "  ")
    assert firewall._canonical(listed) == firewall._canonical(made)
    assert firewall._canonical(listed) != firewall._canonical(
        firewall.ruleset([DEFAULT]))


@pytest.mark.parametrize("spec, want", [
    ("8080:80", [("80/tcp", {"HostIp": "", "HostPort": "8080"})]),
    ("80", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
    (":80", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
    ("127.0.0.1::80", [("80/tcp", {"HostIp": "127.0.0.1", "HostPort": ""})]),
    ("8082:80/udp", [("80/udp", {"HostIp": "", "HostPort": "8082"})]),
    ("8097:80/TCP", [("80/tcp", {"HostIp": "", "HostPort": "8097"})]),
    ("9000-9001:90-91", [("90/tcp", {"HostIp": "", "HostPort": "9000"}),
                         ("91/tcp", {"HostIp": "", "HostPort": "9001"})]),
    ("8080-8081:80", [("80/tcp", {"HostIp": "", "HostPort": "8080-8081"})]),
])
def test_port_specs_parse_as_docker_stores_them(spec, want):
    assert ports.parse_spec(spec) == want


@pytest.mark.parametrize("spec, message", [  # docker 20.10's words for each
    ("99999:80", "Invalid hostPort: 99999"),
    ("80:99999", "Invalid containerPort: 99999"),
    ("abc", "Invalid containerPort: abc"),
    ("8080:80/sctpx", "Invalid proto: sctpx"),
    ("1.2.3:80:80", "Invalid ip address: 1.2.3"),
    ("8080:", "No port specified: 8080:<empty>"),
    ("65536", "Invalid containerPort: 65536"),
    ("8080-8079:80", "Invalid hostPort: 8080-8079"),
    ("8080:80-81", "Invalid ranges specified for container and host Ports: 80-81 and 8080"),
    ("[::1]:8095:80", "IPv6"),
])
def test_bad_port_specs_are_refused_with_dockers_message(spec, message):
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[")):
        ports.parse_spec(spec)


def test_publish_all_adds_each_exposed_port_without_its_own_binding():
    config = {"ExposedPorts": {"53/udp": {}, "80/tcp": {}, "8000/tcp": {}}}
    host = {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8087"}]},
            "PublishAllPorts": True}
    assert ports.wanted(config, host) == [("80/tcp", "", "8087"), ("53/udp", "", ""),
                                          ("8000/tcp", "", "")]
    assert ports.wanted(config, {**host, "PublishAllPorts": False}) == [("80/tcp", "", "8087")]


def test_network_settings_ports_list_exposed_ports_as_null_in_go_map_order():
    got = ports.settings_ports({"ExposedPorts": {"8000/tcp": {}, "53/udp": {}, "80/tcp": {}}},
                               [Forward("tcp", "", 8080, 80)])
    assert list(got) == ["53/udp", "80/tcp", "8000/tcp"]
    assert got["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
    assert got["53/udp"] is None


@pytest.mark.parametrize("settings, column", [  # recorded from docker 20.10's ps (IPv4 part)
    ({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}, "0.0.0.0:8080->80/tcp"),
    ({"53/udp": None, "80/tcp": None, "8000/tcp": None, "8001/tcp": None, "8002/tcp": None},
     "80/tcp, 53/udp, 8000-8002/tcp"),
    ({"7000/tcp": None, "9100/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9100"}],
      "9101/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9101"}],
      "9102/udp": [{"HostIp": "127.0.0.1", "HostPort": "9102"}]},
     "7000/tcp, 0.0.0.0:9100-9101->9100-9101/tcp, 127.0.0.1:9102->9102/udp"),
    ({"90/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9000"}],
      "91/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9001"}]},
     "0.0.0.0:9000->90/tcp, 0.0.0.0:9001->91/tcp"),
    ({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8084"},
                 {"HostIp": "0.0.0.0", "HostPort": "8083"}]},
     "0.0.0.0:8083->80/tcp, 0.0.0.0:8084->80/tcp"),
])
def test_the_ps_column_groups_and_orders_as_docker(settings, column):
    assert ports.ps_column(settings) == column


def test_port_lines_for_all_ports_one_port_and_an_unpublished_one():
    settings = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "90/tcp": None,
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}
    assert ports.port_lines(settings) == ["53/udp -> 127.0.0.1:5353",
                                          "80/tcp -> 0.0.0.0:8080"]
    assert ports.port_lines(settings, "80/tcp") == ["0.0.0.0:8080"]
    assert ports.port_lines(settings, "90/tcp") is None
    assert ports.port_lines(settings, "80/udp") is None


def test_set_elements_compare_in_any_order():
    made = firewall.ruleset([DEFAULT, ("mdbr-1", "172.18.0.0/16", False),
                             ("mdbr-2", "172.19.0.0/16", False)])
    listed = made.replace('{ "mdbr-1", "mdbr-2" }', '{ "mdbr-2", "mdbr-1" }')
    assert listed != made
    assert firewall._canonical(listed) == firewall._canonical(made)


def _query(name: str, qtype: int = 1) -> bytes:
    import struct

    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0"
            + struct.pack("!HH", qtype, 1))


def test_the_network_resolver_answers_a_member_s_name_with_one_a_record():
    import socket
    import struct

    from minidock.net import dns

    q = _query("Web.mynet")
    name, qtype, end = dns.parse_question(q)
    assert (name, qtype, end) == ("web.mynet", 1, len(q))
    reply = dns.answer(q, end, "172.18.0.3")
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert (qid, qd, an) == (0x1234, 1, 1) and flags & 0x8000 and flags & 0x0100
    assert reply[12:end] == q[12:end]  # the question, as asked
    assert reply[-4:] == socket.inet_aton("172.18.0.3")
    assert struct.unpack("!I", reply[-10:-6])[0] == 600
    empty = dns.answer(_query("web", 28), len(_query("web", 28)), None)  # AAAA: no record
    assert struct.unpack("!HH", empty[6:10]) == (0, 0) and empty[3] & 0x0F == 0
    assert dns.parse_question(b"\0" * 5) is None


def test_default_address_pools_from_the_settings_replace_dockers():
    from minidock.settings import parse_engine_config

    cfg = parse_engine_config(b'{"default-address-pools": [{"base": "10.10.0.0/16", '
                              b'"size": 24}, {"base": "10.20.0.0/22", "size": 23}]}')
    assert cfg.address_pools == (("10.10.0.0/16", 24), ("10.20.0.0/22", 23))
    pools = list(ipam.pools_of(cfg.address_pools))
    assert pools[:2] == ["10.10.0.0/24", "10.10.1.0/24"] and pools[-2:] == [
        "10.20.0.0/23", "10.20.2.0/23"]
    net, gw = ipam.pick_subnet([N("10.10.0.0/23")], pools=ipam.pools_of(cfg.address_pools))
    assert (str(net), str(gw)) == ("10.10.2.0/24", "10.10.2.1")
    assert ipam.pools_of(()) == ipam.DEFAULT_POOLS
    for bad in (b'{"default-address-pools": {"base": "10.0.0.0/8"}}',
                b'{"default-address-pools": [{"base": "10.0.0.0/8"}]}',
                b'{"default-address-pools": [{"base": "10.0.0.0/33", "size": 24}]}',
                b'{"default-address-pools": [{"base": "10.0.0.0/24", "size": 16}]}'):
        with pytest.raises(InvalidArgument, match="default-address-pools"):
            parse_engine_config(bad)


def test_the_iptables_driver_writes_the_nft_tables_rules_as_iptables_save_prints_them():
    from minidock.net import iptables

    got = iptables.rules([DEFAULT, ("mdbr-1", "172.18.0.0/16", True)],
                         [Forward("udp", "127.0.0.1", 53, 5353, "172.17.0.3"),
                          Forward("tcp", "", 8080, 80, "172.17.0.2")])
    assert got["nat"] == [  # the ports by host port, then the masquerades
        "-A MINIDOCK -d 127.0.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination "
        "172.17.0.3:5353",
        "-A MINIDOCK -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
        "-A MINIDOCK-POSTROUTING -s 172.17.0.0/16 ! -o minidock0 -j MASQUERADE",
        "-A MINIDOCK-POSTROUTING -s 127.0.0.0/8 -o minidock0 -j MASQUERADE",
        "-A MINIDOCK-POSTROUTING -s 172.17.0.0/16 -o minidock0 -m conntrack --ctstate DNAT "
        "-j MASQUERADE"]
    assert got["filter"] == [
        "-A MINIDOCK-FORWARD -i minidock0 -o mdbr-1 -j DROP",
        "-A MINIDOCK-FORWARD -i mdbr-1 -o minidock0 -j DROP",
        "-A MINIDOCK-FORWARD -i mdbr-1 ! -o mdbr-1 -j DROP",  # --internal: nothing off it
        "-A MINIDOCK-FORWARD ! -i mdbr-1 -o mdbr-1 -j DROP",
        "-A MINIDOCK-FORWARD -i minidock0 -j ACCEPT",
        "-A MINIDOCK-FORWARD -o minidock0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A MINIDOCK-FORWARD -o minidock0 -m conntrack --ctstate DNAT -j ACCEPT"]


def test_what_iptables_save_shows_is_told_apart_from_everyone_elses_rules():
    from minidock.net import iptables

    want = iptables.rules([DEFAULT])
    save = ("*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n:MINIDOCK-FORWARD - [0:0]\n"
            "-A FORWARD -j MINIDOCK-FORWARD\n-A FORWARD -j DOCKER-USER\n"
            + "".join(line + "\n" for line in want["filter"]) +
            "-A DOCKER-USER -j RETURN\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n"
            ":MINIDOCK - [0:0]\n:MINIDOCK-POSTROUTING - [0:0]\n"
            + "".join(line + "\n" for line in [*iptables.JUMPS["nat"], *want["nat"]]) +
            "-A POSTROUTING -s 172.30.0.0/16 -j MASQUERADE\nCOMMIT\n")
    saved = iptables.Saved(save)
    assert saved.holds(want) and not saved.empty()
    assert saved.jumps["filter"] == ["-A FORWARD -j MINIDOCK-FORWARD"]
    assert not iptables.Saved(save.replace("-A FORWARD -j MINIDOCK-FORWARD\n", "")).holds(want)
    assert not saved.holds(iptables.rules([DEFAULT], [Forward("tcp", "", 1, 2, "x")]))
    assert iptables.Saved("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n").empty()


def test_the_firewall_driver_setting_is_nftables_or_iptables():
    from minidock.settings import parse_engine_config

    assert parse_engine_config(b'{"firewall-driver": "iptables"}').firewall_driver == "iptables"
    assert parse_engine_config(b"{}").firewall_driver == ""
    with pytest.raises(InvalidArgument, match='firewall-driver must be "nftables" or '
                                              "\"iptables\", not 'firewalld'"):
        parse_engine_config(b'{"firewall-driver": "firewalld"}')
