"""The one error boundary: one line, Docker's exit status, never a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from minidock.cli.boundary import describe
from minidock.cli.main import command_name
from minidock.errors import ContainerNotFound


def test_an_oserror_reads_as_path_and_reason_without_pythons_repr():
    e = OSError(errno.EINVAL, os.strerror(errno.EINVAL), "/var/lib/minidock/x")
    assert describe(e) == "/var/lib/minidock/x: invalid argument"
    e2 = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a", None, "/b")
    assert describe(e2) == "/a -> /b: invalid cross-device link"
    assert describe(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"


def test_a_minidock_error_is_its_message_and_anything_else_is_named():
    assert describe(ContainerNotFound("No such container: x")) == "No such container: x"
    assert describe(ValueError("bad\nsecond line")) == "unexpected ValueError: bad"
    assert describe(KeyError()) == "unexpected KeyError"


@pytest.mark.parametrize(("argv", "name"), [
    (["--root", "/x", "load", "-i", "f"], "load"),
    (["image", "rm", "busybox"], "image rm"),
    (["--debug", "system", "check"], "system check"),
    (["ps", "-a"], "ps"),
    ([], ""),
])
def test_command_name_says_what_was_being_done(argv, name):
    assert command_name(argv) == name


def test_the_console_script_answers_an_unexpected_error_in_one_line(tmp_path):
    # an unwritable data root is an OSError deep in the engine: one line, exit 125
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**os.environ, "MINIDOCK_ROOT": str(blocker / "root"),
           "MINIDOCK_RUN_ROOT": str(blocker / "run")}
    p = subprocess.run([sys.executable, "-c", "from minidock.entry import main; main()",
                        "tag", "a", "b"], env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 125
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in p.stderr and "[Errno" not in p.stderr
