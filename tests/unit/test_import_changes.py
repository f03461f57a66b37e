"""``docker import --change``: Dockerfile instructions applied to an image config."""

from __future__ import annotations

import json

import pytest

from minidock.dockerfile.instructions import apply_changes
from minidock.engine.images import build_import_config, host_platform
from minidock.errors import InvalidArgument


def test_no_changes_is_empty_config() -> None:
    assert apply_changes([]) == {}


@pytest.mark.parametrize(
    ("change", "key", "value"),
    [
        ('CMD ["/bin/sh", "-c", "echo hi"]', "Cmd", ["/bin/sh", "-c", "echo hi"]),
        ("CMD echo $HOME hi", "Cmd", ["/bin/sh", "-c", "echo $HOME hi"]),
        ("cmd [\"a\"]", "Cmd", ["a"]),
        ("CMD []", "Cmd", []),
        ("CMD [not json", "Cmd", ["/bin/sh", "-c", "[not json"]),
        ('ENTRYPOINT ["/init"]', "Entrypoint", ["/init"]),
        ("ENTRYPOINT top -b", "Entrypoint", ["/bin/sh", "-c", "top -b"]),
        ("USER 1000:1000", "User", "1000:1000"),
        ("WORKDIR /app", "WorkingDir", "/app"),
        ("WORKDIR app/../srv//x/", "WorkingDir", "/srv/x"),
        ("STOPSIGNAL SIGKILL", "StopSignal", "SIGKILL"),
        ("STOPSIGNAL term", "StopSignal", "term"),
        ("STOPSIGNAL 9", "StopSignal", "9"),
        ("EXPOSE 80 53/udp", "ExposedPorts", {"80/tcp": {}, "53/udp": {}}),
        ("EXPOSE 8000-8002/tcp", "ExposedPorts", {"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}),
        ('VOLUME ["/data", "/logs"]', "Volumes", {"/data": {}, "/logs": {}}),
        ("VOLUME /data /logs", "Volumes", {"/data": {}, "/logs": {}}),
        ('LABEL a=b "c d"="e f" g=\'h $i\'', "Labels", {"a": "b", "c d": "e f", "g": "h $i"}),
        ("LABEL legacy value with spaces", "Labels", {"legacy": "value with spaces"}),
        ("ONBUILD RUN make", "OnBuild", ["RUN make"]),
    ],
)
def test_single_instruction(change: str, key: str, value: object) -> None:
    assert apply_changes([change])[key] == value


def test_env_forms_and_replacement() -> None:
    cfg = apply_changes([
        "ENV A=1 B=\"two words\"",
        "ENV C three  words",
        "ENV A=one",
        "ENV PATH=/usr/bin:/bin",
    ])
    assert cfg["Env"] == ["A=one", "B=two words", "C=three  words", "PATH=/usr/bin:/bin"]


def test_env_substitution_sees_values_from_before_the_instruction() -> None:
    cfg = apply_changes(["ENV abc=hello", "ENV abc=bye def=$abc", "ENV ghi=${abc}x"])
    assert cfg["Env"] == ["abc=bye", "def=hello", "ghi=byex"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${UNSET:-dflt}", "dflt"),
        ("${X:-dflt}", "x"),
        ("${X:+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("\\$X", "$X"),
        ("'$X'", "$X"),
        ('"$X"', "x"),
        ("$X/$UNSET/", "x//"),
        ("a$", "a$"),
    ],
)
def test_substitution(word: str, expected: str) -> None:
    cfg = apply_changes(["ENV X=x EMPTY=", f"LABEL k={word}"])
    assert cfg["Labels"]["k"] == expected


def test_substitution_in_workdir_user_expose() -> None:
    cfg = apply_changes(["ENV D=/opt U=app P=8080", "WORKDIR $D/x", "USER ${U}", "EXPOSE $P"])
    assert cfg["WorkingDir"] == "/opt/x"
    assert cfg["User"] == "app"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}}


def test_cmd_is_not_expanded() -> None:
    assert apply_changes(["ENV X=1", "CMD echo $X"])["Cmd"] == ["/bin/sh", "-c", "echo $X"]


def test_relative_workdir_joins_previous() -> None:
    assert apply_changes(["WORKDIR /a", "WORKDIR b", "WORKDIR ../c"])["WorkingDir"] == "/a/c"


def test_keys_in_docker_order() -> None:
    cfg = apply_changes(["LABEL a=b", "CMD x", "ENV A=1", "USER u", "WORKDIR /w"])
    assert list(cfg) == ["User", "Env", "Cmd", "WorkingDir", "Labels"]


def test_entrypoint_then_cmd_keeps_both() -> None:
    cfg = apply_changes(['ENTRYPOINT ["e"]', 'CMD ["c"]'])
    assert cfg["Entrypoint"] == ["e"] and cfg["Cmd"] == ["c"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("RUN make", "run is not a valid change command"),
        ("FROM scratch", "from is not a valid change command"),
        ("BOGUS x", "unknown instruction: BOGUS"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV a=b c", "can't find = in 'c'"),
        ("ENV =x", "ENV names can not be blank"),
        ("ENV lonely", "ENV must have two arguments"),
        ("CMD", "CMD requires at least one argument"),
        ("EXPOSE 99999", "invalid port range"),
        ("EXPOSE 80/icmp", "invalid proto"),
        ("EXPOSE http", "invalid containerPort"),
        ("STOPSIGNAL SIGNOPE", "Invalid signal: SIGNOPE"),
        ('LABEL a="unterminated', "matching"),
        ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK --retries=0 CMD true", "--retries must be at least 1 (not 0)"),
        ("HEALTHCHECK --interval=1us CMD true", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK PING x", 'Unknown type "PING" in HEALTHCHECK (try CMD)'),
        ("LABEL k=${X", "missing '}'"),
    ],
)
def test_errors(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        apply_changes([change])
    assert message in str(e.value)


def test_healthcheck_changes() -> None:
    assert apply_changes(["HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x || exit 1"]) \
        == {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f x || exit 1"],
                            "Interval": 90_000_000_000, "Retries": 3}}
    assert apply_changes(['HEALTHCHECK CMD ["true"]', "HEALTHCHECK NONE"]) == \
        {"Healthcheck": {"Test": ["NONE"]}}


def test_blank_and_comment_changes_ignored() -> None:
    assert apply_changes(["", "   ", "# comment"]) == {}


def test_import_config_shape() -> None:
    diff = "sha256:" + "d" * 64
    raw = build_import_config(diff, {"Cmd": ["sh"]}, "Imported from -", "2024-01-02T03:04:05Z")
    cfg = json.loads(raw)
    arch, variant = host_platform()
    keys = ["comment", "created", "config", "architecture"] + (["variant"] if variant else [])
    assert list(cfg) == [*keys, "os", "rootfs", "history"]
    assert cfg["architecture"] == arch and cfg["os"] == "linux"
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [diff]}
    assert cfg["history"] == [{"created": "2024-01-02T03:04:05Z", "comment": "Imported from -"}]
    assert b" " not in raw.replace(b"Imported from -", b"")  # compact, like json.Marshal


def test_host_platform_is_goarch() -> None:
    arch, _ = host_platform()
    assert arch in {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64",
                    "loong64"} or arch
