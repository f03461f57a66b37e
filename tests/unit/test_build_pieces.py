"""The pure parts of build: Go's durations, stages and steps, build args, the cache's
comparison, COPY's patterns and destinations, archive sniffing, history line words."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from minidock.build import cache, copier, stages
from minidock.build.builder import run_config
from minidock.build.metadata import StageState, apply, history_words
from minidock.dockerfile.parser import parse
from minidock.errors import InvalidArgument
from minidock.gofmt import go_duration, go_quote_rune, parse_duration


@pytest.mark.parametrize(("text", "ns", "shown"), [
    ("0", 0, "0s"), ("30s", 30 * 10**9, "30s"), ("1m30s", 90 * 10**9, "1m30s"),
    ("1.5s", 1_500_000_000, "1.5s"), ("500ms", 500_000_000, "500ms"), ("2h", 7200 * 10**9,
                                                                       "2h0m0s"),
    ("90m", 5400 * 10**9, "1h30m0s"), ("1us", 1000, "1µs"), ("3ns", 3, "3ns"),
])
def test_go_durations(text, ns, shown):
    assert parse_duration(text) == ns
    assert go_duration(ns) == shown


@pytest.mark.parametrize("bad", ["", "5", "1x", "s", "."])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="time: invalid duration"):
        parse_duration(bad)


def test_go_quote_rune():
    assert [go_quote_rune(n) for n in (0, 3, 9, 48, 39)] == \
        ["'\\x00'", "'\\x03'", "'\\t'", "'0'", "'\\''"]


def test_stages_count_steps_and_keep_up_to_the_target():
    text = ("ARG V=1\nFROM busybox:$V AS one\nRUN a\nFROM one AS two\nRUN b\nENV X=1\n"
            "FROM scratch\nCOPY --from=two /x /\n")
    plan = stages.plan(parse(text))
    assert [s.name for s in plan.stages] == ["one", "two", ""]
    assert plan.total_steps == 8
    plan = stages.plan(parse(text), target="TWO", labels={"b": "2", "a": "it's"})
    assert [s.name for s in plan.stages] == ["one", "two"]
    labels = plan.stages[-1].commands[-2:]
    assert [c.original for c in labels] == ["LABEL a=it's", "LABEL b=2"]
    state = StageState()
    apply(state, labels[0])
    assert state.config["Labels"] == {"a": "it's"}  # not expanded, quotes kept as text
    assert plan.total_steps == 8


@pytest.mark.parametrize(("text", "message"), [
    ("RUN x\n", "no build stage in current context"),
    ("FROM a AS 9x\n", "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS x\n", 'duplicate name "x"'),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM --pull a\n", "Unknown flag: pull"),
    ("", "Dockerfile contains no instructions"),
])
def test_stage_refusals(text, message):
    with pytest.raises(InvalidArgument, match=message):
        stages.plan(parse(text))


def test_target_must_exist():
    with pytest.raises(InvalidArgument, match="failed to reach build target nope"):
        stages.plan(parse("FROM a\n"), target="nope")


def test_build_args_resolution_and_the_run_prefix():
    state = StageState(options={"A": "cli", "HTTP_PROXY": "http://p", "UNDECLARED": "x"},
                       meta={"M": "meta"})
    for line in ("ARG A=default", "ARG B=b", "ARG M", "ENV B=env"):
        apply(state, parse(line)[0])
    assert state.allowed_args() == {"A": "cli", "B": "b", "HTTP_PROXY": "http://p",
                                    "M": "meta"}
    run_args = state.run_args()
    assert run_args == ["A=cli", "HTTP_PROXY=http://p", "M=meta"]  # ENV B shadows the arg
    assert state.run_prefix(run_args) == ["|2", "A=cli", "M=meta"]  # proxies unshown
    assert state.env()["B"] == "env"


def test_a_stage_starts_from_the_base_config_with_a_path():
    cfg = run_config({"Cmd": ["sh"], "OpenStdin": True})
    assert list(cfg)[:6] == ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                             "AttachStderr"]
    assert cfg["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert (cfg["OpenStdin"], cfg["Cmd"], cfg["Labels"]) == (False, ["sh"], None)
    assert run_config({"Env": ["PATH=/x", "A=1"]})["Env"] == ["PATH=/x", "A=1"]


def test_history_words_are_the_cmd_a_step_records():
    assert history_words(["/bin/sh", "-c"], 'CMD ["sh"]', "cmd") == \
        ["/bin/sh", "-c", "#(nop) ", 'CMD ["sh"]']
    assert history_words(["/bin/sh", "-c"], "WORKDIR /a b", "workdir") == \
        ["/bin/sh", "-c", "#(nop) WORKDIR /a b"]
    # a SHELL word with a blank stays one word (a history line cannot say where words end)
    assert history_words(["bash", "-o pipefail", "-c"], "ENV A=1", "env") == \
        ["bash", "-o pipefail", "-c", "#(nop) ", "ENV A=1"]


def test_the_cache_compares_as_moby_does():
    a = {"Cmd": ["x"], "Env": ["A=1"], "Labels": {"k": "v"}, "WorkingDir": "/a"}
    assert cache.same(a, {**a, "WorkingDir": "/b"})  # WorkingDir is not compared
    assert not cache.same(a, {**a, "Cmd": ["y"]})
    assert not cache.same(a, {**a, "Env": ["A=2"]})
    assert not cache.same(a, {**a, "Labels": None})
    assert cache.same({**a, "Labels": None}, {**a, "Labels": {}})
    assert not cache.same({**a, "OpenStdin": True}, {**a, "OpenStdin": True})
    assert not cache.same(None, a)


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("*.txt", "a.txt", True), ("*.txt", "d/a.txt", False), ("d/*", "d/a", True),
    ("?.md", "a.md", True), ("[a-c].md", "b.md", True), ("[^a].md", "a.md", False),
    ("a\\*", "a*", True), ("a\\*", "ab", False),
])
def test_copy_patterns_are_go_filepath_match(pattern, path, hit):
    assert bool(copier._go_match_regex(pattern).match(path)) is hit


@pytest.mark.parametrize(("workdir", "dest", "want"), [
    ("", "x", "/x"), ("/app", "x", "/app/x"), ("/app", "x/", "/app/x/"), ("/app", ".", "/app"),
    ("/app", "./", "/app/"), ("/app", "/abs/", "/abs/"), ("/app", "../up", "/up"),
])
def test_copy_destinations(workdir, dest, want):
    assert copier.normalize_dest(workdir, dest) == want


def test_archives_are_sniffed_not_named():
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as t:
        info = tarfile.TarInfo("f")
        t.addfile(info, io.BytesIO(b""))
    raw = data.getvalue()
    assert copier.looks_like_archive(raw[:512])
    assert copier.looks_like_archive(gzip.compress(b"anything"))  # compressed: by magic
    assert not copier.looks_like_archive(b"plain text\n" * 100)
    assert not copier.looks_like_archive(b"short")


def test_heredoc_text_expands_variables_only():
    from minidock.dockerfile.words import process_word

    env = {"WHO": "class"}
    assert process_word('hello "$WHO" \'${WHO}\' ${NOPE:-x} \\$WHO\n', env, raw=True) == \
        'hello "class" \'class\' x \\$WHO\n'
