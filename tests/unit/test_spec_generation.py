"""ENTRYPOINT x CMD (reference.md §5), environment merging and the default spec."""

from __future__ import annotations

import pytest

from minidock.engine import spec as specgen
from minidock.engine.spec.user import ExecUser
from minidock.errors import InvalidArgument
from minidock.oci import runtime as oci

SHELL_ENTRY = ["/bin/sh", "-c", "exec_entry p1"]
EXEC_ENTRY = ["exec_entry", "p1"]
EXEC_CMD = ["exec_cmd", "p1_cmd"]
SHELL_CMD = ["/bin/sh", "-c", "exec_cmd p1_cmd"]


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "expected"),
    [
        (None, EXEC_CMD, ["exec_cmd", "p1_cmd"]),
        (None, SHELL_CMD, ["/bin/sh", "-c", "exec_cmd p1_cmd"]),
        (SHELL_ENTRY, None, ["/bin/sh", "-c", "exec_entry p1"]),
        # the shell form of ENTRYPOINT ignores CMD: sh -c takes only its first argument
        (SHELL_ENTRY, EXEC_CMD, ["/bin/sh", "-c", "exec_entry p1", "exec_cmd", "p1_cmd"]),
        (EXEC_ENTRY, None, ["exec_entry", "p1"]),
        (EXEC_ENTRY, EXEC_CMD, ["exec_entry", "p1", "exec_cmd", "p1_cmd"]),
        (EXEC_ENTRY, SHELL_CMD, ["exec_entry", "p1", "/bin/sh", "-c", "exec_cmd p1_cmd"]),
    ],
)
def test_entrypoint_cmd_table(entrypoint, cmd, expected):
    assert specgen.command_line(entrypoint, cmd, specgen.ProcessOptions()) == expected


def test_no_command_is_an_error():
    with pytest.raises(InvalidArgument, match="No command specified"):
        specgen.command_line(None, None, specgen.ProcessOptions())


def test_run_arguments_replace_cmd_but_keep_entrypoint():
    opts = specgen.ProcessOptions(cmd=["-la"])
    assert specgen.command_line(["ls"], ["-l"], opts) == ["ls", "-la"]


def test_entrypoint_flag_drops_image_cmd():
    opts = specgen.ProcessOptions(entrypoint=["/bin/echo"])
    assert specgen.command_line(["ls"], ["-l"], opts) == ["/bin/echo"]
    opts = specgen.ProcessOptions(entrypoint=[], cmd=["id"])
    assert specgen.command_line(["ls"], ["-l"], opts) == ["id"]


def test_env_order_and_override():
    env = specgen.merge_env(["PATH=/img", "A=1", "B=2"], ["A=x", "C"], "abc", True, "/root")
    assert env == ["PATH=/img", "HOSTNAME=abc", "TERM=xterm", "A=x", "B=2", "C=", "HOME=/root"]


def test_env_default_path_and_home_from_image_kept():
    env = specgen.merge_env(["HOME=/srv"], [], "h", False, "/root")
    assert f"PATH={specgen.DEFAULT_PATH}" in env
    assert "HOME=/srv" in env and "HOME=/root" not in env
    assert not any(e.startswith("TERM=") for e in env)


def test_default_spec_is_valid_and_docker_like():
    doc = specgen.base_spec("/r", ["sh"], ["PATH=/bin"], "/", ExecUser(0, 0), "h", False)
    specgen.build(doc, specgen.with_cgroups_path("/minidock/x"),
                  specgen.with_bind("/c/hosts", "/etc/hosts"), specgen.with_host_network())
    parsed = oci.parse(doc)
    assert parsed.linux.cgroups_path == "/minidock/x"
    assert {n.type for n in parsed.linux.namespaces} == {"pid", "ipc", "uts", "mount"}
    assert parsed.process.capabilities is not None
    assert len(parsed.process.capabilities.bounding) == 14
    dests = [m.destination for m in parsed.mounts]
    assert dests[:4] == ["/proc", "/dev", "/dev/pts", "/sys"]
    assert "/etc/hosts" in dests
    assert "/proc/kcore" in parsed.linux.masked_paths
    assert "/proc/sys" in parsed.linux.readonly_paths


def test_oci_parse_rejects_bad_types():
    doc = specgen.base_spec("/r", ["sh"], [], "/", ExecUser(0, 0), "h", False)
    doc["process"]["args"] = "sh"
    with pytest.raises(InvalidArgument, match=r"process\.args"):
        oci.parse(doc)
    doc["process"]["args"] = []
    with pytest.raises(InvalidArgument, match="must not be empty"):
        oci.parse(doc)
