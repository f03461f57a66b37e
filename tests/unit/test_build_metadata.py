"""minidock.build.metadata against docker 20.10's classic builder: the history lines
(`docker history --no-trunc`, oldest first) of a build of buildhistory/metadata.Dockerfile,
and the config it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minidock.build.metadata import StageState, apply
from minidock.dockerfile.parser import parse
from minidock.errors import InvalidArgument
from minidock.gofmt import go_quote

HERE = Path(__file__).resolve().parent / "buildhistory"


def test_history_lines_are_docker_s():
    commands = parse((HERE / "metadata.Dockerfile").read_text())
    assert commands[0].cmd == "FROM"
    state = StageState(config={"Cmd": ["sh"]})
    lines = [apply(state, c) for c in commands[1:]]
    assert lines == json.loads((HERE / "metadata.json").read_text())
    cfg = state.config
    assert cfg["Env"] == ["A=1", "B=two words", "C=", "LEGACY=some value"]
    assert cfg["Labels"] == {"a": "1", "b c": "d e", "multi": "x y"}
    assert cfg["ExposedPorts"] == {"443/tcp": {}, "53/udp": {}, "80/tcp": {}}
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["/bin/sh", "-ec", "run me"],
                                               ["/bin/sh", "-ec", "echo shell form"])
    assert (cfg["WorkingDir"], cfg["Shell"], state.author) == (
        "/tmp/rel/dir", ["/bin/sh", "-ec"], "Someone <a@b.c>")
    assert state.args == {"V": "3", "NOVAL": None}


def test_an_entrypoint_clears_an_inherited_cmd_and_args_expand():
    state = StageState(config={"Cmd": ["sh"]}, args={"WHO": "me"})
    (ep, user) = parse('ENTRYPOINT ["top"]\nUSER $WHO\n')
    apply(state, ep)
    apply(state, user)
    assert (state.config["Cmd"], state.config["User"]) == (None, "me")


def test_refusals():
    state = StageState()
    for text in ("SHELL /bin/bash", "STOPSIGNAL NOPE", "ONBUILD FROM x", "ARG a b"):
        with pytest.raises(InvalidArgument):
            apply(state, parse(text)[0])


def test_go_quote():
    assert go_quote('a "b" \\ \t é \x01 \u200b') == '"a \\"b\\" \\\\ \\t é \\x01 \\u200b"'
