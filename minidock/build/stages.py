"""A parsed Dockerfile cut into what the classic builder runs: the ARGs before the first
FROM, then stages, each a FROM and the instructions up to the next FROM.

    ARG V=1                  meta arg: a step of its own ("Step 1/5 : ARG V=1"); FROM
    FROM busybox:$V AS b     may use it, a stage sees it only if it declares ARG V again
    RUN ...                  stage 0 ("b"): FROM + its commands
    FROM b                   stage 1: FROM of an earlier stage's name uses its image

``--target NAME`` keeps the stages up to NAME; ``--label`` adds a LABEL step (not expanded)
per label, sorted, at the end of the last stage kept. The step count is every meta arg, every
FROM and every command kept, as the builder's "Step i/N" counts them.
"""

from __future__ import annotations

import re

from minidock.dockerfile.parser import Command
from minidock.errors import InvalidArgument
from minidock.records import field, record

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


@record
class Stage:
    index: int
    name: str  # the AS name, lower case; "" without one
    base: str  # the FROM word as written (expanded from the meta args when the stage runs)
    platform: str  # FROM --platform, as written
    source: Command  # the FROM instruction
    commands: list[Command] = field(default_factory=list)


@record
class Plan:
    meta_args: list[Command]
    stages: list[Stage]

    @property
    def total_steps(self) -> int:
        return len(self.meta_args) + sum(1 + len(s.commands) for s in self.stages)


def _line_error(cmd: Command, message: str) -> InvalidArgument:
    return InvalidArgument(f"Dockerfile parse error line {cmd.start_line}: {message}")


def _stage(index: int, cmd: Command) -> Stage:
    words = list(cmd.value)
    platform = ""
    for flag in cmd.flags:
        name, _, value = flag[2:].partition("=")
        if name != "platform":
            raise _line_error(cmd, f"Unknown flag: {name}")
        platform = value
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise _line_error(cmd, f'invalid name for build stage: "{words[2]}", name can\'t '
                                   "start with a number or contain symbols")
    elif len(words) == 1:
        name = ""
    else:
        raise _line_error(cmd, "FROM requires either one or three arguments")
    return Stage(index, name, words[0], platform, cmd)


def plan(commands: list[Command], target: str | None = None,
         labels: dict[str, str] | None = None) -> Plan:
    """Cut ``commands`` into meta args and stages; refuse what the builder would refuse
    before running anything."""
    meta: list[Command] = []
    stages: list[Stage] = []
    for cmd in commands:
        keyword = cmd.cmd.lower()
        if keyword == "from":
            stage = _stage(len(stages), cmd)
            if stage.name and any(s.name == stage.name for s in stages):
                raise _line_error(cmd, f'duplicate name "{stage.name}"')
            stages.append(stage)
        elif not stages:
            if keyword != "arg":
                raise _line_error(cmd, "no build stage in current context")
            meta.append(cmd)
        else:
            stages[-1].commands.append(cmd)
    if not stages:
        raise InvalidArgument("Dockerfile contains no instructions" if not meta
                              else "no build stage in current context")
    if target:
        wanted = target.lower()
        index = next((s.index for s in stages if s.name == wanted), None)
        if index is None:
            raise InvalidArgument(f"failed to reach build target {target} in Dockerfile")
        stages = stages[:index + 1]
    for key in sorted(labels or {}):
        value = (labels or {})[key]
        line = f"LABEL {key}={value}"
        last = stages[-1].commands[-1] if stages[-1].commands else stages[-1].source
        stages[-1].commands.append(Command("LABEL", None, False, line, last.end_line,
                                           last.end_line, (), (_literal(key),
                                                               _literal(value))))
    return Plan(meta, stages)


def _literal(text: str) -> str:
    """``text`` as a word that quote removal and expansion give back unchanged."""
    return "'" + text.replace("'", "'\\''") + "'"
