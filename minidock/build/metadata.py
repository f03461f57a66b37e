"""The build instructions that change only the image config, and the history line of each.

The classic builder records such a step as an image with ``empty_layer`` whose
``created_by`` is the stage's SHELL, then ``#(nop) ``, then a comment (two spaces in the
line: the comment is a word of its own); WORKDIR alone writes ``#(nop) WORKDIR /dir`` as one
word (one space). What the comments say, as docker 20.10 writes them::

    ENV A=1 B=two words        values after quote removal and expansion, each seeing the env
                               from before the instruction
    LABEL a=1 b c=d e          the same for keys and values
    ARG V=3 / ARG NOVAL        MAINTAINER x / USER u:g / STOPSIGNAL SIGKILL (as expanded)
    EXPOSE 443 53/udp 80       the ports as written, sorted
    VOLUME [/data /logs]       Go's %v of the list
    SHELL [/bin/sh -ec]        (and from then on every line starts with that shell)
    CMD ["nginx" "-g" "x"]     Go's %q of the list (no commas); the shell form is shown with
                               the shell prepended, as it is stored
    ONBUILD RUN echo hi        the trigger as written
    WORKDIR /tmp/rel/dir       the resolved directory
    HEALTHCHECK &{["CMD-SHELL" "x"] "30s" "0s" "0s" '\x03'}
                               Go's %q of the *HealthConfig: Test, Interval, Timeout,
                               StartPeriod (Duration strings), Retries (an int as a rune)

Build args (moby ``BuildArgs``): an ARG declares a name in its stage; its value is the
--build-arg one if given, else its default, else (no default) the value of the same ARG
before the first FROM. The proxy names (HTTP_PROXY and friends) need no ARG. A RUN sees the
declared args that have a value and are not shadowed by ENV as variables.

Checked against docker 20.10's history of a build (tests/unit/test_build_metadata.py).
"""

from __future__ import annotations

import posixpath

from minidock.dockerfile.instructions import health_q, healthcheck, parse_port, valid_signal
from minidock.dockerfile.parser import Command
from minidock.dockerfile.words import process_word
from minidock.errors import InvalidArgument
from minidock.gofmt import go_quote
from minidock.records import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SHELL = ("/bin/sh", "-c")
#: what this module applies; RUN, COPY, ADD and FROM are steps of their own
METADATA = frozenset({"env", "label", "maintainer", "arg", "user", "expose", "volume",
                      "stopsignal", "shell", "onbuild", "cmd", "entrypoint", "workdir",
                      "healthcheck"})
#: build args every Dockerfile may be given without declaring them (moby builtinAllowedBuildArgs)
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


@record
class StageState:
    """What a stage has set so far: the image config (Docker's keys), the build args it
    declared, whether CMD was set in this stage (ENTRYPOINT clears an inherited one
    otherwise) and MAINTAINER (the image's author)."""

    config: dict[str, Any] = field(default_factory=dict)
    args: dict[str, str | None] = field(default_factory=dict)  # declared here: name -> default
    cmd_set: bool = False
    author: str = ""
    options: dict[str, str | None] = field(default_factory=dict)  # --build-arg
    meta: dict[str, str | None] = field(default_factory=dict)  # ARGs before the first FROM
    referenced: set[str] = field(default_factory=set)  # every ARG name the build declared

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def _arg(self, key: str, mapping: dict[str, str | None]) -> str | None:
        if self.options.get(key) is not None:
            return self.options[key]
        default = mapping.get(key)
        if default is None:
            return self.meta.get(key)
        return default

    def allowed_args(self) -> dict[str, str]:
        """The build args of this stage that have a value (proxy args included)."""
        out = {}
        for key in sorted({*self.args, *PROXY_ARGS}):
            value = self._arg(key, self.args)
            if value is not None:
                out[key] = value
        return out

    def meta_args(self) -> dict[str, str]:
        """What FROM expands from: the ARGs before the first FROM, with --build-arg."""
        out = {}
        for key in sorted({*self.meta, *PROXY_ARGS}):
            value = self._arg(key, self.meta)
            if value is not None:
                out[key] = value
        return out

    def env_keys(self) -> set[str]:
        return {str(e).partition("=")[0] for e in self.config.get("Env") or []}

    def run_args(self) -> list[str]:
        """``K=V`` of the build args a RUN gets as variables (those ENV does not shadow)."""
        shadowed = self.env_keys()
        return [f"{k}={v}" for k, v in self.allowed_args().items() if k not in shadowed]

    def run_prefix(self, run_args: list[str]) -> list[str]:
        """What a RUN's history line (and cache key) starts with when build args are in
        play: ``|N K=V ...``, the proxy args left out unless declared."""
        shown = sorted(a for a in run_args
                       if a.partition("=")[0] in self.args or
                       a.partition("=")[0] not in PROXY_ARGS)
        return [f"|{len(shown)}", *shown]

    def env(self) -> dict[str, str]:
        """The variables words expand from: the declared build args, then Env over them."""
        out = dict(self.allowed_args())
        for item in self.config.get("Env") or []:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out


def history_words(shell: list[str], comment: str, keyword: str) -> list[str]:
    """The Cmd a config-only step records (its container_config's, the cache key); the
    history line is these words joined by spaces. WORKDIR (and COPY/ADD) glue the comment
    to ``#(nop) ``, the rest keep it a word of its own."""
    if keyword in ("workdir", "copy", "add"):
        return [*shell, "#(nop) " + comment]
    return [*shell, "#(nop) ", comment]


def _pairs(cmd: Command, env: dict[str, str]) -> list[tuple[str, str]]:
    values = list(cmd.value)
    if not values:
        raise InvalidArgument(f"{cmd.cmd.upper()} requires at least one argument")
    return [(process_word(values[i], env, cmd.escape),
             process_word(values[i + 1], env, cmd.escape)) for i in range(0, len(values), 2)]


def _command_line(cmd: Command, state: StageState) -> list[str]:
    if not cmd.value:
        raise InvalidArgument(f"{cmd.cmd.upper()} requires at least one argument")
    return list(cmd.value) if cmd.json else [*state.shell, cmd.value[0]]


def apply(state: StageState, cmd: Command) -> str:
    """Apply the config-only instruction ``cmd`` to ``state``; its history line."""
    return " ".join(apply_words(state, cmd))


def apply_words(state: StageState, cmd: Command) -> list[str]:
    """Apply the config-only instruction ``cmd`` to ``state``; the Cmd it records."""
    name = cmd.cmd.lower()
    cfg = state.config
    env = state.env()
    if name == "env":
        pairs = _pairs(cmd, env)
        current = list(cfg.get("Env") or [])
        for key, value in pairs:
            entry = f"{key}={value}"
            keys = [e.partition("=")[0] for e in current]
            if key in keys:
                current[keys.index(key)] = entry
            else:
                current.append(entry)
        cfg["Env"] = current
        comment = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    elif name == "label":
        pairs = _pairs(cmd, env)
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(pairs)}
        comment = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    elif name == "maintainer":
        state.author = cmd.value[0] if cmd.value else ""
        comment = "MAINTAINER " + state.author
    elif name == "arg":
        words = [process_word(w, env, cmd.escape) for w in cmd.value]
        if len(words) != 1:
            raise InvalidArgument("ARG requires exactly one argument")
        key, eq, default = words[0].partition("=")
        state.args[key] = default if eq else state.args.get(key)
        state.referenced.add(key)
        comment = "ARG " + words[0]
    elif name in ("user", "stopsignal"):
        value = process_word(cmd.value[0], env, cmd.escape) if cmd.value else ""
        if not value:
            raise InvalidArgument(f"{cmd.cmd.upper()} requires exactly one argument")
        if name == "stopsignal" and not valid_signal(value):
            raise InvalidArgument(f"Invalid signal: {value}")
        cfg["User" if name == "user" else "StopSignal"] = value
        comment = f"{cmd.cmd.upper()} {value}"
    elif name == "expose":
        ports = sorted(process_word(w, env, cmd.escape) for w in cmd.value)
        if not ports:
            raise InvalidArgument("EXPOSE requires at least one argument")
        exposed = dict(cfg.get("ExposedPorts") or {})
        for port in ports:
            exposed.update({p: {} for p in parse_port(port)})
        cfg["ExposedPorts"] = exposed
        comment = "EXPOSE " + " ".join(ports)
    elif name == "volume":
        vols = list(cmd.value) if cmd.json else \
            [process_word(w, env, cmd.escape) for w in cmd.value]
        if not vols or any(not v.strip() for v in vols):
            raise InvalidArgument("VOLUME specified can not be an empty string")
        cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{v: {} for v in vols}}
        comment = "VOLUME [" + " ".join(vols) + "]"
    elif name == "shell":
        if not cmd.json or not cmd.value:
            raise InvalidArgument("SHELL requires the arguments to be in JSON form")
        cfg["Shell"] = list(cmd.value)
        comment = "SHELL [" + " ".join(cmd.value) + "]"
    elif name == "onbuild":
        trigger = cmd.original.split(None, 1)[1] if " " in cmd.original.strip() else ""
        if not trigger:
            raise InvalidArgument("ONBUILD requires at least one argument")
        if (cmd.sub_cmd or "").lower() in ("onbuild", "from", "maintainer"):
            raise InvalidArgument(f"{(cmd.sub_cmd or '').upper()} isn't allowed as an "
                                  "ONBUILD trigger")
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
        comment = "ONBUILD " + trigger
    elif name in ("cmd", "entrypoint"):
        line = _command_line(cmd, state)
        if name == "cmd":
            cfg["Cmd"] = line
            state.cmd_set = True
        else:
            cfg["Entrypoint"] = line
            if not state.cmd_set:
                cfg["Cmd"] = None  # an inherited CMD goes with a new ENTRYPOINT
        comment = f"{cmd.cmd.upper()} [" + " ".join(go_quote(a) for a in line) + "]"
    elif name == "workdir":
        path = process_word(cmd.value[0], env, cmd.escape) if cmd.value else ""
        if not path:
            raise InvalidArgument("WORKDIR requires exactly one argument")
        if not path.startswith("/"):
            path = posixpath.join(cfg.get("WorkingDir") or "/", path)
        cfg["WorkingDir"] = "/" + posixpath.normpath(path).lstrip("/")
        comment = "WORKDIR " + cfg["WorkingDir"]
    elif name == "healthcheck":
        health = healthcheck(cmd)
        comment = "HEALTHCHECK " + health_q(health)
        # What the image had fills what this one leaves at zero, after the history line
        # was written (docker 20.10's daemon merges the image's config into the step's
        # container config, and the healthcheck it changes is shared with the build's)
        for key, value in (cfg.get("Healthcheck") or {}).items():
            health.setdefault(key, value)
        cfg["Healthcheck"] = health
    else:
        raise InvalidArgument(f"{cmd.cmd.upper()} does not only change the image config")
    return history_words(state.shell, comment, name)
