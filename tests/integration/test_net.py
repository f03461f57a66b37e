"""The default bridge (`--network bridge`) on the real kernel: a veth as eth0 with a lease of
the bridge's subnet, NAT out through minidock's own nft table, container to container and to
the host, the lease and the veth gone with the run, and `system check` for leases a killed
run left. The bridge and the table are host-wide: removed at the end of the module."""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images,
              pytest.mark.network]


@pytest.fixture(scope="module", autouse=True)
def bridge_removed_at_the_end():
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    yield
    subprocess.run(["nft", "delete", "table", "ip", "minidock"], capture_output=True)
    subprocess.run(["ip", "link", "del", "minidock0"], capture_output=True)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(forward)


def leases(md) -> dict[str, str]:
    path = Path(md.root, "network", "bridge.json")
    return json.loads(path.read_text()).get("leases", {}) if path.exists() else {}


def md_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines()
            if line.split(": ")[1].startswith("md")]


def test_a_container_on_the_bridge_gets_eth0_a_route_and_its_hosts_line(md, images):
    r = md.run("run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
               "ip -o -4 addr show eth0; ip route; ip link show eth0; tail -1 /etc/hosts; "
               "hostname", check=True)
    lines = r.stdout.splitlines()
    addr = ipaddress.IPv4Interface(lines[0].split()[3])
    bridge = json.loads(Path(md.root, "network", "bridge.json").read_text())
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
    for _ in range(5):
        md.run("run", "--rm", "--network", "bridge", "busybox", "true", check=True)
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True,
                             text=True).stdout
    assert ruleset.count("table ip minidock") == 1
    assert ruleset.count("masquerade") >= 1
    table = subprocess.run(["nft", "list", "table", "ip", "minidock"], capture_output=True,
                           text=True).stdout
    assert table.count("masquerade") == 1
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == "1"


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


def test_system_check_frees_the_lease_of_a_run_killed_in_its_setup(md, images):
    """A lease whose container does not run (the CLI killed between the lease and the veth)
    is found and given back; a running container's lease is left alone."""
    from minidock.net import ipam
    from minidock.paths import Paths

    keep = md.run("run", "-d", "--network", "bridge", "busybox", "sleep", "100",
                  check=True).stdout.strip()
    try:
        ghost = "ab" * 32
        with ipam.Leases(Paths(md.root, md.run_root)) as held:
            subnet, gateway = held.subnet([], None)
            held.lease(ghost, subnet, gateway)
            held.save()
        r = md.run("system", "check")
        assert r.returncode == 1 and "LEASE" in r.stdout and ghost[:12] in r.stdout
        assert keep[:12] not in r.stdout
        assert md.run("system", "check", "--repair").returncode == 0
        assert list(leases(md)) == [keep]
        assert md.run("system", "check").returncode == 0
    finally:
        md.run("rm", "-f", keep)
    assert leases(md) == {}
