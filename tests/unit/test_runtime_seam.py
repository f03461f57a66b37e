"""The runtime seam's pure parts: choosing a runtime, reading what a runc-CLI runtime said."""

from __future__ import annotations

import os

import pytest

from minidock.engine import runtime as rt
from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    Conflict,
    ContainerNotFound,
    ContainerRuntimeError,
    InvalidArgument,
)
from minidock.paths import Paths
from minidock.settings import parse_engine_config


def test_last_message_of_runc_logfmt_json_and_crun_lines():
    logfmt = ('time="2026-12-06T13:00:00Z" level=warning msg="ignored"\n'
              'time="2026-12-06T13:00:00Z" level=error msg="container \\"x\\" does not exist"\n')
    assert rt.last_message(logfmt) == 'container "x" does not exist'
    js = ('{"level":"info","msg":"hello"}\n'
          '{"level":"error","msg":"exec failed: exec: \\"nope\\": executable file not found"}\n')
    assert rt.last_message(js) == 'exec failed: exec: "nope": executable file not found'
    assert rt.last_message("crun: container `x` does not exist\n") == \
        "crun: container `x` does not exist"
    assert rt.last_message("") == ""


@pytest.mark.parametrize("text, kind", [
    ('exec: "nope": executable file not found in $PATH', CommandNotFound),
    ("exec: /bin/x: no such file or directory", CommandNotFound),
    ("exec: /etc: permission denied", CommandCannotInvoke),
    ("container abc does not exist", ContainerNotFound),
    ("container is not running", Conflict),
    ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2",
     ContainerRuntimeError),
    ("something else broke", ContainerRuntimeError),
])
def test_classify(text, kind):
    e = rt.classify("runc", text)
    assert type(e) is kind
    assert "runc" in e.message


def test_a_runtime_that_refuses_hybrid_cgroups_says_so_with_a_hint():
    e = rt.classify("crun", "cgroups in hybrid mode not supported")
    assert e.message.startswith("crun cannot run containers on this host's cgroup layout")
    assert e.hint and "--runtime" in e.hint


def test_resolve(tmp_path):
    plain = tmp_path / "not-a-program"
    plain.write_text("")
    plain.chmod(0o644)
    assert rt.resolve(None).name == "minidock"
    assert rt.resolve(None, default="minidock").name == "minidock"
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: kata"):
        rt.resolve("kata")
    with pytest.raises(InvalidArgument, match="must be absolute"):
        rt.resolve("bin/runc")
    with pytest.raises(InvalidArgument, match="not an executable file"):
        rt.resolve(str(plain))
    with pytest.raises(InvalidArgument, match="not an executable file"):
        rt.resolve(str(tmp_path))
    cfg = rt.resolve("k", {"k": {"path": "/bin/true", "runtimeArgs": ["--x"]}})
    assert (cfg.name, cfg.path, cfg.args) == ("k", "/bin/true", ("--x",))
    with pytest.raises(InvalidArgument, match='needs a "path"'):
        rt.resolve("k", {"k": {}})
    with pytest.raises(InvalidArgument, match="runtimeArgs"):
        rt.resolve("k", {"k": {"path": "/bin/true", "runtimeArgs": "--x"}})
    assert rt.resolve("k", {"k": {"path": "/bin/true"}}, default="other").name == "k"


def test_state_roots_are_one_per_runtime():
    p = Paths(root="/r", run_root="/run/md")
    assert rt.state_root(p, "minidock") == p.runtime_state
    assert rt.state_root(p, "runc") == "/run/md/runtime-runc"
    by_path = rt.state_root(p, "/opt/x/runc")
    assert os.path.dirname(by_path) == "/run/md" and "/" not in by_path[len("/run/md/"):]
    assert by_path.startswith("/run/md/runtime-path-")


def test_settings_runtimes_and_default():
    cfg = parse_engine_config(b'{"runtimes": {"k": {"path": "/bin/k"}}, '
                              b'"default-runtime": "k"}')
    assert cfg.runtimes == {"k": {"path": "/bin/k"}} and cfg.default_runtime == "k"
    assert parse_engine_config(b"{}").default_runtime == ""
    with pytest.raises(InvalidArgument, match="runtimes must be an object"):
        parse_engine_config(b'{"runtimes": ["runc"]}')
    with pytest.raises(InvalidArgument, match="default-runtime must be a string"):
        parse_engine_config(b'{"default-runtime": 1}')
