"""minidock.dockerfile.parser against Docker's own parser: for every file of the corpus in
tests/unit/dockerfiles/, the commands (or the error) BuildKit's parser gave, as recorded by
scripts/record-dockerfile-parses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minidock.dockerfile.parser import ParseError, parse

CORPUS = Path(__file__).resolve().parent / "dockerfiles"
FILES = sorted(CORPUS.glob("*.Dockerfile"))


def as_recorded(text: str) -> object:
    try:
        commands = parse(text)
    except ParseError as e:
        return {"error": e.message}
    return [{
        "cmd": c.cmd, "sub_cmd": c.sub_cmd, "json": c.json, "original": c.original,
        "start_line": c.start_line, "end_line": c.end_line, "flags": list(c.flags),
        "value": list(c.value),
        "heredocs": [{"name": h.name, "file_descriptor": h.file_descriptor,
                      "content": h.content} for h in c.heredocs],
    } for c in commands]


def test_the_corpus_is_there_and_recorded():
    assert len(FILES) >= 15
    assert all(f.with_suffix(".json").is_file() for f in FILES)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_parses_as_docker_does(path: Path):
    want = json.loads(path.with_suffix(".json").read_text())
    got = as_recorded(path.read_bytes().decode("utf-8"))
    if isinstance(want, dict):  # an error: the same reason (our message adds the line)
        assert isinstance(got, dict), got
        assert want["error"].split(": ")[-1] in got["error"], (got, want)
    else:
        assert got == want


def test_heredoc_details_docker_leaves_to_the_build():
    (run, copy) = parse("RUN <<-EOT\n\tx\n\tEOT\nCOPY <<'C' /f\n$A\nC\n")
    assert (run.heredocs[0].chomp, run.heredocs[0].expand) == (True, True)
    assert (copy.heredocs[0].chomp, copy.heredocs[0].expand) == (False, False)
