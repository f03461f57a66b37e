"""``build`` without click: its flag table, a parser for its plain forms (the console
script's fast path, as :mod:`minidock.cli.runflags` is for ``run``) and what both paths do
with the flags (:func:`build_command`).

The parser takes ``[GLOBAL...] build [OPTIONS] PATH``, with the options before PATH and each
short flag on its own; anything else (``--help``, an unknown flag, a missing value, options
after PATH) is left to the click command. ``--rm`` alone means true, as Docker's bool flag
(click, declaring it with a value, would take the next word). tests/unit/test_buildflags.py
checks both parsers give the same values on a corpus of command lines.
"""

from __future__ import annotations

import os

from minidock.cli.runflags import flag_table, split_globals
from minidock.errors import InvalidArgument, MinidockError
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

# what `minidock build` declares with click
_BUILD_FLAGS = flag_table((
    (("-t", "--tag"), "tags", True, True),
    (("-f", "--file"), "dockerfile", True, False),
    (("--build-arg",), "build_args", True, True),
    (("--no-cache",), "no_cache", False, False),
    (("--pull",), "pull", False, False),
    (("--target",), "target", True, False),
    (("-q", "--quiet"), "quiet", False, False),
    (("--network",), "network", True, False),
    (("--label",), "labels", True, True),
    (("--rm",), "remove", True, False),  # --rm or --rm=BOOL
    (("--force-rm",), "force_rm", False, False),
    (("--iidfile",), "iidfile", True, False),
    (("--trace",), "trace_", False, False),
))

BUILD_DEFAULTS: dict[str, Any] = {
    "tags": (), "dockerfile": None, "build_args": (), "no_cache": False, "pull": False,
    "target": None, "quiet": False, "network": "default", "labels": (), "remove": True,
    "force_rm": False, "iidfile": None, "trace_": False,
}
_BOOL = {"true": True, "1": True, "false": False, "0": False}


def parse_build(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``[GLOBAL...] build [OPTIONS] PATH`` -> (globals, build parameters), or None."""
    split = split_globals(argv, "build")
    if split is None:
        return None
    glob, args = split
    params: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v
                              for k, v in BUILD_DEFAULTS.items()}
    j = 0
    while j < len(args) - 1:
        name, eq, value = args[j].partition("=")
        spec = _BUILD_FLAGS.get(name)
        if spec is None or (eq and not name.startswith("--")):
            return None
        param, takes, multi = spec
        if not takes:
            if eq:
                return None
            params[param] = True
        else:
            if not eq and param == "remove":
                params[param] = True  # docker's bool flag: bare --rm is true (click would
                j += 1                # take the next word as its value)
                continue
            if not eq:
                j += 1
                if j >= len(args) - 1:
                    return None
                value = args[j]
            if param == "remove":
                if value.lower() not in _BOOL:
                    return None
                params[param] = _BOOL[value.lower()]
            elif multi:
                params[param].append(value)
            else:
                params[param] = value
        j += 1
    if j != len(args) - 1 or (args[j].startswith("-") and args[j] != "-"):
        return None
    params["context"] = args[j]
    return glob, {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def _pairs(values: tuple[str, ...], env_fallback: bool) -> dict[str, str | None]:
    """``K=V`` flags as a mapping; a bare ``K`` takes the caller's environment value when
    ``env_fallback`` (docker's --build-arg), else the empty string."""
    out: dict[str, str | None] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if eq:
            out[key] = value
        elif env_fallback:
            out[key] = os.environ.get(key)
        else:
            out[key] = ""
    return out


def build_command(paths: Paths, context: str, tags: tuple[str, ...], dockerfile: str | None,
                  build_args: tuple[str, ...], no_cache: bool, pull: bool, target: str | None,
                  quiet: bool, network: str, labels: tuple[str, ...], remove: bool,
                  force_rm: bool, iidfile: str | None, trace_: bool) -> int:
    """`build`: its exit status once the image is built (its id printed with -q)."""
    if trace_:
        from minidock.linux import trace

        trace.enable(os.dup(2), "minidock")
    # flag values are the CLI's to refuse (exit 125); the build's own refusals exit 1
    from minidock.image.reference import parse_tagged

    for arg in build_args:
        if arg.startswith("="):
            raise InvalidArgument(f'invalid argument "{arg}" for "--build-arg" flag: invalid '
                                  f"environment variable: {arg}")
    for tag in tags:
        try:
            parse_tagged(tag)
        except MinidockError as e:
            raise InvalidArgument(f'invalid argument "{tag}" for "-t, --tag" flag: '
                                  f"{e.message}") from None
    if network not in ("default", "bridge", "none", "host"):
        raise InvalidArgument(f"network {network} not found (supported: default, bridge, "
                              "none, host)")
    from minidock.build.builder import BuildOptions, build

    try:
        image_id = build(paths, BuildOptions(
            context=context, dockerfile=dockerfile, tags=list(tags),
            build_args=_pairs(build_args, True), no_cache=no_cache, pull=pull, target=target,
            quiet=quiet, network=network,
            labels={k: v or "" for k, v in _pairs(labels, False).items()},
            remove=remove, force_remove=force_rm))
    except MinidockError as e:
        if e.exit_code == 125:
            e.exit_code = 1  # docker build exits 1 for what it refuses, 125 is run's
        raise
    if iidfile:
        with open(iidfile, "w") as f:
            f.write(image_id)
    if quiet:
        print(image_id, flush=True)
    return 0
