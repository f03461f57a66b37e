"""The default bridge on the real kernel: a veth as eth0 with a lease of the bridge's subnet,
NAT out through minidock's own nft table, container to container and to the host, published
ports (-p, -P, `port`, ps's PORTS) reached from the host at 127.0.0.1 and at its own address
and from containers (hairpin), Docker's refusals for ports someone holds, the lease, the
rules and the veth gone with the run, and `system check` for what a killed run left. The
bridge and the table are host-wide: conftest removes them at the end of the session."""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import helpers
import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.network]


def leases(md) -> dict[str, str]:
    """The bridge's leases (the host's: one bridge whatever the root)."""
    path = Path("/run/minidock-network/bridge.json")
    return json.loads(path.read_text()).get("leases", {}) if path.exists() else {}


def md_links() -> list[str]:
    """The containers' veths still on the host, once the kernel has torn down the network
    namespaces of the containers that ended (it does so a moment after their end)."""
    def now() -> list[str]:
        return sorted(n for n in os.listdir("/sys/class/net")
                      if n.startswith("md") and n != "minidock0")

    helpers.wait_for(lambda: not now(), 10)
    return now()


def host_address() -> str:
    """An IPv4 address of the host that is not loopback (where outside clients would come)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.split("\n"):
        fields = line.split()
        if len(fields) > 3 and fields[1] != "minidock0":
            return fields[3].split("/")[0]
    pytest.skip("the host has no global IPv4 address")


def published_ports() -> str:
    return subprocess.run(["nft", "list", "chain", "ip", "minidock", "ports"],
                          capture_output=True, text=True).stdout


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


SERVE = ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && "
         "exec httpd -f -p 80 -h /www"]


def test_a_container_on_the_bridge_gets_eth0_a_route_and_its_hosts_line(md, images):
    r = md.run("run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
               "ip -o -4 addr show eth0; ip route; ip link show eth0; tail -1 /etc/hosts; "
               "hostname", check=True)
    lines = r.stdout.splitlines()
    addr = ipaddress.IPv4Interface(lines[0].split()[3])
    bridge = json.loads(Path("/run/minidock-network/bridge.json").read_text())
    assert addr.network == ipaddress.IPv4Network(bridge["subnet"])
    assert f"default via {bridge['gateway']} dev eth0" in r.stdout
    mac = "02:42:" + ":".join(f"{b:02x}" for b in addr.ip.packed)
    assert f"link/ether {mac}" in r.stdout  # Docker's MAC from the IP
    assert lines[-2] == f"{addr.ip}\t{lines[-1]}"  # /etc/hosts names the container's address
    assert leases(md) == {} and not md_links()  # gone with the run


def test_containers_reach_each_other_and_the_host(md, images):
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ids = []
    try:
        for _ in range(2):
            ids.append(md.run("run", "-d", "--network", "bridge", "busybox", "sleep", "100",
                              check=True).stdout.strip())
        ips = [md.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", c,
                      check=True).stdout.strip() for c in ids]
        assert len(set(ips)) == 2 and set(leases(md).values()) == set(ips)
        gateway = md.run("inspect", "-f", "{{.NetworkSettings.Gateway}}", ids[0],
                         check=True).stdout.strip()
        r = md.run("exec", ids[0], "ping", "-c", "1", "-W", "5", ips[1])
        assert r.returncode == 0, r.stdout + r.stderr
        port = server.server_address[1]
        r = md.run("exec", ids[1], "wget", "-qO-", f"http://{gateway}:{port}/")
        assert r.returncode == 0 and "<html" in r.stdout.lower(), r.stderr
        assert subprocess.run(["busybox", "ping", "-c", "1", "-W", "5", ips[0]],
                              capture_output=True).returncode == 0  # the host reaches it
    finally:
        for c in ids:
            md.run("rm", "-f", c)
        server.shutdown()
        server.server_close()
        thread.join()
    assert leases(md) == {} and not md_links()
    # the inspect of a stopped container shows no address
    c = md.run("create", "--network", "bridge", "busybox", "true", check=True).stdout.strip()
    md.run("start", "-a", c, check=True)
    assert md.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", c,
                  check=True).stdout.strip() == ""
    md.run("rm", c, check=True)


def test_the_firewall_table_is_one_whatever_the_number_of_runs(md, images):
    md.run("run", "--rm", "busybox", "true", check=True)
    first = subprocess.run(["nft", "list", "table", "ip", "minidock"], capture_output=True,
                           text=True).stdout
    port = free_port()
    for i in range(100):  # with a published port: its rule comes and goes each time
        md.run("run", "--rm", *(["-p", f"{port}:80"] if i % 2 else []), "busybox", "true",
               check=True)
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True,
                             text=True).stdout
    assert ruleset.count("table ip minidock") == 1
    table = subprocess.run(["nft", "list", "table", "ip", "minidock"], capture_output=True,
                           text=True).stdout
    assert table == first and table.count("masquerade") == 3 and "dnat to" not in table
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == "1"
    assert leases(md) == {} and not md_links()


def test_run_on_none_never_loads_pyroute2(md, images):
    r = md.run("run", "--rm", "--network", "none", "busybox", "true",
               env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert r.returncode == 0
    assert "pyroute2" not in r.stderr and "minidock.net" not in r.stderr


@pytest.mark.skipif(os.environ.get("MINIDOCK_NO_MIRROR") == "1",
                    reason="MINIDOCK_NO_MIRROR=1: Debian's mirror is not reachable here")
def test_apt_get_update_works_through_the_bridge_s_nat(md, images):
    r = md.run("run", "--rm", "--network", "bridge", "debian:bookworm", "apt-get", "update",
               timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Reading package lists" in r.stdout


def test_system_check_mends_what_a_killed_run_left_on_the_bridge(md, images):
    """A CLI killed -9 while its container runs: recording the exit gives back the lease and
    the published port and removes the /run/netns entry (which held the netns, so the veth).
    What a run killed between its network steps and its record would leave (a lease, a netns
    entry, a veth of a container that does not run) is found and removed too; a lease of a
    container this root does not know is reported and left alone."""
    port = free_port()
    p = subprocess.Popen(md.argv("run", "-p", f"{port}:80", "busybox", "sleep", "1000"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert helpers.wait_for(lambda: md.run("ps", "-q").stdout.strip() != "", 20)
        cid = md.run("ps", "-q", "--no-trunc").stdout.strip()
        entry = f"/run/netns/md-{cid[:12]}"
        assert helpers.wait_for(lambda: os.path.exists(entry), 10)
    finally:
        p.kill()
        p.wait()
    assert cid in leases(md) and "dnat to" in published_ports()
    assert f"md{cid[:10]}" in os.listdir("/sys/class/net")  # held by the netns entry
    r = md.run("system", "check")
    assert r.returncode == 1 and "CONTAINER" in r.stdout
    assert md.run("system", "check", "--repair").returncode == 0
    assert not os.path.exists(entry) and not md_links()
    assert cid not in leases(md) and "dnat to" not in published_ports()
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))

    from minidock.net import ipam, netns

    stranger = "cd" * 32
    with ipam.Leases() as held:  # as a run killed after its lease, before its record
        subnet, gateway = held.subnet([], None)
        held.lease(cid, subnet, gateway)
        held.lease(stranger, subnet, gateway)
        held.save()
    holder = subprocess.Popen(["unshare", "--net", "sleep", "100"])
    try:
        assert helpers.wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/net")
                                != os.readlink("/proc/self/ns/net"), 10)
        netns.publish(cid, holder.pid)
        subprocess.run(["ip", "link", "add", f"md{cid[:10]}", "type", "veth", "peer", "name",
                        f"mdp{cid[:9]}"], check=True)
        r = md.run("system", "check")
        assert r.returncode == 1
        for kind in ("LEASE", "NETNS", "LINK"):
            assert any(line.startswith(kind) and cid[:10] in line
                       for line in r.stdout.splitlines()), (kind, r.stdout)
        assert f"{stranger[:12]}, which does not run (not a container of this root" in r.stdout
        md.run("system", "check", "--repair")
        assert not os.path.exists(entry) and not md_links()
        assert list(leases(md)) == [stranger]
        r = md.run("system", "check")
        assert r.returncode == 1 and stranger[:12] in r.stdout and cid[:10] not in r.stdout
    finally:
        holder.kill()
        holder.wait()
        netns.unpublish(cid)
        subprocess.run(["ip", "link", "del", f"md{cid[:10]}"], capture_output=True)
        with ipam.Leases() as held:
            held.release(stranger)
            held.release(cid)
            held.save()
        md.run("rm", "-f", cid)
    assert md.run("system", "check").returncode == 0


def test_a_firewall_reload_is_seen_and_repaired_and_the_next_run_restores_it(md, images):
    port = free_port()
    c = md.run("run", "-d", "-p", f"{port}:80", "busybox", *SERVE, check=True).stdout.strip()
    try:
        assert helpers.wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), 10)
        # what `nft flush ruleset` or a firewalld reload does to minidock, without touching
        # anyone else's rules on this host
        subprocess.run(["nft", "delete", "table", "ip", "minidock"], check=True)
        assert not _answers(f"http://{host_address()}:{port}/")
        r = md.run("system", "check")
        assert r.returncode == 1 and "FIREWALL" in r.stdout, r.stdout
        assert md.run("system", "check", "--repair").returncode == 0
        assert _answers(f"http://{host_address()}:{port}/")
        assert md.run("system", "check").returncode == 0
        subprocess.run(["nft", "delete", "table", "ip", "minidock"], check=True)
        md.run("run", "--rm", "busybox", "true", check=True)  # the next run puts it back
        assert _answers(f"http://{host_address()}:{port}/")
    finally:
        md.run("rm", "-f", c)


def test_a_running_container_s_netns_is_in_ip_netns(md, images):
    c = md.run("run", "-d", "busybox", "sleep", "100", check=True).stdout.strip()
    try:
        name = f"md-{c[:12]}"
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout
        ip = md.run("inspect", "-f", "{{.NetworkSettings.IPAddress}} "
                    "{{.NetworkSettings.SandboxKey}}", c, check=True).stdout.split()
        assert ip[1] == f"/run/netns/{name}"
        inside = subprocess.run(["ip", "netns", "exec", name, "ip", "-4", "-o", "addr", "show",
                                 "eth0"], capture_output=True, text=True, check=True).stdout
        assert f"inet {ip[0]}/" in inside
    finally:
        md.run("rm", "-f", c)
    assert not os.path.exists(f"/run/netns/md-{c[:12]}")


def test_the_default_network_is_the_bridge_as_dockers(md, images):
    c = md.run("create", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
               check=True).stdout.strip()
    try:
        assert md.run("inspect", "-f", "{{.HostConfig.NetworkMode}} {{range $k, $v := "
                      ".NetworkSettings.Networks}}{{$k}}{{end}}", c,
                      check=True).stdout.split() == ["default", "bridge"]
        r = md.run("start", "-a", c, check=True)
        assert "inet 172." in r.stdout or "inet 192.168." in r.stdout, r.stdout
        again = md.run("start", "-a", c, check=True)  # the lease went back: the same address
        assert again.stdout.split()[3] == r.stdout.split()[3]
    finally:
        md.run("rm", c)
    assert leases(md) == {} and not md_links()


def test_a_published_port_is_reached_from_the_host_and_from_containers(md, images):
    port = free_port()
    server = md.run("run", "-d", "-p", f"{port}:80", "-p", "127.0.0.1::80", "--expose", "90",
                    "busybox", *SERVE, check=True).stdout.strip()
    client = md.run("run", "-d", "busybox", "sleep", "100", check=True).stdout.strip()
    try:
        lines = md.run("port", server, check=True).stdout.splitlines()
        assert lines[0] == f"80/tcp -> 0.0.0.0:{port}"
        assert lines[1].startswith("80/tcp -> 127.0.0.1:")
        random_port = int(lines[1].rsplit(":", 1)[1])
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range")
                     .read_text().split())
        assert low <= random_port <= high
        ps = md.run("ps", "--filter", f"id={server}", "--format", "{{.Ports}}",
                    check=True).stdout.strip()
        assert ps == (f"90/tcp, 0.0.0.0:{port}->80/tcp, 127.0.0.1:{random_port}->80/tcp")
        settings = json.loads(md.run("inspect", "-f", "{{json .NetworkSettings.Ports}}",
                                     server, check=True).stdout)
        assert settings == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                                       {"HostIp": "127.0.0.1", "HostPort": str(random_port)}],
                            "90/tcp": None}
        hello = f"hello from {server[:12]}"
        helpers.wait_for(lambda: published_ports().count("dnat to") == 2, 5)
        assert helpers.wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), 10)
        assert fetch(f"http://127.0.0.1:{port}/").strip() == hello
        assert fetch(f"http://{host_address()}:{port}/").strip() == hello
        assert fetch(f"http://127.0.0.1:{random_port}/").strip() == hello
        with pytest.raises(OSError):  # published on 127.0.0.1 only
            fetch(f"http://{host_address()}:{random_port}/")
        gateway = md.run("inspect", "-f", "{{.NetworkSettings.Gateway}}", client,
                         check=True).stdout.strip()
        for who in (client, server):  # another container, and the server itself (hairpin)
            for where in (host_address(), gateway):
                r = md.run("exec", who, "wget", "-qO-", f"http://{where}:{port}/", timeout=30)
                assert r.returncode == 0 and r.stdout.strip() == hello, (who, where, r.stderr)
    finally:
        md.run("rm", "-f", server, client)
    assert "dnat to" not in published_ports()
    with socket.socket() as s:  # the host port is free again
        s.bind(("0.0.0.0", port))
    assert leases(md) == {} and not md_links()


def _answers(url: str) -> bool:
    try:
        fetch(url)
        return True
    except OSError:
        return False


def test_a_port_someone_holds_is_refused_as_docker_does(md, images):
    port = free_port()
    holder = md.run("run", "-d", "-p", f"{port}:80", "busybox", "sleep", "100",
                    check=True).stdout.strip()
    try:
        r = md.run("run", "--name", "md-port-taken", "-p", f"{port}:80", "busybox", "true")
        assert r.returncode == 125
        assert r.stderr.strip().startswith(
            "Error: driver failed programming external connectivity on endpoint md-port-taken (")
        assert r.stderr.strip().endswith(f"Bind for 0.0.0.0:{port} failed: port is already "
                                         "allocated"), r.stderr
        state = md.run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} "
                       "{{.State.Error}}", "md-port-taken", check=True).stdout
        assert state.startswith("created 128 driver failed programming")
        md.run("rm", "md-port-taken", check=True)
        r = md.run("run", "--rm", "-p", f"{port}:80", "busybox", "true")
        assert r.returncode == 125 and "port is already allocated" in r.stderr
        assert md.run("ps", "-aq", "--filter", "status=created").stdout.strip() == ""
    finally:
        md.run("rm", "-f", holder)
    with socket.socket() as s:  # a process of the host holds it
        s.bind(("0.0.0.0", port))
        s.listen()
        r = md.run("run", "--rm", "-p", f"{port}:80", "busybox", "true")
        assert r.returncode == 125
        assert r.stderr.strip().endswith(
            f"listen tcp4 0.0.0.0:{port}: bind: address already in use"), r.stderr
    assert leases(md) == {} and not md_links() and "dnat to" not in published_ports()


def test_publish_all_gives_each_exposed_port_a_host_port(md, images):
    c = md.run("run", "-d", "-P", "--expose", "80", "--expose", "7000-7001/udp", "busybox",
               *SERVE, check=True).stdout.strip()
    try:
        lines = md.run("port", c, check=True).stdout.splitlines()
        assert [line.split(" -> ")[0] for line in lines] == ["80/tcp", "7000/udp", "7001/udp"]
        port = int(lines[0].rsplit(":", 1)[1])
        assert helpers.wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), 10)
        r = md.run("port", c, "81")
        assert r.returncode == 1
        assert r.stderr.strip() == f"Error: No public port '81/tcp' published for {c}"
        assert md.run("inspect", "-f", "{{json .HostConfig.PortBindings}} "
                      "{{.HostConfig.PublishAllPorts}}", c, check=True).stdout.strip() \
            == "{} true"
    finally:
        md.run("rm", "-f", c)
    stopped = md.run("create", "-p", "80", "busybox", check=True).stdout.strip()
    try:  # a container that does not run shows no ports (Docker's too)
        assert md.run("port", stopped, check=True).stdout == ""
        assert md.run("ps", "-a", "--filter", f"id={stopped}", "--format", "[{{.Ports}}]",
                      check=True).stdout.strip() == "[]"
    finally:
        md.run("rm", stopped)


@pytest.mark.parametrize("spec, message", [
    ("99999:80", "Error: Invalid hostPort: 99999"),
    ("80:99999", "Error: Invalid containerPort: 99999"),
    ("8080:80/sctpx", "Error: Invalid proto: sctpx"),
])
def test_a_bad_port_is_one_line_and_125(md, images, spec, message):
    r = md.run("run", "--rm", "-p", spec, "busybox", "true")
    assert (r.returncode, r.stderr.strip()) == (125, message)
    assert md.run("ps", "-aq").stdout.strip() == ""


@pytest.fixture
def docker_like_netns():
    """A private netns set up as dockerd leaves a host's iptables (FORWARD policy DROP, a
    jump to DOCKER-USER first, DOCKER-USER ending in RETURN), linked by a veth to a second
    netns playing the outside world (10.99.0.2, an HTTP server). Both go at the end, with
    everything minidock made in the first (its bridge, table, rules)."""
    ns, out = "mdref-dockerish", "mdref-outside"
    for name in (ns, out):
        subprocess.run(["ip", "netns", "add", name], check=True)
    server = None
    try:
        def sh(where: str, *argv: str) -> None:
            subprocess.run(["ip", "netns", "exec", where, *argv], check=True)

        subprocess.run(["ip", "link", "add", "mdrefa", "netns", ns, "type", "veth", "peer",
                        "name", "mdrefb", "netns", out], check=True)
        for where, dev, addr in ((ns, "mdrefa", "10.99.0.1/24"), (out, "mdrefb", "10.99.0.2/24")):
            sh(where, "ip", "link", "set", "lo", "up")
            sh(where, "ip", "addr", "add", addr, "dev", dev)
            sh(where, "ip", "link", "set", dev, "up")
        # what dockerd does to the filter table (moby: iptables.go, setupIPChains)
        sh(ns, "iptables", "-w", "-N", "DOCKER-USER")
        sh(ns, "iptables", "-w", "-A", "DOCKER-USER", "-j", "RETURN")
        sh(ns, "iptables", "-w", "-I", "FORWARD", "-j", "DOCKER-USER")
        sh(ns, "iptables", "-w", "-P", "FORWARD", "DROP")
        server = subprocess.Popen(["ip", "netns", "exec", out, "python3", "-m", "http.server",
                                   "8000", "--bind", "10.99.0.2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield ns, out
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for name in (ns, out):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_next_to_dockers_forward_drop_the_bridge_still_forwards(md, images,
                                                                docker_like_netns):
    """The pitfall podman, LXD and libvirt meet next to Docker: minidock's accepts land in
    DOCKER-USER, so containers reach the outside and the outside reaches a published port;
    rules someone removed are a FIREWALL finding that --repair (or the next run) restores.
    (scripts/check-docker-coexistence does the same next to a real dockerd.)"""
    ns, out = docker_like_netns

    def inside(*args: str, **kw):
        return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *md.argv(*args)],
                              capture_output=True, text=True, **kw)

    r = inside("run", "--rm", "busybox", "wget", "-qO-", "http://10.99.0.2:8000/", timeout=60)
    assert r.returncode == 0 and "Directory listing" in r.stdout, r.stderr
    rules = subprocess.run(["ip", "netns", "exec", ns, "iptables", "-S", "DOCKER-USER"],
                           capture_output=True, text=True, check=True).stdout
    assert rules.count('--comment minidock -j ACCEPT') == 3, rules
    c = inside("run", "-d", "-p", "8080:80", "busybox", *SERVE, check=True).stdout.strip()
    try:
        def outside_gets() -> bool:
            try:  # (busybox wget's own -T crashes: the timeout is the caller's)
                return subprocess.run(["ip", "netns", "exec", out, "busybox", "wget", "-qO-",
                                       "http://10.99.0.1:8080/"], capture_output=True,
                                      text=True, timeout=5).stdout.startswith("hello from")
            except subprocess.TimeoutExpired:
                return False

        assert helpers.wait_for(outside_gets, 10)
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-F", "DOCKER-USER"],
                       check=True)  # a docker restart with a flush, an admin's cleanup...
        assert not outside_gets()
        r = inside("system", "check")
        assert r.returncode == 1 and "FIREWALL" in r.stdout, r.stdout
        assert inside("system", "check", "--repair").returncode == 0
        assert outside_gets()
    finally:
        inside("rm", "-f", c)


def _ns_iptables(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "iptables-save"], capture_output=True,
                          text=True, check=True).stdout


def _ns_nft_table(ns: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "ip",
                           "minidock"], capture_output=True).returncode == 0


def _outside_gets(out: str, url: str = "http://10.99.0.1:8080/") -> bool:
    try:  # (busybox wget's own -T crashes: the timeout is the caller's)
        return subprocess.run(["ip", "netns", "exec", out, "busybox", "wget", "-qO-", url],
                              capture_output=True, text=True,
                              timeout=5).stdout.startswith("hello from")
    except subprocess.TimeoutExpired:
        return False


def test_the_iptables_driver_does_what_the_nft_table_does(md, images, docker_like_netns,
                                                          tmp_path):
    """config.json's "firewall-driver": "iptables": minidock's chains (NAT out, ports from
    outside and from 127.0.0.1, forwarding past dockerd's DROP), once however many runs,
    repaired after a flush, and gone when the driver is nftables again."""
    ns, out = docker_like_netns
    (tmp_path / "config.json").write_text('{"firewall-driver": "iptables"}')
    env = {**os.environ, "MINIDOCK_CONFIG_DIR": str(tmp_path)}

    def inside(*args: str, **kw):
        return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *md.argv(*args)],
                              capture_output=True, text=True, env=env, **kw)

    r = inside("run", "--rm", "busybox", "wget", "-qO-", "http://10.99.0.2:8000/", timeout=60)
    assert r.returncode == 0 and "Directory listing" in r.stdout, r.stderr
    assert not _ns_nft_table(ns)
    c = inside("run", "-d", "-p", "8080:80", "busybox", *SERVE, check=True).stdout.strip()
    try:
        assert helpers.wait_for(lambda: _outside_gets(out), 10)
        local = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "busybox", "wget", "-qO-",
                                "http://127.0.0.1:8080/"], capture_output=True, text=True,
                               timeout=10)
        assert local.stdout.startswith("hello from"), local.stderr
        inside("run", "--rm", "busybox", "true", check=True)
        saved = _ns_iptables(ns)
        ip = inside("inspect", "-f", "{{.NetworkSettings.IPAddress}}", c,
                    check=True).stdout.strip()
        assert f"-A MINIDOCK -p tcp -m tcp --dport 8080 -j DNAT --to-destination {ip}:80" \
            in saved
        for jump in ("-A PREROUTING -m addrtype --dst-type LOCAL -j MINIDOCK",
                     "-A POSTROUTING -j MINIDOCK-POSTROUTING", "-A FORWARD -j MINIDOCK-FORWARD"):
            assert saved.count(jump + "\n") == 1, saved
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat", "-F",
                        "MINIDOCK"], check=True)  # someone's cleanup
        assert not _outside_gets(out)
        r = inside("system", "check")
        assert r.returncode == 1 and "FIREWALL" in r.stdout and "iptables" in r.stdout, r.stdout
        assert inside("system", "check", "--repair").returncode == 0
        assert _outside_gets(out)
    finally:
        inside("rm", "-f", c)
    env.pop("MINIDOCK_CONFIG_DIR")  # nftables again: minidock's chains go
    inside("run", "--rm", "busybox", "true", check=True)
    assert "MINIDOCK" not in _ns_iptables(ns) and _ns_nft_table(ns)


def test_where_nftables_is_missing_iptables_takes_over(md, images, docker_like_netns):
    """No libnftables, no nft program (hidden in a private mount namespace): the run falls
    back to iptables by itself, and the container still reaches the outside."""
    ns, _ = docker_like_netns
    lib = next((line.split("=>")[1].strip() for line in subprocess.run(
        ["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines()
        if "libnftables.so.1 " in line and "x86-64" in line), None)
    hide = [os.path.realpath(p) for p in (lib, shutil.which("nft")) if p]
    script = "".join(f"mount --bind /dev/null {p} && " for p in hide) + \
        f"exec nsenter --net=/run/netns/{ns} \"$@\""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                        "sh", *md.argv("run", "--rm", "busybox", "wget", "-qO-",
                                       "http://10.99.0.2:8000/")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Directory listing" in r.stdout, r.stderr
    assert "-A POSTROUTING -j MINIDOCK-POSTROUTING" in _ns_iptables(ns)
    assert not _ns_nft_table(ns)


def test_bip_takes_effect_while_nothing_runs_on_the_bridge(md, images, tmp_path):
    """The settings' "bip" is read when no container holds an address: the bridge then gets
    that gateway alone (the old one goes), the table masquerades that subnet; without it the
    subnet is a default pool again (the bridge's own route does not count as taken)."""
    (tmp_path / "config.json").write_text('{"bip": "10.123.0.1/24"}')
    r = md.run("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
               env={"MINIDOCK_CONFIG_DIR": str(tmp_path)}, check=True)
    assert "inet 10.123.0.2/24" in r.stdout

    def bridge_addresses() -> list[str]:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "minidock0"],
                             capture_output=True, text=True, check=True).stdout
        return [line.split()[3] for line in out.splitlines()]

    assert bridge_addresses() == ["10.123.0.1/24"]
    table = subprocess.run(["nft", "list", "table", "ip", "minidock"], capture_output=True,
                           text=True).stdout
    assert "ip saddr 10.123.0.0/24" in table and "172." not in table
    r = md.run("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0", check=True)
    gateway = bridge_addresses()
    assert len(gateway) == 1 and gateway[0] != "10.123.0.1/24"
    assert ipaddress.IPv4Interface(r.stdout.split()[3]).network == \
        ipaddress.IPv4Interface(gateway[0]).network


def _tracked_reply_sources() -> set[str]:
    import asyncio

    from pyroute2.conntrack import AsyncConntrack

    async def dump() -> set[str]:
        ct = AsyncConntrack()
        try:
            return {e.tuple_reply.saddr async for e in await ct.dump_entries()
                    if e.tuple_reply is not None}
        finally:
            ct.close()

    return asyncio.run(dump())


def test_a_removed_port_s_tracked_flows_are_forgotten(md, images):
    """A UDP flow to a published port keeps its NAT decision in conntrack; when the
    container goes, its flows go too (else they would lead to the next holder of its
    address)."""
    port = free_port()
    c = md.run("run", "-d", "-p", f"{port}:9/udp", "busybox", "sleep", "300",
               check=True).stdout.strip()
    try:
        ip = md.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", c,
                    check=True).stdout.strip()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"ping", ("127.0.0.1", port))
        assert helpers.wait_for(lambda: ip in _tracked_reply_sources(), 5)
    finally:
        md.run("rm", "-f", c, check=True)
    assert ip not in _tracked_reply_sources()


def test_trace_shows_the_netlink_requests_and_the_nft_table(md, images):
    r = md.run("run", "--rm", "--trace", "-p", f"{free_port()}:80", "busybox", "true",
               check=True)
    lines = [line for line in r.stderr.splitlines() if line.startswith("[net ")]
    assert any("netlink RTM_NEWLINK md" in line and "type veth peer eth0" in line
               for line in lines), r.stderr
    assert any("netlink RTM_NEWADDR" in line and "dev eth0" in line for line in lines)
    assert any("nft_run_cmd_from_buffer" in line for line in lines)
    assert "dnat to" in r.stderr  # the table applied, rule by rule
