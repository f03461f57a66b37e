"""The Go text/template subset behind every --format flag.

Expected outputs were checked against Go 1.19's text/template (with docker/cli's functions)
on the same data decoded from JSON; the cases are mostly the examples of Docker's docs
(docker inspect --format, docker images --format, docker ps --format, "Format command and
log output").
"""

from __future__ import annotations

from typing import Any

import pytest

from minidock.cli.gotemplate import Template, TemplateError, go_sprintf, go_value

CONTAINER: dict[str, Any] = {
    "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
    "Name": "/Web-App",
    "Args": ["-c", "echo hi"],
    "LogPath": "/var/lib/docker/containers/4fa6/4fa6-json.log",
    "State": {"Status": "exited", "Running": False, "ExitCode": 3, "Health": None},
    "Config": {
        "Image": "nginx:1.25",
        "Env": ["PATH=/usr/bin", "A=b"],
        "Labels": {"com.example.vendor": "ACME", "version": "1.0"},
        "Cmd": None,
    },
    "NetworkSettings": {
        "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                  "8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "16001"}]},
    },
    "Mounts": [{"Type": "bind", "Source": "/data", "Destination": "/srv"}],
    "RootFS": {"Type": "layers", "Layers": ["sha256:aa", "sha256:bb"]},
    "Size": 4261,
}


def run(src: str, data: Any = CONTAINER, **kw: Any) -> str:
    return Template(src).execute(data, **kw)


# --- docker inspect --format (docs/reference/commandline/inspect.md, container_inspect.md) ----


@pytest.mark.parametrize(
    ("src", "out"),
    [
        ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.2"),
        ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:02"),
        ("{{.LogPath}}", "/var/lib/docker/containers/4fa6/4fa6-json.log"),
        ("{{.Config.Image}}", "nginx:1.25"),
        ("{{json .RootFS.Layers}}", '["sha256:aa","sha256:bb"]'),
        ("{{json .Config.Labels}}", '{"com.example.vendor":"ACME","version":"1.0"}'),
        ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}}"
         " {{end}}", " 80/tcp -> 8080  8787/tcp -> 16001 "),
        ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "16001"),
        ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
        ("{{.State.ExitCode}}", "3"),
        ("{{.State.Running}}", "false"),
        ("{{range .Mounts}}{{.Source}} -> {{.Destination}}{{end}}", "/data -> /srv"),
        ("{{.RootFS.Layers}}", "[sha256:aa sha256:bb]"),
        ("{{.Config.Labels}}", "map[com.example.vendor:ACME version:1.0]"),
        ("{{.Mounts}}", "[map[Destination:/srv Source:/data Type:bind]]"),
        ("{{.Config.Cmd}}", "<no value>"),  # a JSON null read from a map (Go prints this)
        ("{{.NetworkSettings.Ports}}",
         "map[80/tcp:[map[HostIp:0.0.0.0 HostPort:8080]] 8787/tcp:[map[HostIp:0.0.0.0 "
         "HostPort:16001]]]"),
    ],
)
def test_inspect_examples(src: str, out: str) -> None:
    assert run(src, missing_error=True) == out


# --- "Format command and log output" (docs/config/formatting.md) -----------------------------


@pytest.mark.parametrize(
    ("src", "out"),
    [
        ('{{join .Args " , "}}', "-c , echo hi"),
        ("{{json .Mounts}}", '[{"Type":"bind","Source":"/data","Destination":"/srv"}]'),
        ("{{lower .Name}}", "/web-app"),
        ('{{split .Config.Image ":"}}', "[nginx 1.25]"),
        ("{{title .Name}}", "/Web-App"),
        ("{{title \"hello wORLD foo-bar\"}}", "Hello WORLD Foo-Bar"),
        ("{{upper .Name}}", "/WEB-APP"),
        ("{{println .Name}}", "/Web-App\n"),
        ("{{range .Config.Env}}{{println .}}{{end}}", "PATH=/usr/bin\nA=b\n"),
        ('{{printf "%-20s|" .Config.Image}}', "nginx:1.25          |"),
        ("{{.Name | upper | printf \"%q\"}}", '"/WEB-APP"'),
        ("{{len .Args}} {{len .Config.Labels}} {{len .Name}}", "2 2 8"),
    ],
)
def test_formatting_doc_functions(src: str, out: str) -> None:
    assert run(src) == out


# --- control structures, variables, comparisons ----------------------------------------------


@pytest.mark.parametrize(
    ("src", "out"),
    [
        ("{{range $i, $e := .Args}}{{if $i}}, {{end}}{{$i}}={{$e}}{{end}}", "0=-c, 1=echo hi"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
         "com.example.vendor=ACME;version=1.0;"),
        ("{{range .Config.Cmd}}x{{else}}no cmd{{end}}", "no cmd"),
        ("{{range .Args}}{{if eq . \"-c\"}}{{continue}}{{end}}{{.}}{{end}}", "echo hi"),
        ("{{range .Args}}{{if eq . \"echo hi\"}}{{break}}{{end}}{{.}}{{end}}", "-c"),
        ("{{range .Args}}{{$.Config.Image}} {{end}}", "nginx:1.25 nginx:1.25 "),
        ("{{if .State.Running}}up{{else if eq .State.ExitCode 0}}ok{{else}}failed "
         "{{.State.ExitCode}}{{end}}", "failed 3"),
        ("{{if not .State.Health}}no healthcheck{{end}}", "no healthcheck"),
        ("{{if and .Config.Env (gt .Size 1000)}}big{{end}}", "big"),
        ("{{or .Config.Cmd .Args}}", "[-c echo hi]"),
        ("{{and 1 0}} {{and 1 2}} {{or 0 \"\"}} {{not 0}}", "0 2  true"),
        ("{{with .NetworkSettings.Networks.bridge}}{{.IPAddress}}{{end}}", "172.17.0.2"),
        ("{{with .Config.Cmd}}{{.}}{{else}}none{{end}}", "none"),
        ("{{$img := .Config.Image}}{{range .Args}}{{$img}}{{end}}", "nginx:1.25nginx:1.25"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{lt 1 2}} {{le 2 2}} {{gt \"a\" \"b\"}} {{ge 3 3}} {{ne .Name \"x\"}}",
         "true true false true true"),
        ("{{eq .Config.Image \"x\" \"nginx:1.25\"}}", "true"),
        ("{{\"a\\tb\"}}|{{`raw\\n`}}|{{'a'}}|{{1.5}}|{{-3}}|{{0x1F}}|{{1e3}}|{{true}}",
         "a\tb|raw\\n|97|1.5|-3|31|1000|true"),
        ("a  {{- .State.ExitCode -}}  b", "a3b"),
        ("a {{- /* a comment */ -}} b", "ab"),
        ("{{/* nothing */}}x", "x"),
        ("{{.Nope}}", "<no value>"),
        ("{{.Nope.Deeper}}", "<no value>"),
        ('{{index .Config.Labels "missing"}}', ""),  # Docker's typed map[string]string
        ("{{slice .Name 1 4}}", "Web"),
        ("{{print 1 2}} {{print \"a\" \"b\"}} {{print \"a\" 1 2}}", "1 2 ab a1 2"),
    ],
)
def test_control_and_functions(src: str, out: str) -> None:
    assert run(src) == out


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "<no value>"), (True, "true"), (False, "false"), (12, "12"), (1.5, "1.5"),
        (1000000.0, "1e+06"), (123456.0, "123456"), (0.00001, "1e-05"), (1.0, "1"),
        ([1, None, "s"], "[1 <nil> s]"),
        ({"b": [1], "a": {"k": None}}, "map[a:map[k:<nil>] b:[1]]"),
        ([], "[]"), ({}, "map[]"),
    ],
)
def test_go_value(value: Any, text: str) -> None:
    assert go_value(value) == text


def test_printf_verbs() -> None:
    assert go_sprintf("%s|%d|%v|%q|%5d|%05d|%x|%.2f|%t", "a", 42, ["x", "y"], "q\n", 7, -2,
                      255, 3.14159, True) == 'a|42|[x y]|"q\\n"|    7|-0002|ff|3.14|true'
    assert go_sprintf("%-5s|%5.1s|", "ab", "xyz") == "ab   |    x|"
    assert go_sprintf("%d%%") == "%!d(MISSING)%"
    assert go_sprintf("%s", "a", "b") == "a%!(EXTRA string=b)"
    assert go_sprintf("%s", 5) == "%!s(int=5)"
    assert go_sprintf("%q", ["a", "b"]) == '["a" "b"]'
    assert go_sprintf("%s", None) == "%!s(<nil>)"


# --- errors: Go's texts, with the template name and position --------------------------------


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("{{.Foo}}", 'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"'),
        ("{{.Nope.Deeper}}",
         'template: :1:7: executing "" at <.Nope.Deeper>: map has no entry for key "Nope"'),
        ("x\n{{.Config.Cmd.X}}",
         'template: :2:9: executing "" at <.Config.Cmd.X>: nil pointer evaluating '
         "interface {}.X"),
        ("{{.Name.X}}",
         "template: :1:7: executing \"\" at <.Name.X>: can't evaluate field X in type "
         "interface {}"),
        ("{{len .Size}}",
         'template: :1:2: executing "" at <len .Size>: error calling len: len of type int'),
        ("{{index .Args 5}}",
         'template: :1:2: executing "" at <index .Args 5>: error calling index: index out of '
         "range: 5"),
        ("{{lower 1}}", 'template: :1:8: executing "" at <1>: expected string; found 1'),
        ("{{lower .Size}}", 'template: :1:8: executing "" at <.Size>: wrong type for value; '
         "expected string; got int"),
        ("{{eq .Name 1}}", 'template: :1:2: executing "" at <eq .Name 1>: error calling eq: '
         "incompatible types for comparison"),
        ("{{lower}}",
         'template: :1:2: executing "" at <lower>: wrong number of args for lower: want 1 got 0'),
        ("{{range .Name}}{{end}}",
         "template: :1:8: executing \"\" at <.Name>: range can't iterate over /Web-App"),
    ],
)
def test_execution_errors(src: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        run(src, missing_error=True)
    assert e.value.message == message
    assert e.value.exit_code == 125


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("{{.Id", "template: :1: unclosed action"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("{{if .Id}}x", "template: :1: unexpected EOF"),
        ("{{foo .Id}}", 'template: :1: function "foo" not defined'),
        ("{{.Id | \"x\"}}", "template: :1: non executable command in pipeline stage 2"),
        ("{{$y}}", 'template: :1: undefined variable "$y"'),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        ("{{.Id)}}", 'template: :1: unexpected ")" in command'),
        ('{{template "x"}}', "template: :1: {{template}} is not supported by minidock's "
         "templates"),
    ],
)
def test_parse_errors(src: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        Template(src)
    assert e.value.message == message


def test_parse_once_execute_many() -> None:
    tmpl = Template("{{.ID}}: {{.Repository}}")
    rows = [{"ID": "a1", "Repository": "busybox"}, {"ID": "b2", "Repository": "debian"}]
    assert [tmpl.execute(r) for r in rows] == ["a1: busybox", "b2: debian"]
