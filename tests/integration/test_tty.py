"""`run -it` through a real pseudo-terminal (pexpect plays the user at a terminal)."""

from __future__ import annotations

import time

import pexpect
import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]

PROMPT = "/ # "


def spawn(md, *args: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    argv = md.argv(*args)
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=30,
                          dimensions=(rows, cols))
    return child


def close(child: pexpect.spawn) -> None:
    if child.isalive():
        child.terminate(force=True)


def test_interactive_shell_tty_size_and_exit_code(md, images):
    child = spawn(md, "run", "-it", "--rm", "busybox", "sh", rows=30, cols=100)
    try:
        child.expect_exact(PROMPT)
        child.sendline("tty; stty size")
        child.expect(r"/dev/pts/0\r\n30 100\r\n")
        child.expect_exact(PROMPT)
        child.setwinsize(40, 120)  # delivers SIGWINCH to minidock, which resizes the pty
        child.sendline("stty size")
        child.expect(r"40 120\r\n")
        child.expect_exact(PROMPT)
        child.sendline("exit 7")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 7
    finally:
        close(child)


def test_ctrl_c_reaches_the_foreground_job_and_ctrl_d_ends_the_shell(md, images):
    child = spawn(md, "run", "-it", "--rm", "busybox", "sh")
    try:
        child.expect_exact(PROMPT)
        child.sendline("sleep 100")
        child.expect_exact("sleep 100\r\n")
        time.sleep(0.5)  # let the shell start sleep: ^C must hit the foreground job
        child.sendcontrol("c")  # SIGINT from the container's own line discipline
        child.expect_exact(PROMPT)
        child.sendline("echo status=$?")
        child.expect(r"status=130")
        child.expect_exact(PROMPT)
        child.sendline("sleep 100 &")  # job control works: the shell owns its terminal
        child.expect_exact(PROMPT)
        child.sendline("jobs")
        child.expect(r"\[1\]\+? +Running +sleep 100")
        child.expect_exact(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        close(child)


def test_tty_in_debian_with_bash(md, images):
    child = spawn(md, "run", "-it", "--rm", "debian:bookworm", "bash")
    try:
        child.expect(r"root@[0-9a-f]{12}:/# ")
        child.sendline("echo $TERM; ls -l /dev/console | cut -c1")
        child.expect(r"xterm\r\nc\r\n")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        close(child)


def test_t_without_i_prints_through_the_pty(md, images):
    child = spawn(md, "run", "-t", "--rm", "busybox", "sh", "-c", "tty; exit 3")
    try:
        child.expect(r"/dev/pts/0\r+\n")  # our terminal is not raw without -i: \r\r\n
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 3
    finally:
        close(child)


def test_foreground_tty_output_is_logged(md, images):
    """With -t the pty's output goes to the json-file log as "stdout", as Docker's."""
    child = spawn(md, "run", "-t", "--name", "tty-log", "busybox", "sh", "-c",
                  "echo logged-$((40+2))")
    try:
        child.expect("logged-42")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        logs = md.run("logs", "tty-log", check=True)
        assert logs.stdout == "logged-42\r\n" and logs.stderr == ""  # the pty's \r\n
    finally:
        close(child)
        md.run("rm", "-f", "tty-log")
