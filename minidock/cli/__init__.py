"""The minidock command line: a click group whose commands load lazily.

``minidock --help`` and ``minidock run`` import only the module of the command they run
(see COMMANDS). :func:`main` is the one error boundary: every MinidockError becomes a one-line
``Error: ...`` on stderr and Docker's exit status (125, or 126/127 when the container's
command cannot be invoked or found); a command returns normally or raises, never exits.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

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
    "top": "observe:top",
    "stats": "observe:stats",
}


#: commands whose second word is a command of its own
GROUPS = ("container", "image", "system", "runtime")


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is invoked."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            mod = importlib.import_module(f"minidock.cli.{module}")
            cmd: click.Command = getattr(mod, attr)
            return cmd
        return super().get_command(ctx, cmd_name)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@click.option("--root", envvar="MINIDOCK_ROOT", help="Data root [/var/lib/minidock].")
@click.option("--run-root", envvar="MINIDOCK_RUN_ROOT", help="Per-boot state [/run/minidock].")
@click.option("--debug", is_flag=True, envvar="MINIDOCK_DEBUG", help="Show tracebacks.")
@click.version_option(package_name="minidock", prog_name="minidock")
@click.pass_context
def cli(ctx: click.Context, root: str | None, run_root: str | None, debug: bool) -> None:
    """A daemonless container engine that shows what containers really are."""
    ctx.obj = Paths.from_env(root, run_root)
    ctx.meta["debug"] = debug


def paths(ctx: click.Context) -> Paths:
    """The Paths object the top-level group built (for commands)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Paths)
    return obj


def confirm_prune(command: str, warning: str, force: bool) -> None:
    """Docker's prune prompt; without a terminal to ask on, -f is required."""
    if force:
        return
    from minidock.errors import InvalidArgument

    if not os.isatty(0):
        raise InvalidArgument(f"{command}: confirmation needed: use -f in scripts")
    click.confirm(f"{warning}\nAre you sure you want to continue?", abort=True)


def echo_pruned(title: str, lines: list[str], reclaimed: int) -> None:
    """What a prune removed, then the space (docker/cli: units.HumanSize, 4 digits)."""
    from minidock.cli.format import human_size

    if lines:
        click.echo(f"{title}:")
        for line in lines:
            click.echo(line)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed, 4)}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of every command but the plain ``run`` (see minidock.entry); the only
    place that exits."""
    from minidock.entry import exit_with, finish

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
