"""``volume create/ls/inspect/rm/prune``: Docker's volume commands and output shapes."""

from __future__ import annotations

import json

import click

from minidock.cli import format as fmt
from minidock.cli.shared import confirm_prune, echo_pruned, paths
from minidock.engine import volumes as engine
from minidock.errors import MinidockError, NotFound

LS_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
              "Scope": "SCOPE", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
LS_TABLE = "table {{.Driver}}\\t{{.Name}}"


@click.group()
def volume() -> None:
    """Manage volumes."""


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    return dict(v.partition("=")[::2] for v in values)


@volume.command()
@click.option("-d", "--driver", default="local", show_default=True,
              help="Specify volume driver name (local only).")
@click.option("--label", "labels", multiple=True, help="Set metadata for a volume.")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options.")
@click.option("--name", "name_opt", help="Specify volume name.")
@click.argument("name", required=False)
@click.pass_context
def create(ctx: click.Context, driver: str, labels: tuple[str, ...], opts: tuple[str, ...],
           name_opt: str | None, name: str | None) -> None:
    """Create a volume."""
    if driver != "local":
        _fail(ctx, f'Error response from daemon: error looking up volume plugin {driver}: '
              f'plugin "{driver}" not found')
    try:
        click.echo(engine.create(paths(ctx), name or name_opt, _pairs(labels), _pairs(opts)))
    except MinidockError as e:
        _fail(ctx, f"Error response from daemon: {e.message}")


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option("--format", "format_", help="Pretty-print volumes using a Go template.")
@click.pass_context
def ls(ctx: click.Context, quiet: bool, format_: str | None) -> None:
    """List volumes."""
    rows = [{**v, "Labels": ",".join(f"{k}={val}" for k, val in
                                     sorted((v.get("Labels") or {}).items()))}
            for v in engine.ls(paths(ctx))]
    if quiet:
        for row in rows:
            click.echo(row["Name"])
        return
    click.echo(fmt.format_rows(format_ or LS_TABLE, rows, LS_HEADERS, LS_TABLE[6:]), nl=False)


@volume.command()
@click.option("-f", "--format", "format_", help="Format the output using a Go template.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, format_: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    docs, missing = [], []
    for name in names:
        try:
            docs.append(engine.inspect(paths(ctx), name))
        except NotFound as e:
            missing.append(e.message)
    if format_:
        for d in docs:
            click.echo(fmt.render(format_, d))
    else:
        click.echo(json.dumps(docs, indent=4))
    for message in missing:
        click.echo(f"Error response from daemon: {message}", err=True)
    if missing:
        ctx.exit(1)


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes."""
    failed = False
    for name in names:
        try:
            engine.remove(paths(ctx), name, force)
        except MinidockError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
            continue
        click.echo(name)
    if failed:
        ctx.exit(1)


@volume.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx: click.Context, force: bool) -> None:
    """Remove all unused local volumes."""
    confirm_prune("volume prune", "WARNING! This will remove all local volumes not used by at "
                  "least one container.", force)
    removed, reclaimed = engine.prune(paths(ctx))
    echo_pruned("Deleted Volumes", removed, reclaimed)


volume.add_command(ls, "list")
volume.add_command(rm, "remove")


def _fail(ctx: click.Context, message: str) -> None:
    click.echo(message, err=True)
    ctx.exit(1)
