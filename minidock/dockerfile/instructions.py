"""One Dockerfile instruction: its keyword and argument forms, applied to an image config.

Two steps, so that ``import -c``, ``commit -c`` and ``build`` share them::

    parse_instruction("EXPOSE 80 53/udp")  -> Instruction("expose", "EXPOSE", "80 53/udp")
    apply_instruction(config, instruction)    config["ExposedPorts"] gets 80/tcp and 53/udp

The argument forms an instruction may take have one parser each: :func:`exec_or_shell`
(``["exec", "form"]`` or a shell string), :func:`name_values` (``k=v k2="v 2"`` or the legacy
``k some value``), :func:`parse_port` and :func:`valid_signal`. Words are expanded with the
Env the config holds *before* the instruction, as Docker does.

:func:`apply_changes` is ``--change``: only the instructions Docker accepts there (its
validCommitCommands), applied in order to a copy of a container config (Docker's keys).
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from typing import Any

from minidock.dockerfile.parser import Command, parse
from minidock.dockerfile.words import process_word, split_words
from minidock.errors import InvalidArgument
from minidock.gofmt import go_duration, go_quote, go_quote_rune, parse_duration
from minidock.records import record

# What docker commit / import accept (moby builder/dockerfile: validCommitCommands).
CHANGE_INSTRUCTIONS = frozenset({
    "cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild", "stopsignal",
    "user", "volume", "workdir",
})
INSTRUCTIONS = CHANGE_INSTRUCTIONS | {"add", "arg", "copy", "from", "maintainer", "run", "shell"}
# The container config's keys in Docker's (Go struct) order.
CONFIG_ORDER = (
    "User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes", "WorkingDir",
    "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell",
)


@record(frozen=True)
class Instruction:
    name: str  # the keyword, lower case: "cmd", "env", ...
    keyword: str  # the keyword as written, for messages
    args: str  # the rest of the line, stripped, not yet split or expanded


def parse_instruction(line: str, lineno: int = 1) -> Instruction | None:
    """The instruction on ``line``; None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    keyword, _, rest = line.partition(" ")
    name = keyword.lower()
    if name not in INSTRUCTIONS:
        raise InvalidArgument(f"dockerfile parse error on line {lineno}: unknown instruction: "
                              f"{keyword.upper()}")
    return Instruction(name, keyword, rest.strip())


# --- argument forms ------------------------------------------------------------------------


def env_map(config: dict[str, Any]) -> dict[str, str]:
    """The config's ``Env`` list as a mapping (the variables words expand from)."""
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def json_list(args: str) -> list[str] | None:
    """The JSON form ``["a", "b"]`` of an argument list; None if ``args`` is not one."""
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def exec_or_shell(args: str) -> list[str]:
    """CMD / ENTRYPOINT: the exec form as given, or the shell form under /bin/sh -c."""
    exec_form = json_list(args)
    if exec_form is not None:
        return exec_form
    # Shell form runs under the default SHELL; the string is kept verbatim (no expansion).
    return ["/bin/sh", "-c", args]


def name_values(keyword: str, args: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """ENV / LABEL arguments: ``k=v k2="v 2"`` or the legacy ``k value with spaces``."""
    words = split_words(args)
    if not words:
        raise InvalidArgument(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        key, value = ([*re.split(r"\s+", args.strip(), maxsplit=1), ""])[:2]
        if not value:
            raise InvalidArgument(f"{keyword} must have two arguments")
        return [(process_word(key, env), process_word(value, env))]
    pairs = []
    for word in words:
        if "=" not in word:
            raise InvalidArgument(f"Syntax error - can't find = in {word!r}. Must be of the "
                                  "form: name=value")
        key, _, value = word.partition("=")
        key = process_word(key, env)
        if not key:
            raise InvalidArgument(f"{keyword} names can not be blank")
        pairs.append((key, process_word(value, env)))
    return pairs


def parse_port(spec: str) -> list[str]:
    """EXPOSE's ``80``, ``53/udp``, ``8000-8002/tcp`` -> ``["8000/tcp", ...]``."""
    port, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    lo, sep, hi = port.partition("-")
    try:
        start = int(lo)
        end = int(hi) if sep else start
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not (0 < start <= end <= 65535):
        raise InvalidArgument(f"invalid port range: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def valid_signal(value: str) -> bool:
    """STOPSIGNAL: a number 1-64, or a name with or without SIG (``SIGRTMIN+3`` too)."""
    if value.isdigit():
        return 0 < int(value) < 65
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return isinstance(getattr(signal, name, None), signal.Signals)


_MIN_DURATION = 1_000_000  # 1ms: a HEALTHCHECK duration below it is refused


def instruction_flags(cmd: Command, known: dict[str, str | None]) -> dict[str, str]:
    """The ``--name=value`` flags of ``cmd``: ``known`` maps each name it takes to its
    default (None: a boolean flag, "true" when given bare)."""
    out: dict[str, str] = {}
    for flag in cmd.flags:
        name, eq, value = flag[2:].partition("=")
        if name not in known:
            raise InvalidArgument(f"Unknown flag: {name}")
        if not eq:
            if known[name] is not None:
                raise InvalidArgument(f"Missing a value on flag: {name}")
            value = "true"
        if name in out:
            raise InvalidArgument(f"Duplicate flag specified: {name}")
        out[name] = value
    return out


def healthcheck(cmd: Command) -> dict[str, Any]:
    """HEALTHCHECK's config (Docker's HealthConfig keys; zero values left out, as Go does)."""
    flags = instruction_flags(cmd, {"interval": "", "timeout": "", "start-period": "",
                                    "retries": ""})
    if not cmd.value:
        raise InvalidArgument("HEALTHCHECK requires an argument")
    kind, args = cmd.value[0].upper(), list(cmd.value[1:])
    if kind == "NONE":
        if args:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise InvalidArgument(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not args or args == [""]:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    health: dict[str, Any] = {"Test": ["CMD" if cmd.json else "CMD-SHELL", *args]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod")):
        text = flags.get(flag, "")
        if not text:
            continue
        try:
            ns = parse_duration(text)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        if ns < _MIN_DURATION:
            raise InvalidArgument(f'Interval "{flag}" cannot be less than 1ms')
        health[key] = ns
    if flags.get("retries"):
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise InvalidArgument(f'strconv.ParseInt: parsing "{flags["retries"]}": invalid '
                                  "syntax") from None
        if retries < 1:
            raise InvalidArgument(f"--retries must be at least 1 (not {retries})")
        health["Retries"] = retries
    return health


def health_q(health: dict[str, Any]) -> str:
    """Go's ``%q`` of a *HealthConfig, as the history line shows it."""
    test = "[" + " ".join(go_quote(t) for t in health.get("Test") or []) + "]"
    durations = " ".join(go_quote(go_duration(int(health.get(k) or 0)))
                         for k in ("Interval", "Timeout", "StartPeriod"))
    return "&{" + f"{test} {durations} {go_quote_rune(int(health.get('Retries') or 0))}" + "}"


# --- applying ------------------------------------------------------------------------------


def apply_instruction(cfg: dict[str, Any], ins: Instruction,
                      env: dict[str, str] | None = None) -> None:
    """Apply ``ins`` to the container config ``cfg`` in place.

    Words expand from ``env``, by default the config's Env as it is before ``ins``.
    """
    rest = ins.args
    upper = ins.name.upper()
    env = env_map(cfg) if env is None else env
    if ins.name in ("cmd", "entrypoint"):
        if not rest:
            raise InvalidArgument(f"{upper} requires at least one argument")
        cfg["Cmd" if ins.name == "cmd" else "Entrypoint"] = exec_or_shell(rest)
    elif ins.name == "env":
        current = list(cfg.get("Env") or [])
        for key, value in name_values(upper, rest, env):
            entry = f"{key}={value}"
            for idx, old in enumerate(current):
                if old.partition("=")[0] == key:
                    current[idx] = entry
                    break
            else:
                current.append(entry)
        cfg["Env"] = current
    elif ins.name == "label":
        labels = dict(cfg.get("Labels") or {})
        for key, value in name_values(upper, rest, env):
            labels[key] = value
        cfg["Labels"] = labels
    elif ins.name == "expose":
        words = [process_word(w, env) for w in split_words(rest)]
        if not words:
            raise InvalidArgument("EXPOSE requires at least one argument")
        ports = dict(cfg.get("ExposedPorts") or {})
        for word in words:
            for port in parse_port(word):
                ports[port] = {}
        cfg["ExposedPorts"] = ports
    elif ins.name == "workdir":
        if not rest:
            raise InvalidArgument("WORKDIR requires exactly one argument")
        path = process_word(rest, env)
        if not path.startswith("/"):
            path = posixpath.join(cfg.get("WorkingDir") or "/", path)
        # normpath keeps a leading "//" (POSIX allows it to mean something); we do not.
        cfg["WorkingDir"] = "/" + posixpath.normpath(path).lstrip("/")
    elif ins.name == "user":
        if not rest:
            raise InvalidArgument("USER requires exactly one argument")
        cfg["User"] = process_word(rest, env)
    elif ins.name == "stopsignal":
        sig = process_word(rest, env)
        if not sig or not valid_signal(sig):
            raise InvalidArgument(f"Invalid signal: {sig}")
        cfg["StopSignal"] = sig
    elif ins.name == "volume":
        vols = json_list(rest)
        if vols is None:
            vols = [process_word(w, env) for w in split_words(rest)]
        if not vols:
            raise InvalidArgument("VOLUME requires at least one argument")
        volumes = dict(cfg.get("Volumes") or {})
        for v in vols:
            if not v.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            volumes[v.strip()] = {}
        cfg["Volumes"] = volumes
    elif ins.name == "onbuild":
        trigger = rest.partition(" ")[0].lower()
        if not trigger:
            raise InvalidArgument("ONBUILD requires at least one argument")
        if trigger in ("onbuild", "from", "maintainer"):
            raise InvalidArgument(f"{trigger.upper()} isn't allowed as an ONBUILD trigger")
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
    elif ins.name == "healthcheck":
        cfg["Healthcheck"] = healthcheck(parse("HEALTHCHECK " + rest)[0])
    else:  # RUN, COPY, SHELL...: a build's steps, not applied to a config here (yet)
        raise InvalidArgument(f"{upper} cannot be applied to an image config")


def apply_changes(changes: list[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply ``--change`` Dockerfile instructions to a container config (Docker's keys).

    Returns a new dict (keys in Docker's order) holding only what is set.
    """
    cfg: dict[str, Any] = json.loads(json.dumps(config or {}))
    for change in changes:
        ins = parse_instruction(change)
        if ins is None:
            continue
        if ins.name not in CHANGE_INSTRUCTIONS:
            raise InvalidArgument(f"{ins.name} is not a valid change command")
        apply_instruction(cfg, ins)
    ordered = {k: cfg[k] for k in CONFIG_ORDER if k in cfg}
    ordered.update({k: v for k, v in cfg.items() if k not in ordered})
    return ordered
