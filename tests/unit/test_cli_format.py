"""Docker's table layout, sizes, ages, and how --format templates are applied."""

from __future__ import annotations

import re

import pytest

from minidock.cli.format import (
    format_rows,
    human_duration,
    human_size,
    parse_rfc3339,
    render,
    since,
    table,
    tabwriter,
)
from minidock.errors import InvalidArgument


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (1, "1B"), (999, "999B"), (1000, "1kB"), (1234, "1.23kB"),
     (4_261_000, "4.26MB"), (999_999, "1e+03kB"), (72_800_000, "72.8MB"),
     (1_500_000_000, "1.5GB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
     (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"),
     (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (14 * 86400, "2 weeks"),
     (60 * 86400, "2 months"), (800 * 86400, "2 years")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_parse_rfc3339_and_since() -> None:
    assert parse_rfc3339("1970-01-01T00:01:00Z") == 60
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0
    assert parse_rfc3339("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456789)
    assert parse_rfc3339("yesterday") is None
    assert since("1970-01-01T00:00:10Z", now=130) == "2 minutes ago"
    assert since("") == "N/A"


def test_table_like_tabwriter() -> None:
    out = table([["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                 ["busybox", "latest", "0123456789ab", "2 minutes ago", "4.26MB"]])
    assert out.splitlines() == [
        "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE",
        "busybox      latest    0123456789ab   2 minutes ago   4.26MB",
    ]


def test_render() -> None:
    """inspect -f: Docker's raw-JSON fallback semantics (missingkey=error, no \\t rewrite)."""
    obj = {"Id": "sha256:x", "RootFS": {"Type": "layers", "Layers": ["a", "b"]},
           "Config": {"Env": None, "Labels": {"b": "2", "a": "1"}}, "Size": 12}
    assert render("{{.Id}}", obj) == "sha256:x"
    assert render("id={{ .Id }} size={{.Size}}", obj) == "id=sha256:x size=12"
    assert render("{{.RootFS.Layers}}", obj) == "[a b]"
    assert render("{{.Config.Labels}}", obj) == "map[a:1 b:2]"
    assert render("{{.Config.Env}}", obj) == "<no value>"
    assert render("{{json .RootFS}}", obj) == '{"Type":"layers","Layers":["a","b"]}'
    assert render("{{range .RootFS.Layers}}{{.}};{{end}}", obj) == "a;b;"
    assert render("plain\\t{{.Size}}", obj) == "plain\\t12"
    with pytest.raises(InvalidArgument, match=re.escape(
            'template parsing error: template: :1:2: executing "" at <.Nope>: map has no '
            'entry for key "Nope"')):
        render("{{.Nope}}", obj)
    with pytest.raises(InvalidArgument, match="can't evaluate field"):
        render("{{.Id.Foo}}", obj)
    with pytest.raises(InvalidArgument, match=re.escape(
            'template parsing error: template: :1: function "nope" not defined')):
        render("{{nope .Id}}", obj)


IMAGE_ROWS = [
    {"ID": "0123456789ab", "Repository": "busybox", "Tag": "latest", "Size": "4.26MB"},
    {"ID": "ba9876543210", "Repository": "registry.example.com/debian", "Tag": "bookworm",
     "Size": "117MB"},
]
IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE"}


def test_format_rows_table() -> None:
    out = format_rows("table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}", IMAGE_ROWS, IMAGE_HEADERS)
    assert out.splitlines() == [
        "IMAGE ID       REPOSITORY                    TAG",
        "0123456789ab   busybox                       latest",
        "ba9876543210   registry.example.com/debian   bookworm",
    ]
    # formatting functions are pass-throughs for the header (docker/cli's HeaderFunctions)
    out = format_rows("table {{lower .Repository}}\t{{json .Tag}}", IMAGE_ROWS[:1],
                      IMAGE_HEADERS)
    assert out == 'REPOSITORY   TAG\nbusybox      "latest"\n'
    # "table" alone is the command's default table; no rows still prints the header
    assert format_rows("table", [], IMAGE_HEADERS, default_table="{{.ID}}\\t{{.Tag}}") == (
        "IMAGE ID   TAG\n")


def test_format_rows_plain() -> None:
    assert format_rows("{{.ID}}: {{.Repository}}", IMAGE_ROWS, IMAGE_HEADERS) == (
        "0123456789ab: busybox\nba9876543210: registry.example.com/debian\n")
    assert format_rows("{{.Repository}}\\t{{.Size}}", IMAGE_ROWS[:1], IMAGE_HEADERS) == (
        "busybox\t4.26MB\n")
    assert format_rows("{{.ID}}", [], IMAGE_HEADERS) == ""
    with pytest.raises(InvalidArgument, match='map has no entry for key "Nope"'):
        format_rows("{{.Nope}}", IMAGE_ROWS, IMAGE_HEADERS)


def test_tabwriter_blocks() -> None:
    # a line without a tab ends a column block: the blocks are aligned separately
    # (expected output from Go's text/tabwriter with docker/cli's settings)
    text = "a\tbb\tc\nlonger-cell\tx\ty\nno tabs here\nz\tw\n"
    assert tabwriter(text).splitlines() == [
        "a             bb        c",
        "longer-cell   x         y",
        "no tabs here",
        "z         w",
    ]
