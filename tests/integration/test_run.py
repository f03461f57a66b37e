"""`run` end to end on the real kernel: the process, its namespaces, exit codes, stdio."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.cgroup, pytest.mark.images]


def run(md, *args, **kw):
    return md.run("run", "--rm", *args, **kw)


def test_echo(md, images):
    r = run(md, "busybox", "echo", "hello", "world")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello world\n", "")


def test_image_cmd_is_default(md, images):
    r = run(md, "-i", "busybox", input="echo from-sh\n")
    assert r.returncode == 0 and r.stdout == "from-sh\n"


def test_debian_bash(md, images):
    r = run(md, "debian:bookworm", "bash", "-c", "echo $BASH_VERSION; cat /etc/debian_version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("5.") and lines[1].startswith("12.")


@pytest.mark.parametrize(("cmd", "code", "message"), [
    (["sh", "-c", "exit 3"], 3, None),
    (["false"], 1, None),
    (["nosuchcommand"], 127, 'exec: "nosuchcommand": executable file not found in $PATH'),
    (["/bin/nosuch"], 127, "no such file or directory"),
    (["/etc"], 126, "is a directory"),
    (["/etc/passwd"], 126, "permission denied"),
    # pid 1 cannot be SIGKILLed from inside its namespace: kill a child instead
    (["sh", "-c", "sleep 100 & kill -9 $!; wait $!"], 137, None),
])
def test_exit_codes(md, images, cmd, code, message):
    r = run(md, "busybox", *cmd)
    assert r.returncode == code, r.stderr
    if message:
        assert message in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_engine_errors_are_125(md, images):
    r = md.run("run", "--rm", "--no-such-flag", "busybox")
    assert r.returncode == 125
    r = md.run("run", "--rm", "nosuchimage:latest", "true")
    assert r.returncode == 125 and "nosuchimage" in r.stderr
    r = md.run("run", "--rm", "-u", "ghost", "busybox", "true")
    assert r.returncode == 125 and "unable to find user ghost" in r.stderr


def test_stdin_pipe_only_with_i(md, images):
    r = run(md, "-i", "busybox", "cat", input="hi\n")
    assert r.stdout == "hi\n"
    r = run(md, "busybox", "cat", input="ignored\n")
    assert r.returncode == 0 and r.stdout == ""


def test_no_tty_without_t(md, images):
    r = run(md, "busybox", "tty")
    assert r.returncode == 1 and r.stdout.strip() == "not a tty"


def test_stderr_is_separate(md, images):
    r = run(md, "busybox", "sh", "-c", "echo out; echo err >&2")
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_env_sources(md, images, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nFROM_FILE=1\nSHARED=file\nPASSED\n")
    r = md.run("run", "--rm", "-e", "A=b c", "-e", "SHARED=flag", "--env-file", str(env_file),
               "busybox", "env", env={**os.environ, "PASSED": "through"})
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert env["A"] == "b c" and env["FROM_FILE"] == "1" and env["SHARED"] == "flag"
    assert env["PASSED"] == "through"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == "/root" and len(env["HOSTNAME"]) == 12


def test_hostname_workdir_user(md, images):
    r = run(md, "--hostname", "box1", "busybox", "hostname")
    assert r.stdout == "box1\n"
    r = run(md, "-w", "/made/by/run", "busybox", "pwd")
    assert r.stdout == "/made/by/run\n"
    r = run(md, "-u", "user", "busybox", "id")
    assert r.stdout.startswith("uid=1000(user) gid=1000(user)")
    r = run(md, "-u", "4242:4343", "busybox", "id", "-u")
    assert r.stdout == "4242\n"
    r = run(md, "-u", "user", "-w", "/work", "busybox", "sh", "-c", "touch x && stat -c %U .")
    assert r.returncode == 0 and r.stdout == "user\n"


def test_entrypoint_flag(md, images):
    r = run(md, "--entrypoint", "echo", "busybox", "a", "b")
    assert r.stdout == "a b\n"


def test_pid_namespace_and_hostname_default(md, images):
    r = run(md, "busybox", "sh", "-c", "echo $$; ps -o pid,comm | wc -l; hostname")
    lines = r.stdout.split()
    assert lines[0] == "1"
    assert int(lines[1]) <= 4  # header + sh + ps + wc
    assert len(lines[2]) == 12


def test_namespaces_differ_from_host(md, images):
    r = run(md, "busybox", "sh", "-c",
            "for n in mnt pid uts ipc net; do readlink /proc/self/ns/$n; done")
    inside = r.stdout.split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "pid", "uts", "ipc", "net")]
    assert len(inside) == 5
    assert all(a != b for a, b in zip(inside, host, strict=True))


def test_network_none_has_only_loopback_up(md, images):
    r = run(md, "--network", "none", "busybox", "ip", "-o", "link")
    links = [ln.split(":")[1].strip() for ln in r.stdout.splitlines()]
    assert links == ["lo"]
    assert "UP" in r.stdout
    r = run(md, "--network", "none", "busybox", "ping", "-c", "1", "-W", "1", "127.0.0.1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_network_host_shares_the_host_stack(md, images):
    r = run(md, "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert r.stdout.strip() == os.readlink("/proc/self/ns/net")


def test_default_capabilities_match_docker(md, images):
    r = run(md, "busybox", "grep", "Cap", "/proc/self/status")
    caps = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert caps["CapEff"] == "00000000a80425fb"
    assert caps["CapBnd"] == "00000000a80425fb"
    assert caps["CapInh"] == "0000000000000000"
    r = run(md, "-u", "user", "busybox", "grep", "CapEff", "/proc/self/status")
    assert r.stdout.split()[1] == "0000000000000000"


def test_masked_and_readonly_paths(md, images):
    r = run(md, "busybox", "sh", "-c",
            "wc -c < /proc/interrupts; ls /sys/firmware | wc -l; "
            "echo 1 > /proc/sys/kernel/domainname && echo WROTE; "
            "touch /sys/x 2>/dev/null || echo SYS-RO; echo ok > /etc/hello && cat /etc/hello")
    out = r.stdout.split()
    assert out[0] == "0" and out[1] == "0"
    assert "WROTE" not in out and "SYS-RO" in out and out[-1] == "ok"


def test_dev_is_built_by_the_runtime(md, images):
    r = run(md, "busybox", "ls", "/dev")
    names = set(r.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
            "fd", "stdin", "stdout", "stderr", "ptmx"} <= names
    assert "sda" not in names and "vda" not in names and "kmsg" not in names


def test_etc_files_are_bind_mounted_from_container_dir(md, images):
    r = run(md, "busybox", "sh", "-c", "cat /etc/hostname; head -1 /etc/hosts; grep -c . "
            "/etc/resolv.conf; grep -E '/etc/(hosts|hostname|resolv.conf)' /proc/mounts | wc -l")
    lines = r.stdout.splitlines()
    assert len(lines[0]) == 12
    assert lines[1] == "127.0.0.1\tlocalhost"
    assert int(lines[2]) >= 1 and lines[3] == "3"


def test_no_host_fd_reaches_the_container(md, images):
    r_fd, w_fd = os.pipe()
    try:
        r = subprocess.run(md.argv("run", "--rm", "busybox", "ls", "/proc/self/fd"),
                           capture_output=True, text=True, pass_fds=(r_fd, w_fd), timeout=60)
    finally:
        os.close(r_fd)
        os.close(w_fd)
    # 0-2 and the fd ls itself opens to read the directory
    assert sorted(int(x) for x in r.stdout.split()) == [0, 1, 2, 3]


def test_trace_shows_kernel_steps(md, images):
    r = md.run("run", "--rm", "--trace", "busybox", "true")
    assert r.returncode == 0
    for step in ("unshare(CLONE_NEWNS", "pivot_root(", "sethostname(", "mknod(",
                 'mount(\'proc\', "', "execve("):
        assert step in r.stderr, step
    assert r.stdout == ""


def test_processes_are_born_in_the_cgroup_on_v2_and_moved_on_v1(md, images):
    """Pure cgroup v2: the container's first process and an exec'd one are created in the
    container's cgroup (clone3 with CLONE_INTO_CGROUP) and nothing writes cgroup.procs. v1 and
    hybrid hosts move them with cgroup.procs writes. Either way they end up in the cgroup."""
    from minidock import cgroups

    v2 = cgroups.detect_version() == 2

    def steps(stderr: str) -> tuple[list[str], list[str]]:
        lines = stderr.splitlines()
        return ([ln for ln in lines if "clone3(CLONE_INTO_CGROUP" in ln],
                [ln for ln in lines if "write(" in ln and "/cgroup.procs" in ln])

    r = md.run("run", "--rm", "--trace", "busybox", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    born, moved = steps(r.stderr)
    if v2:
        assert born and "/minidock/" in born[0] and not moved, r.stderr
        assert r.stdout == "0::/\n"  # its own cgroup namespace, rooted at its cgroup
    else:
        assert moved and not born, r.stderr
        assert all(":/minidock/" in ln for ln in r.stdout.splitlines()), r.stdout
    name = "born-in-cgroup"
    r = md.run("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = md.run("exec", "--trace", name, "cat", "/proc/self/cgroup")
        assert r.returncode == 0, r.stderr
        born, moved = steps(r.stderr)
        assert (bool(born), bool(moved)) == (v2, not v2), r.stderr
        assert r.stdout == "0::/\n" if v2 else ":/minidock/" in r.stdout, r.stdout
    finally:
        md.run("rm", "-f", name)


def test_the_start_path_loads_only_what_it_uses(md, images):
    """A guard for start latency without a timed assertion: `run --rm`, `run -d` and `exec`
    import none of the modules they have no use for (each once cost a start 1-12 ms)."""
    unwanted = {
        "typing", "dataclasses", "inspect", "hashlib", "_hashlib", "threading", "tarfile",
        "ssl", "http.client", "email.parser", "urllib.request", "importlib.metadata",
        "click", "zstandard", "pyroute2", "minidock.cli.main", "minidock.image.distribution",
        "minidock.engine.distribution", "minidock.image.credentials",
    }

    def imports_of(*args: str) -> set[str]:
        argv = md.argv(*args)
        argv[1:1] = ["-X", "importtime"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return {line.split("|")[2].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}

    loaded = imports_of("run", "--rm", "--network", "none", "busybox", "true")
    assert "minidock.runtime.process" in loaded  # the output is what this test thinks it is
    assert not loaded & unwanted, sorted(loaded & unwanted)
    name = "lean-start"
    try:
        loaded = imports_of("run", "-d", "--name", name, "busybox", "sleep", "60")
        assert not loaded & unwanted, sorted(loaded & unwanted)
        loaded = imports_of("exec", name, "true")
        assert "minidock.runtime.exec" in loaded
        # exec goes through the click CLI, which brings typing, inspect and threading
        click = {"click", "minidock.cli.main", "typing", "inspect", "threading"}
        assert not loaded & (unwanted - click), sorted(loaded & (unwanted - click))
    finally:
        md.run("rm", "-f", name)


def _ignoring_and_blocking() -> None:
    """A caller as `nohup cmd &` leaves it: SIGHUP, SIGINT and SIGQUIT ignored; and SIGUSR1
    blocked (subprocess's preexec_fn)."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})


def _signal_masks(status: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in status.splitlines())
            if k in ("SigIgn", "SigBlk")}


def test_the_command_starts_with_no_signal_ignored_or_blocked(md, images):
    """Neither what Python ignores (SIGPIPE, SIGXFSZ) nor what minidock's caller ignores or
    blocks reaches the container's command, in run and in exec (execve keeps both)."""
    clean = {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}
    r = subprocess.run(md.argv("run", "--rm", "busybox", "cat", "/proc/self/status"),
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=_ignoring_and_blocking)
    assert r.returncode == 0, r.stderr
    assert _signal_masks(r.stdout) == clean
    r = md.run("run", "--rm", "busybox", "sh", "-c", "yes | head -1 >/dev/null; echo done")
    assert (r.returncode, r.stdout, r.stderr) == (0, "done\n", "")  # yes died of SIGPIPE quietly
    name = "sig-defaults"
    md.run("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    try:
        r = subprocess.run(md.argv("exec", name, "cat", "/proc/self/status"),
                           capture_output=True, text=True, timeout=60,
                           preexec_fn=_ignoring_and_blocking)
        assert r.returncode == 0, r.stderr
        assert _signal_masks(r.stdout) == clean
    finally:
        md.run("rm", "-f", name)


def test_it_refuses_input_that_is_not_a_terminal(md, images):
    """As Docker's CLI: `run -it` and `exec -it` with piped input (whose end would never reach
    the pty, so the session would hang) are refused before anything is created, exit 1;
    -t alone, -i alone and -dit are fine."""
    refused = (1, "Error: the input device is not a TTY\n")
    r = md.run("run", "-it", "--name", "piped-it", "busybox", "sh", input="echo hi\n")
    assert (r.returncode, r.stderr) == refused
    assert md.run("ps", "-aq", "--filter", "name=piped-it").stdout == ""
    r = md.run("run", "-t", "--rm", "busybox", "echo", "ok", input="")
    assert (r.returncode, r.stdout) == (0, "ok\r\n"), r.stderr
    r = md.run("run", "-i", "--rm", "busybox", "cat", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n"), r.stderr
    name = "piped-exec"
    md.run("run", "-dit", "--name", name, "busybox", "sh", check=True)
    try:
        r = md.run("exec", "-it", name, "sh", input="echo hi\n")
        assert (r.returncode, r.stderr) == refused
    finally:
        md.run("rm", "-f", name)


def test_sig_proxy_forwards_sigterm(md, images):
    p = subprocess.Popen(md.argv("run", "--rm", "busybox", "sh", "-c",
                                 "trap 'echo got-term; exit 42' TERM; echo ready; "
                                 "while true; do sleep 0.1; done"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "ready\n"
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 42 and "got-term" in out


def test_cgroup_exists_while_running_and_goes_away(md, images):
    p = subprocess.Popen(md.argv("run", "--rm", "busybox", "sh", "-c",
                                 "echo ready; sleep 30"), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        cid = md.run("ps", "-q", "--no-trunc").stdout.split()[0]
        dirs = _cgroup_dirs(cid)
        assert dirs and all(os.path.isdir(d) for d in dirs)
        md.run("rm", "-f", cid, check=True)
        p.wait(timeout=30)
        assert not any(os.path.exists(d) for d in dirs)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _cgroup_dirs(cid: str) -> list[str]:
    out = []
    for entry in os.listdir("/sys/fs/cgroup"):
        d = os.path.join("/sys/fs/cgroup", entry, "minidock", cid)
        if os.path.isdir(d):
            out.append(d)
    d = os.path.join("/sys/fs/cgroup", "minidock", cid)
    if os.path.isdir(d):
        out.append(d)
    return out


def test_many_quick_runs_leave_nothing(md, images):
    for _ in range(3):
        assert run(md, "busybox", "true").returncode == 0
    assert md.run("ps", "-aq").stdout == ""


def test_cgroup_view_inside_the_container(md, images):
    from minidock import cgroups

    r = run(md, "busybox", "sh", "-c",
            "cat /proc/self/cgroup; ls /sys/fs/cgroup; touch /sys/fs/cgroup/x 2>&1 || true")
    assert r.returncode == 0, r.stderr
    if cgroups.detect_version() == 2:
        # a private cgroup namespace: the container's cgroup is its root
        assert "0::/\n" in r.stdout
        assert "cgroup.controllers" in r.stdout
    else:
        lines = [ln for ln in r.stdout.splitlines() if ln.count(":") >= 2]
        assert any(":pids:/minidock/" in ln for ln in lines)
        assert "pids" in r.stdout.split()
    assert "Read-only file system" in r.stdout


def test_timings_show_what_each_phase_of_a_start_costs(md, images):
    r = md.run("run", "--rm", "--timings", "--network", "none", "busybox", "true", check=True)
    lines = r.stderr.splitlines()
    assert lines[0] == "timings (ms):" and lines[-1].split()[0] == "total"
    labels = [line.rsplit(None, 1)[0].strip() for line in lines[1:-1]]
    assert labels == ["image lookup", "create (record, rw layer, /etc files)",
                      "rootfs mount (overlay)", "spec (config.json)",
                      "runtime create (minidock)", "cgroup", "namespaces",
                      "mounts and pivot_root", "masked and read-only paths",
                      "capabilities, seccomp, user", "exec (runtime start)"], r.stderr
    outer = [float(line.split()[-1]) for line in lines[1:-1] if line.startswith("  ")
             and not line.startswith("    ")]
    # nested ones counted once; each printed figure is rounded to 0.1 ms, the total too
    assert abs(sum(outer) - float(lines[-1].split()[-1])) <= 0.05 * (len(outer) + 1) + 1e-9
    cid = md.run("run", "-d", "--timings", "--network", "none", "busybox", "sleep", "60",
                 check=True).stdout.strip()
    try:
        timings = json.loads(md.run("inspect", "-f", "{{json .State.Timings}}", cid,
                                    check=True).stdout)
        assert "runtime create (minidock) > namespaces" in timings
        assert all(isinstance(v, float | int) and v >= 0 for v in timings.values())
    finally:
        md.run("rm", "-f", cid)
