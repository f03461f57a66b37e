"""``minidock exec``: run a command in a running container (docker exec's flags)."""

from __future__ import annotations

import os

import click

from minidock.cli.runflags import check_tty, env_from_flags
from minidock.cli.shared import paths
from minidock.engine.containers import exec as engine

EXEC_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


@click.command("exec", context_settings=EXEC_CONTEXT)
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables.")
@click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("--trace", "trace_", is_flag=True, help="Print every kernel step to stderr.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container: str, command: tuple[str, ...], interactive: bool,
          tty: bool, detach: bool, env: tuple[str, ...], env_file: tuple[str, ...],
          user: str | None, workdir: str | None, trace_: bool) -> None:
    """Execute a command in a running container."""
    if trace_:
        from minidock.linux import trace

        trace.enable(os.dup(2), "minidock")
    check_tty(interactive and not detach, tty)
    opts = engine.ExecOptions(args=list(command), env=env_from_flags(env, env_file),
                              user=user, workdir=workdir, interactive=interactive and not detach,
                              tty=tty, detach=detach)
    ctx.exit(engine.exec_(paths(ctx), container, opts))
