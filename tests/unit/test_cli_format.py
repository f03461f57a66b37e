"""Docker's table layout, sizes, ages and the placeholder --format template."""

from __future__ import annotations

import pytest

from minidock.cli.format import human_duration, human_size, parse_rfc3339, render, since, table
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
    obj = {"Id": "sha256:x", "RootFS": {"Type": "layers", "Layers": ["a", "b"]},
           "Config": {"Env": None, "Labels": {"b": "2", "a": "1"}}, "Size": 12}
    assert render("{{.Id}}", obj) == "sha256:x"
    assert render("id={{ .Id }} size={{.Size}}", obj) == "id=sha256:x size=12"
    assert render("{{.RootFS.Layers}}", obj) == "[a b]"
    assert render("{{.Config.Labels}}", obj) == "map[a:1 b:2]"
    assert render("{{.Config.Env}}", obj) == "<nil>"
    assert render("{{.Nope}}", obj) == "<no value>"
    assert render("{{json .RootFS}}", obj) == '{"Type":"layers","Layers":["a","b"]}'
    assert render("{{json .Nope}}", obj) == "null"
    assert render("plain\\t{{.Size}}", obj) == "plain\t12"
    with pytest.raises(InvalidArgument, match="template"):
        render("{{range .RootFS.Layers}}{{.}}{{end}}", obj)
    with pytest.raises(InvalidArgument, match="can't evaluate field"):
        render("{{.Id.Foo}}", obj)
