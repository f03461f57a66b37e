"""User-defined networks on the real kernel: `network create/ls/inspect/rm/prune` with Docker's
output and refusals (recorded from docker 20.10 here), containers reaching each other by
name and alias (getent and wget read the /etc/hosts minidock keeps current), a container
started later reachable from one started earlier, --ip, isolation between networks and an
--internal one, and every bridge, rule and name gone with its network."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import helpers
import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.network]


IP_OF = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"  # (one network each)


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def table() -> str:
    return subprocess.run(["nft", "list", "table", "ip", "minidock"], capture_output=True,
                          text=True).stdout


@pytest.fixture
def networks(md):
    """network create helper; every network it made is removed at the end (containers
    first: the test's own run -d ones are removed by the test)."""
    made: list[str] = []

    def create(name: str, *flags: str) -> dict:
        r = md.run("network", "create", *flags, name, check=True)
        assert re.fullmatch(r"[0-9a-f]{64}\n", r.stdout), r.stdout
        made.append(name)
        return json.loads(md.run("network", "inspect", name, check=True).stdout)[0]

    yield create
    for name in made:
        md.run("network", "rm", name)


def test_create_ls_inspect_rm_as_docker(md, images, networks):
    net = networks("mdt-one")
    assert net["Name"] == "mdt-one" and net["Driver"] == "bridge" and not net["Internal"]
    subnet = net["IPAM"]["Config"][0]["Subnet"]
    assert subnet.startswith("172.") and not subnet.startswith("172.17.")  # 172.17: the default
    assert net["IPAM"]["Config"][0]["Gateway"].endswith(".0.1")
    bridge = f"mdbr-{net['Id'][:10]}"
    assert f" {bridge}:" in links() and f'"{bridge}"' in table()
    ls = md.run("network", "ls", check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", ls[0]) == ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    assert [re.split(r"\s+", line)[1] for line in ls[1:]] == ["bridge", "host", "mdt-one",
                                                              "none"]
    assert f"{net['Id'][:12]}   mdt-one   bridge    local" in ls
    r = md.run("network", "create", "mdt-one")
    assert (r.returncode, r.stderr.strip()) == (
        1, "Error response from daemon: network with name mdt-one already exists")
    r = md.run("network", "create", "--subnet", subnet, "mdt-overlap")
    assert (r.returncode, r.stderr.strip()) == (
        1, "Error response from daemon: Pool overlaps with other one on this address space")
    r = md.run("network", "create", "--subnet", "10.2.0.0/24", "--gateway", "10.3.0.1", "mdt-gw")
    assert (r.returncode, r.stderr.strip()) == (1, "no matching subnet for gateway 10.3.0.1")
    r = md.run("network", "create", "--subnet", "foo", "mdt-bad")
    assert (r.returncode, r.stderr.strip()) == (
        1, "Error response from daemon: Invalid subnet foo : invalid CIDR address: foo")
    named = networks("mdt-named", "-o", "com.docker.network.bridge.name=mdtbr0", "--label",
                     "course=net")
    assert " mdtbr0:" in links() and named["Labels"] == {"course": "net"}
    assert named["Options"] == {"com.docker.network.bridge.name": "mdtbr0"}
    r = md.run("network", "inspect", "mdt-nosuch")
    assert (r.returncode, r.stdout.strip(), r.stderr.strip()) == (
        1, "[]", "Error: No such network: mdt-nosuch")
    r = md.run("network", "rm", "bridge")
    assert (r.returncode, r.stderr.strip()) == (
        1, "Error response from daemon: bridge is a pre-defined network and cannot be removed")
    assert md.run("network", "rm", "mdt-one", check=True).stdout == "mdt-one\n"
    assert f" {bridge}:" not in links() and bridge not in table()
    assert not [f for f in os.listdir("/run/minidock-network") if f.startswith(bridge)]
    r = md.run("network", "rm", "mdt-one")
    assert (r.returncode, r.stderr.strip()) == (1, "Error: No such network: mdt-one")


def test_containers_reach_each_other_by_name_and_alias(md, images, networks):
    net = networks("mdt-names", "--subnet", "10.77.0.0/24")
    ids = []
    try:
        first = md.run("run", "-d", "--name", "mdt-first", "--network", "mdt-names",
                       "debian:bookworm", "sleep", "300", check=True).stdout.strip()
        ids.append(first)
        # started later, reachable from the one started earlier (whose hosts file is kept)
        second = md.run("run", "-d", "--name", "mdt-second", "--network", "mdt-names",
                        "--network-alias", "web", "--ip", "10.77.0.50", "busybox", "sh", "-c",
                        "mkdir /www && echo served > /www/index.html && "
                        "exec httpd -f -p 80 -h /www", check=True).stdout.strip()
        ids.append(second)
        r = md.run("exec", first, "getent", "hosts", "mdt-second", check=True)
        assert r.stdout.split()[0] == "10.77.0.50"
        for name in ("web", second[:12], "mdt-second.mdt-names"):
            assert md.run("exec", first, "getent", "hosts", name,
                          check=True).stdout.split()[0] == "10.77.0.50"
        r = md.run("exec", second, "wget", "-qO-", "http://web/")
        assert r.stdout.strip() == "served", r.stderr
        # what asks a name server (not /etc/hosts) asks the network's resolver, on the gateway
        resolv = md.run("exec", second, "cat", "/etc/resolv.conf", check=True).stdout
        assert f"nameserver {net['IPAM']['Config'][0]['Gateway']}" in resolv.splitlines()

        def nslookup(name: str) -> str:
            return md.run("exec", second, "nslookup", name).stdout

        assert helpers.wait_for(lambda: "10.77.0.50" in nslookup("web"), 10)
        assert "Address: 10.77.0.50" in nslookup("mdt-second")
        # a rename reaches every member's hosts file and the resolver
        md.run("rename", "mdt-first", "mdt-renamed", check=True)
        first_ip = md.run("inspect", "-f", IP_OF, first,
                          check=True).stdout.strip()
        hosts_of_second = Path(md.root, "containers", second, "hosts").read_text()
        assert f"{first_ip}\tmdt-renamed " in hosts_of_second
        assert "mdt-first" not in hosts_of_second
        assert f"Address: {first_ip}" in nslookup("mdt-renamed")
        assert md.run("exec", second, "ping", "-c", "1", "-W", "5", "mdt-renamed").returncode == 0
        settings = json.loads(md.run("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                     second, check=True).stdout)
        assert list(settings) == ["mdt-names"]
        assert settings["mdt-names"]["Aliases"] == ["web", second[:12]]
        assert settings["mdt-names"]["IPAMConfig"] == {"IPv4Address": "10.77.0.50"}
        assert settings["mdt-names"]["IPAddress"] == "10.77.0.50"
        assert settings["mdt-names"]["NetworkID"] == net["Id"]
        top = json.loads(md.run("inspect", "-f", "{{json .NetworkSettings}}", second,
                                check=True).stdout)
        assert (top["IPAddress"], top["Gateway"], top["MacAddress"]) == ("", "", "")
        members = json.loads(md.run("network", "inspect", "mdt-names",
                                    check=True).stdout)[0]["Containers"]
        assert {m["Name"] for m in members.values()} == {"mdt-renamed", "mdt-second"}
        assert members[second]["IPv4Address"] == "10.77.0.50/24"
        assert md.run("ps", "--filter", f"id={second}", "--format", "{{.Networks}}",
                      check=True).stdout.strip() == "mdt-names"
        r = md.run("network", "rm", "mdt-names")
        assert r.returncode == 1 and r.stderr.strip() == (
            "Error response from daemon: error while removing network: network mdt-names id "
            f"{net['Id']} has active endpoints")
        md.run("rm", "-f", second, check=True)
        ids.remove(second)
        assert md.run("exec", first, "getent", "hosts", "mdt-second").returncode == 2
        hosts = Path(md.root, "containers", first, "hosts").read_text()
        assert "10.77.0.50" not in hosts
    finally:
        for cid in ids:
            md.run("rm", "-f", cid)
    # the resolver goes with the network's last member
    assert helpers.wait_for(lambda: not _resolver_running(net["Id"]), 15)


def _resolver_running(network_id: str) -> bool:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"minidock.net.dns" in cmd and f"mdbr-{network_id[:10]}".encode() in cmd:
                return True
    return False


def test_networks_are_isolated_and_internal_ones_stay_inside(md, images, networks):
    networks("mdt-a")
    networks("mdt-b")
    networks("mdt-in", "--internal")
    ids = {}
    try:
        for key, net in (("a", "mdt-a"), ("a2", "mdt-a"), ("b", "mdt-b"), ("default", "bridge"),
                         ("in", "mdt-in"), ("in2", "mdt-in")):
            ids[key] = md.run("run", "-d", "--network", net, "busybox", "sleep", "300",
                              check=True).stdout.strip()
        ip = {k: md.run("inspect", "-f", IP_OF, c,
                        check=True).stdout.strip() for k, c in ids.items()}

        def reaches(who: str, whom: str) -> bool:
            return md.run("exec", ids[who], "ping", "-c", "1", "-W", "1",
                          ip[whom]).returncode == 0

        assert reaches("a", "a2") and reaches("in", "in2")
        assert not reaches("a", "b") and not reaches("b", "a")
        assert not reaches("default", "a") and not reaches("a", "default")
        assert not reaches("in", "a") and not reaches("a", "in")
        assert not reaches("in", "default")
    finally:
        for c in ids.values():
            md.run("rm", "-f", c)


def test_ip_and_alias_rules_and_an_unknown_network(md, images, networks):
    networks("mdt-ip", "--subnet", "10.78.0.0/24")
    r = md.run("run", "--rm", "--network", "mdt-ip", "--ip", "10.78.0.9", "busybox", "ip",
               "-4", "-o", "addr", "show", "eth0", check=True)
    assert "inet 10.78.0.9/24" in r.stdout
    for flags, message in (
            (["--network", "mdt-ip", "--ip", "10.99.0.9"],
             "Error: Invalid address 10.99.0.9: It does not belong to any of this network's "
             "subnets."),
            (["--network", "mdt-ip", "--ip", "10.78.0.1"], "Error: Address already in use"),
            (["--network", "bridge", "--ip", "172.17.0.9"],
             "Error: user specified IP address is supported on user defined networks only"),
            (["--network", "bridge", "--network-alias", "x"],
             "Error: network-scoped aliases are only supported for user-defined networks"),
            (["--network", "mdt-nosuch"], "Error: network mdt-nosuch not found")):
        r = md.run("run", "--rm", *flags, "busybox", "true")
        assert (r.returncode, r.stderr.strip()) == (125, message), flags
    assert md.run("ps", "-aq").stdout.strip() == ""


def test_prune_removes_the_networks_no_running_container_is_on(md, images, networks):
    networks("mdt-used")
    networks("mdt-unused")
    c = md.run("run", "-d", "--network", "mdt-used", "busybox", "sleep", "300",
               check=True).stdout.strip()
    try:
        r = md.run("network", "prune", "-f", check=True)
        assert r.stdout == "Deleted Networks:\nmdt-unused\n\n"
        names = md.run("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
        assert "mdt-used" in names and "mdt-unused" not in names
    finally:
        md.run("rm", "-f", c)


def test_network_container_mode_joins_the_other_s_netns(md, images):
    a = md.run("run", "-d", "--name", "mdt-host-of-net", "busybox", "sleep", "300",
               check=True).stdout.strip()
    stopped = md.run("create", "--name", "mdt-stopped", "busybox", "true",
                     check=True).stdout.strip()
    try:
        ip = md.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", a,
                    check=True).stdout.strip()
        r = md.run("run", "--rm", "--network", "container:mdt-host-of-net", "busybox", "sh",
                   "-c", "ip -4 -o addr show eth0; cat /etc/hostname; readlink /proc/self/ns/net",
                   check=True)
        lines = r.stdout.splitlines()
        assert f"inet {ip}/" in lines[0] and lines[1] == a[:12]
        assert lines[2] == os.readlink(f"/proc/{_pid(md, a)}/ns/net")
        c = md.run("create", "--network", f"container:{a[:12]}", "busybox", "true",
                   check=True).stdout.strip()
        doc = json.loads(md.run("inspect", c, check=True).stdout)[0]
        assert doc["HostConfig"]["NetworkMode"] == f"container:{a[:12]}"
        assert doc["NetworkSettings"]["Networks"] == {}
        md.run("rm", c, check=True)
        for flags, message in (
                (["-p", "80:80"], "conflicting options: port publishing and the container type "
                                  "network mode"),
                (["--hostname", "h"], "conflicting options: hostname and the network mode"),
                (["--dns", "1.1.1.1"], "conflicting options: dns and the network mode")):
            r = md.run("run", "--rm", "--network", "container:mdt-host-of-net", *flags,
                       "busybox", "true")
            assert (r.returncode, r.stderr.strip()) == (125, f"Error: {message}"), flags
        r = md.run("run", "--rm", "--network", "container:mdt-nosuch", "busybox", "true")
        assert (r.returncode, r.stderr.strip()) == (125, "Error: No such container: mdt-nosuch")
        r = md.run("run", "--rm", "--network", "container:mdt-stopped", "busybox", "true")
        assert r.returncode == 125
        assert r.stderr.strip() == ("Error: cannot join network of a non running container: "
                                    f"{stopped}")
    finally:
        md.run("rm", "-f", a, stopped)
    assert md.run("ps", "-aq").stdout.strip() == ""


def _pid(md, cid: str) -> int:
    return int(md.run("inspect", "-f", "{{.State.Pid}}", cid, check=True).stdout)


def test_add_host_and_dns_flags(md, images):
    r = md.run("run", "--rm", "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway",
               "--dns", "9.9.9.9", "--dns-search", "example.org", "--dns-option", "ndots:2",
               "busybox", "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
               check=True)
    hosts, resolv = r.stdout.split("---\n")
    gateway = json.loads(Path("/run/minidock-network/bridge.json").read_text())["gateway"]
    lines = hosts.splitlines()
    assert lines[-3:-1] == ["10.1.2.3\tdb", f"{gateway}\tgw"]  # then the container's own
    assert resolv.splitlines() == ["nameserver 9.9.9.9", "search example.org",
                                   "options ndots:2"]
    c = md.run("create", "--add-host", "db:10.1.2.3", "--dns", "9.9.9.9", "busybox",
               check=True).stdout.strip()
    try:
        hc = json.loads(md.run("inspect", "-f", "{{json .HostConfig}}", c, check=True).stdout)
        assert (hc["ExtraHosts"], hc["Dns"], hc["DnsSearch"]) == (["db:10.1.2.3"],
                                                                   ["9.9.9.9"], [])
    finally:
        md.run("rm", c)
    r = md.run("run", "--rm", "--add-host", "nocolon", "busybox", "true")
    assert (r.returncode, r.stderr.strip()) == (
        125, 'Error: invalid argument "nocolon" for "--add-host" flag: bad format for '
        'add-host: "nocolon"')
    r = md.run("run", "--rm", "--dns", "not-an-ip", "busybox", "true")
    assert (r.returncode, r.stderr.strip()) == (
        125, 'Error: invalid argument "not-an-ip" for "--dns" flag: not-an-ip is not an ip '
        "address")


def test_connect_and_disconnect_a_running_and_a_stopped_container(md, images, networks):
    networks("mdt-home")
    networks("mdt-more")
    ids = []
    try:
        c = md.run("run", "-d", "--name", "mdt-multi", "--network", "mdt-home", "busybox",
                   "sleep", "300", check=True).stdout.strip()
        d = md.run("run", "-d", "--name", "mdt-peer", "--network", "mdt-more", "busybox",
                   "sleep", "300", check=True).stdout.strip()
        ids += [c, d]
        assert md.run("exec", d, "ping", "-c", "1", "-W", "1", "mdt-multi").returncode != 0
        r = md.run("network", "connect", "--alias", "second-name", "mdt-more", "mdt-multi",
                   check=True)
        assert r.stdout == ""
        inside = md.run("exec", c, "ip", "-4", "-o", "addr", check=True).stdout
        assert " eth0 " in inside and " eth1 " in inside
        for name in ("mdt-multi", "second-name"):
            assert md.run("exec", d, "ping", "-c", "1", "-W", "5", name).returncode == 0
        nets = json.loads(md.run("inspect", "-f", "{{json .NetworkSettings.Networks}}", c,
                                 check=True).stdout)
        assert sorted(nets) == ["mdt-home", "mdt-more"]
        assert nets["mdt-more"]["Aliases"] == ["second-name", c[:12]]
        assert nets["mdt-more"]["IPAddress"] in inside
        r = md.run("network", "connect", "mdt-more", "mdt-multi")
        assert (r.returncode, r.stderr.strip()) == (
            1, "Error response from daemon: endpoint with name mdt-multi already exists in "
            "network mdt-more")
        md.run("network", "disconnect", "mdt-more", "mdt-multi", check=True)
        assert " eth1 " not in md.run("exec", c, "ip", "-4", "-o", "addr", check=True).stdout
        assert md.run("exec", d, "ping", "-c", "1", "-W", "1", "second-name").returncode != 0
        assert "second-name" not in Path(md.root, "containers", c, "hosts").read_text()
        r = md.run("network", "disconnect", "mdt-more", "mdt-multi")
        assert (r.returncode, r.stderr.strip()) == (
            1, f"Error response from daemon: container {c} is not connected to network "
            "mdt-more")
        # a stopped container joins the network when it starts
        e = md.run("create", "--name", "mdt-later", "--network", "mdt-home", "busybox",
                   "sleep", "300", check=True).stdout.strip()
        ids.append(e)
        md.run("network", "connect", "mdt-more", "mdt-later", check=True)
        md.run("start", e, check=True)
        assert " eth1 " in md.run("exec", e, "ip", "-4", "-o", "addr", check=True).stdout
        assert md.run("exec", d, "ping", "-c", "1", "-W", "5", "mdt-later").returncode == 0
    finally:
        for cid in ids:
            md.run("rm", "-f", cid)


def test_default_address_pools_are_where_subnets_come_from(md, images, tmp_path):
    (tmp_path / "config.json").write_text(
        '{"default-address-pools": [{"base": "10.123.0.0/16", "size": 24}]}')
    env = {"MINIDOCK_CONFIG_DIR": str(tmp_path)}
    try:
        md.run("network", "create", "mdt-pooled", env=env, check=True)
        subnet = json.loads(md.run("network", "inspect", "mdt-pooled",
                                   check=True).stdout)[0]["IPAM"]["Config"][0]["Subnet"]
        assert subnet.startswith("10.123.") and subnet.endswith("/24")
    finally:
        md.run("network", "rm", "mdt-pooled")
