"""The console script's own `build` parser must agree with the click command it shortcuts."""

from __future__ import annotations

import pytest

from minidock.cli.build import build
from minidock.cli.buildflags import parse_build
from minidock.cli.main import cli

SAME = [
    ["build", "."],
    ["build", "-"],
    ["build", "-t", "app", "."],
    ["build", "-t", "a:1", "--tag", "b", "--tag=c:2", "ctx"],
    ["build", "-f", "Dockerfile.dev", "--file=x", "."],
    ["build", "--build-arg", "A=1", "--build-arg=B", "--build-arg", "C=", "."],
    ["build", "--no-cache", "--pull", "-q", "--quiet", "."],
    ["build", "--target", "test", "--target=final", "."],
    ["build", "--network", "host", "--network=none", "."],
    ["build", "--label", "a=1", "--label=b", "."],
    ["build", "--rm=false", "--force-rm", "."],
    ["build", "--rm=true", "--rm=0", "."],
    ["build", "--iidfile", "/tmp/iid", "--trace", "."],
    ["build", "-f", "-", "."],
    ["--root", "/r", "build", "-q", "."],
    ["--root=/r", "--run-root", "/rr", "--debug", "build", "."],
]

FALLBACK = [
    ["build"],
    ["build", "--help"],
    ["build", "-t"],
    ["build", "-t", "x"],  # no PATH: the value is the tag
    ["build", ".", "-t", "x"],  # options after PATH: click's
    ["build", "--rm=maybe", "."],
    ["build", "-qt", "x", "."],
    ["build", "--no-such-flag", "."],
    ["build", "--no-cache=1", "."],
    ["build", "-t=x", "."],
    ["build", ".", "other"],
    ["image", "build", "."],
    ["ps", "--filter", "name=build"],
    ["--bogus", "build", "."],
]


def click_params(argv: list[str]) -> tuple[dict[str, object], dict[str, object]]:
    i = 0
    while argv[i] != "build":
        i += 2 if argv[i] in ("--root", "--run-root") else 1
    gctx = cli.make_context("minidock", [*argv[:i], "ps"], resilient_parsing=True)
    glob = {k: gctx.params[k] for k in ("root", "run_root", "debug")}
    ctx = build.make_context("build", argv[i + 1:])
    return glob, dict(ctx.params)


@pytest.mark.parametrize("argv", SAME, ids=" ".join)
def test_parses_as_click_does(argv, monkeypatch):
    for var in ("MINIDOCK_ROOT", "MINIDOCK_RUN_ROOT", "MINIDOCK_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    ours = parse_build(argv)
    assert ours is not None
    assert ours == click_params(argv)


@pytest.mark.parametrize("argv", FALLBACK, ids=" ".join)
def test_leaves_the_rest_to_click(argv):
    assert parse_build(argv) is None


def test_a_bare_rm_is_true_as_docker_s_bool_flag():
    parsed = parse_build(["build", "--rm", "--rm=false", "--rm", "."])
    assert parsed is not None and parsed[1]["remove"] is True
