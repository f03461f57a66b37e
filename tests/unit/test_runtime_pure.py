"""Pure parts of the runtime and engine: mount options, in-root joins, state machine,
and host files."""

from __future__ import annotations

import os

import pytest

from minidock import linux
from minidock.engine.containers.record import State, Status
from minidock.engine.spec import hostfiles
from minidock.errors import Conflict
from minidock.runtime.rootfs import parse_options, secure_join
from minidock.runtime.state import process_start_time


def test_parse_options():
    flags, prop, data = parse_options(["nosuid", "noexec", "mode=755", "size=65536k", "ro"])
    assert flags == linux.MS_NOSUID | linux.MS_NOEXEC | linux.MS_RDONLY
    assert prop == 0
    assert data == "mode=755,size=65536k"
    flags, prop, data = parse_options(["rbind", "rprivate", "rw"])
    assert flags == linux.MS_BIND | linux.MS_REC
    assert prop == linux.MS_PRIVATE | linux.MS_REC
    assert data == ""


def test_secure_join_clamps_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "rel")
    os.symlink("loop", root / "loop")
    r = str(root)
    assert secure_join(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "rel/passwd") == f"{r}/etc/passwd"
    assert secure_join(r, "/../../x") == f"{r}/x"
    assert secure_join(r, "/new/dir") == f"{r}/new/dir"
    with pytest.raises(OSError):
        secure_join(r, "/loop/x")


def test_state_machine_guards():
    st = State()
    st.transition(Status.RUNNING)
    st.transition(Status.EXITED)
    st.transition(Status.RUNNING)
    with pytest.raises(Conflict):
        st.transition(Status.CREATED)
    doc = st.to_docker()
    assert doc["Status"] == "running" and doc["Running"] is True
    assert State.from_docker(doc) == st


def test_process_start_time_names_a_process():
    assert process_start_time(os.getpid()) == process_start_time(os.getpid())
    assert process_start_time(2**22 + 1) is None


def test_resolv_conf_drops_loopback():
    text = "search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\noptions edns0\n"
    expected = "search lan\nnameserver 10.0.0.1\noptions edns0\n"
    assert hostfiles.container_resolv_conf(text) == expected
    only_local = hostfiles.container_resolv_conf("nameserver 127.0.0.1\nnameserver ::1\n")
    assert only_local == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_hosts_file():
    assert hostfiles.hosts_file().startswith("127.0.0.1\tlocalhost\n")
    assert hostfiles.hosts_file("172.17.0.2", "abc").endswith("172.17.0.2\tabc\n")


def test_add_host_lines_sit_between_the_defaults_and_the_container_s_own():
    text = hostfiles.hosts_file("172.17.0.2", "abc", [("db", "10.0.0.5"), ("v6", "::1")])
    lines = text.splitlines()
    assert lines[-3:] == ["10.0.0.5\tdb", "::1\tv6", "172.17.0.2\tabc"]
    assert hostfiles.parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert hostfiles.parse_add_host("gw:host-gateway") == ("gw", "host-gateway")
    for bad in ("db", "db:", ":1.2.3.4", "db:not-an-ip"):
        with pytest.raises(ValueError):
            hostfiles.parse_add_host(bad)


def test_dns_flags_replace_each_their_part_of_the_host_s_resolv_conf():
    host = "nameserver 10.0.0.1\nsearch corp.example\noptions ndots:1\n"
    assert hostfiles.resolv_conf(host, [], [], []) == host
    assert hostfiles.resolv_conf(host, ["1.1.1.1", "8.8.8.8"], [], []) == (
        "nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions ndots:1\n")
    assert hostfiles.resolv_conf(host, [], ["a.org", "b.org"], ["ndots:3"]) == (
        "nameserver 10.0.0.1\nsearch a.org b.org\noptions ndots:3\n")
