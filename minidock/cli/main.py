"""The click command line: the top-level group, the table of its lazily loaded commands,
and :func:`main`, the boundary every command but the plain ``run`` passes through.

``minidock --help`` and ``minidock ps`` import only the module of the command they run (see
COMMANDS). :func:`main` is the only place that exits: every MinidockError becomes a one-line
``Error: ...`` on stderr and Docker's exit status (125, or 126/127 when the container's command
cannot be invoked or found), click's usage errors exit 125 as Docker's do; a command returns
normally or raises, never exits.
"""

from __future__ import annotations

import os
import sys

import click

from minidock import __version__
from minidock.cli.boundary import exit_with, finish
from minidock.cli.shared import LazyGroup
from minidock.paths import Paths

# command name -> "module:attribute" (relative to minidock.cli)
COMMANDS: dict[str, str] = {
    "run": "containers:run",
    "create": "containers:create",
    "start": "containers:start",
    "ps": "containers:ps",
    "rm": "containers:rm",
    "inspect": "containers:inspect",
    "exec": "exec:exec_",
    "container": "containers:container",
    "images": "images:images",
    "image": "images:image",
    "tag": "images:tag",
    "rmi": "images:rmi",
    "import": "images:import_",
    "history": "images:history",
    "save": "archive:save",
    "load": "archive:load",
    "export": "archive:export",
    "build": "build:build",
    "commit": "commit:commit",
    "diff": "commit:diff",
    "cp": "commit:cp",
    "pull": "registry:pull",
    "push": "registry:push",
    "login": "registry:login",
    "logout": "registry:logout",
    "info": "system:info",
    "version": "system:version",
    "system": "system:system",
    "runtime": "runtime:runtime",
    "logs": "containers:logs",
    "attach": "containers:attach",
    "stop": "containers:stop",
    "restart": "containers:restart",
    "kill": "containers:kill",
    "wait": "containers:wait_",
    "pause": "containers:pause",
    "unpause": "containers:unpause",
    "rename": "containers:rename",
    "update": "containers:update",
    "top": "observe:top",
    "stats": "observe:stats",
    "port": "observe:port",
    "network": "network:network",
    "volume": "volume:volume",
}


#: commands whose second word is a command of its own
GROUPS = ("container", "image", "system", "runtime", "network", "volume")


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.option("--root", envvar="MINIDOCK_ROOT", help="Data root [/var/lib/minidock].")
@click.option("--run-root", envvar="MINIDOCK_RUN_ROOT", help="Per-boot state [/run/minidock].")
@click.option("--debug", is_flag=True, envvar="MINIDOCK_DEBUG", help="Show tracebacks.")
@click.version_option(__version__, prog_name="minidock")
@click.pass_context
def cli(ctx: click.Context, root: str | None, run_root: str | None, debug: bool) -> None:
    """A daemonless container engine that shows what containers really are."""
    ctx.obj = Paths.from_env(root, run_root)
    ctx.meta["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Run one command line through click (the console script sends every command line
    here but the plain ``run`` it parses itself)."""
    debug = bool(os.environ.get("MINIDOCK_DEBUG")) or "--debug" in (argv or sys.argv)
    try:
        rc = cli.main(args=argv, prog_name="minidock", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        # Docker answers bad flags and arguments with 125, not the 2 of getopt tools.
        e.show()
        sys.exit(125 if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        finish(e.exit_code)
    except (Exception, KeyboardInterrupt) as e:
        exit_with(e, debug, command_name(sys.argv[1:] if argv is None else argv))
    finish(rc if isinstance(rc, int) else 0)



def command_name(argv: list[str]) -> str:
    """The command words of a command line (``image rm``, ``system check``), for an error
    line that must say what was being done."""
    words: list[str] = []
    i = 0
    while i < len(argv) and len(words) < 2:
        arg = argv[i]
        i += 2 if arg in ("--root", "--run-root") else 1
        if arg.startswith("-"):
            continue
        words.append(arg)
        if arg not in GROUPS:
            break
    return " ".join(words)
