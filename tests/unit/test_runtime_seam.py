"""The engine's runtime seam: reading a runtime binary's errors, choosing a runtime."""

from __future__ import annotations

import os

import pytest

from minidock.engine import runtime as seam
from minidock.errors import (
    CommandCannotInvoke,
    CommandNotFound,
    Conflict,
    ContainerNotFound,
    ContainerRuntimeError,
    InvalidArgument,
)
from minidock.paths import Paths

RUNC_JSON = ('{"level":"error","msg":"runc create failed: unable to start container process:'
             ' exec: \\"/bin/nosuch\\": stat /bin/nosuch: no such file or directory",'
             '"time":"2026-12-05T13:40:01Z"}\n')
RUNC_LOGFMT = 'time="2026-12-05T13:40:01Z" level=error msg="container does not exist"\n'


def test_last_message_reads_runc_json_logs():
    assert last_msg(RUNC_JSON).endswith('exec: "/bin/nosuch": stat /bin/nosuch: '
                                        "no such file or directory")


def last_msg(text: str) -> str:
    return seam.last_message(text)


def test_last_message_reads_logfmt_and_skips_warnings():
    text = 'time="x" level=warning msg="ignored"\n' + RUNC_LOGFMT
    assert seam.last_message(text) == "container does not exist"


def test_last_message_keeps_plain_lines():
    assert seam.last_message("\ncgroups in hybrid mode not supported\n") == \
        "cgroups in hybrid mode not supported"


@pytest.mark.parametrize(("text", "kind", "code"), [
    ('unable to start container process: exec: "x": executable file not found in $PATH',
     CommandNotFound, 127),
    ('exec: "/bin/nosuch": stat /bin/nosuch: no such file or directory', CommandNotFound, 127),
    ('unable to start container process: exec: "/etc": permission denied',
     CommandCannotInvoke, 126),
    ('exec: "/tmp": is a directory', CommandCannotInvoke, 126),
    ("container does not exist", ContainerNotFound, 125),
    ("cannot pause a container that is not running", Conflict, 125),
    ("some other failure", ContainerRuntimeError, 125),
])
def test_classify_maps_runtime_words_to_dockers_codes(text, kind, code):
    e = seam.classify("runc", text)
    assert type(e) is kind
    assert e.exit_code == code
    assert e.message == f"runc: {text}"


def test_classify_names_a_cgroup_layout_the_runtime_refuses():
    e = seam.classify("crun", "cgroups in hybrid mode not supported, drop all controllers "
                              "from cgroupv2")
    assert type(e) is ContainerRuntimeError
    assert "crun cannot run containers on this host's cgroup layout" in e.message
    assert "\n" not in e.message


def test_resolve_builtin_and_paths(tmp_path):
    assert seam.resolve(None).name == seam.BUILTIN
    assert seam.resolve("minidock").path == ""
    exe = tmp_path / "myrt"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    rc = seam.resolve(str(exe))
    assert (rc.name, rc.path) == (str(exe), str(exe))
    with pytest.raises(InvalidArgument, match="must be absolute"):
        seam.resolve("./myrt")
    with pytest.raises(InvalidArgument, match="not an executable"):
        seam.resolve(str(tmp_path))
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: nope"):
        seam.resolve("nope")


def test_resolve_configured_runtimes_and_default(tmp_path):
    conf = {"fast": {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}}
    rc = seam.resolve("fast", conf)
    assert (rc.name, rc.path, rc.args) == ("fast", "/usr/bin/crun", ("--debug",))
    assert seam.resolve(None, conf, default="fast").name == "fast"
    with pytest.raises(InvalidArgument, match='needs a "path"'):
        seam.resolve("bad", {"bad": {"runtimeArgs": []}})
    with pytest.raises(InvalidArgument, match="runtimeArgs"):
        seam.resolve("bad", {"bad": {"path": "/x", "runtimeArgs": "--x"}})


def test_each_runtime_keeps_its_state_under_a_root_of_its_own(tmp_path):
    paths = Paths(root=str(tmp_path / "root"), run_root=str(tmp_path / "run"))
    assert seam.state_root(paths, "minidock") == paths.runtime_state
    assert seam.state_root(paths, "runc") == os.path.join(paths.run_root, "runtime-runc")
    other = seam.state_root(paths, "/opt/bin/runc")
    assert os.path.dirname(other) == paths.run_root
    assert "/" not in os.path.basename(other)
    assert other != seam.state_root(paths, "/usr/bin/runc")


def test_settings_name_runtimes_and_the_default():
    from minidock.settings import parse_engine_config

    cfg = parse_engine_config(b'{"runtimes": {"k": {"path": "/bin/k"}}, '
                              b'"default-runtime": "k"}')
    assert cfg.runtimes == {"k": {"path": "/bin/k"}} and cfg.default_runtime == "k"
    assert parse_engine_config(b"{}").default_runtime == ""
    with pytest.raises(InvalidArgument, match="runtimes must be an object"):
        parse_engine_config(b'{"runtimes": ["runc"]}')
    with pytest.raises(InvalidArgument, match="default-runtime must be a string"):
        parse_engine_config(b'{"default-runtime": 1}')
