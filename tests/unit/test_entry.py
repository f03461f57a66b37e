"""The console script's own `run` parser must agree with the click command it shortcuts."""

from __future__ import annotations

import click
import pytest

from minidock.cli.containers import run
from minidock.cli.main import cli
from minidock.cli.runflags import parse_run

SAME = [
    ["run", "busybox"],
    ["run", "busybox", "sh", "-c", "echo hi; exit 3"],
    ["run", "-it", "ubuntu", "bash"],
    ["run", "-dit", "--name", "x", "busybox", "sh"],
    ["run", "-d", "--rm", "busybox", "sleep", "1000"],
    ["run", "-e", "A=1", "-eB=2", "--env", "C", "--env=D=4", "busybox", "env"],
    ["run", "--env-file", "/tmp/f", "--env-file=/tmp/g", "busybox"],
    ["run", "-w", "/tmp", "-u", "1000:1000", "-h", "box", "busybox", "id"],
    ["run", "-w/tmp", "-u1000", "-hbox", "busybox"],
    ["run", "--workdir=/x", "--user=nobody", "--hostname=h", "busybox"],
    ["run", "--entrypoint", "", "busybox", "true"],
    ["run", "--entrypoint=/bin/sh", "busybox", "-c", "true"],
    ["run", "--network", "host", "--net=none", "busybox"],
    ["run", "--security-opt", "seccomp=unconfined", "--security-opt=no-new-privileges",
     "busybox"],
    ["run", "--name=a", "--name", "b", "busybox"],
    ["run", "-p", "8080:80", "-p127.0.0.1::81/udp", "--publish=90", "-P", "busybox"],
    ["run", "-dP", "--expose", "7000-7001", "--expose=53/udp", "--publish-all", "busybox"],
    ["run", "--add-host", "a:1.2.3.4", "--add-host=b:host-gateway", "--dns=8.8.8.8", "--dns",
     "1.1.1.1", "--dns-search", "x.org", "--dns-option", "ndots:2", "--ip", "10.0.0.5",
     "--network-alias", "w", "--network=n", "busybox"],
    ["run", "--trace", "--rm", "busybox", "true"],
    ["run", "-m", "512m", "--memory-swap=1g", "--memory-reservation", "256m", "--cpus", "1.5",
     "-c512", "--cpu-period", "50000", "--cpu-quota=25000", "--cpuset-cpus", "0",
     "--cpuset-mems=0", "--pids-limit", "100", "--oom-kill-disable", "--memory-swappiness",
     "10", "--blkio-weight", "500", "--device-read-bps", "/dev/vda:1mb",
     "--device-write-bps=/dev/vda:2mb", "--device-read-bps", "/dev/vdb:3mb", "busybox"],
    ["run", "-dm64m", "busybox"],
    ["run", "--pid", "host", "--ipc=shareable", "--uts", "host", "--cgroupns=private",
     "--shm-size", "1g", "--ulimit", "nofile=1:2", "--sysctl", "net.a=1", "--group-add", "10",
     "--device", "/dev/kmsg", "--device-cgroup-rule", "c 1:3 r", "busybox"],
    ["run", "-v", "/h:/c:ro", "--volume=v:/d", "-v/anon", "--mount", "type=tmpfs,target=/t",
     "--tmpfs", "/run:size=1m", "--read-only", "--volumes-from", "other:ro", "busybox"],
    ["run", "--cap-add", "NET_ADMIN", "--cap-add=sys_ptrace", "--cap-drop", "ALL",
     "--privileged", "busybox"],
    ["run", "-l", "a=1", "--label", "b", "--label=c=3", "-la=2", "busybox"],
    ["run", "--runtime", "runc", "--rm", "busybox"],
    ["run", "--runtime=/usr/bin/crun", "-d", "busybox", "top"],
    ["run", "-ie", "X=1", "busybox"],
    ["run", "-ieX=1", "busybox"],
    ["run", "--", "busybox", "-x"],
    ["run", "-e", "-x", "busybox"],
    ["run", "-e=X", "--name=", "busybox"],
    ["run", "-dite", "A=1", "busybox"],
    ["run", "busybox", "--rm", "-d"],  # after the image: the command's
    ["--root", "/r", "run", "busybox"],
    ["--root=/r", "--run-root", "/rr", "--debug", "run", "-d", "busybox"],
    ["--root", "run", "run", "busybox"],
]

FALLBACK = [
    ["run"],
    ["run", "--help"],
    ["run", "-d"],
    ["run", "--name"],
    ["run", "-x", "busybox"],
    ["run", "--no-such-flag", "busybox"],
    ["run", "--rm=yes", "busybox"],
    ["run", "-dz", "busybox"],
    ["--version"],
    ["ps", "-a"],
    ["--bogus", "run", "busybox"],
    ["--root"],
]


def click_params(argv: list[str]) -> tuple[dict[str, object], dict[str, object]]:
    i = 0
    while argv[i] != "run":
        i += 2 if argv[i] in ("--root", "--run-root") else 1
    gctx = cli.make_context("minidock", [*argv[:i], "ps"], resilient_parsing=True)
    glob = {k: gctx.params[k] for k in ("root", "run_root", "debug")}
    ctx = run.make_context("run", argv[i + 1:])
    params = dict(ctx.params)
    params["command"] = tuple(params["command"])
    return glob, params


@pytest.mark.parametrize("argv", SAME, ids=" ".join)
def test_parses_as_click_does(argv, monkeypatch):
    for var in ("MINIDOCK_ROOT", "MINIDOCK_RUN_ROOT", "MINIDOCK_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    ours = parse_run(argv)
    assert ours is not None
    glob, params = ours
    params = {**params, "command": tuple(params["command"])}
    assert (glob, params) == click_params(argv)


@pytest.mark.parametrize("argv", FALLBACK, ids=" ".join)
def test_leaves_the_rest_to_click(argv):
    assert parse_run(argv) is None


def test_fallbacks_are_click_errors_or_other_commands():
    for argv in (["-x", "busybox"], ["--no-such-flag", "busybox"], ["-d"]):
        with pytest.raises(click.UsageError):
            run.make_context("run", argv)
