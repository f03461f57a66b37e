"""``network create/ls/inspect/rm/prune/connect/disconnect``: Docker's network commands and
output shapes."""

from __future__ import annotations

import json

import click

from minidock.cli import format as fmt
from minidock.cli.shared import confirm_prune, paths
from minidock.engine import networks as engine
from minidock.errors import ClientRefused, MinidockError, NotFound

LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
              "CreatedAt": "CREATED AT"}
LS_TABLE = "table {{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}"


@click.group()
def network() -> None:
    """Manage networks."""


@network.command()
@click.option("--subnet", help="Subnet in CIDR format that represents a network segment.")
@click.option("--gateway", help="IPv4 Gateway for the master subnet.")
@click.option("--internal", is_flag=True, help="Restrict external access to the network.")
@click.option("-d", "--driver", default="bridge", show_default=True,
              help="Driver to manage the Network (bridge only).")
@click.option("-o", "--opt", "opts", multiple=True,
              help="Set driver specific options (com.docker.network.bridge.name=NAME).")
@click.option("--label", "labels", multiple=True, help="Set metadata on a network.")
@click.argument("name")
@click.pass_context
def create(ctx: click.Context, subnet: str | None, gateway: str | None, internal: bool,
           driver: str, opts: tuple[str, ...], labels: tuple[str, ...], name: str) -> None:
    """Create a network."""
    if driver != "bridge":
        _fail(ctx, f"Error response from daemon: plugin \"{driver}\" not found (minidock has "
              "the bridge driver only)")
    try:
        net = engine.create(paths(ctx), name, subnet, gateway, internal,
                            dict(o.partition("=")[::2] for o in opts),
                            dict(lab.partition("=")[::2] for lab in labels))
    except ClientRefused as e:  # what docker's CLI refuses itself: its words alone
        _fail(ctx, e.message)
    except MinidockError as e:
        _fail(ctx, f"Error response from daemon: {e.message}")
    click.echo(net.id)


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("--format", "format_", help="Pretty-print networks using a Go template.")
@click.pass_context
def ls(ctx: click.Context, quiet: bool, no_trunc: bool, format_: str | None) -> None:
    """List networks."""
    nets = engine.all_networks(paths(ctx))
    rows = [{"ID": n.id if no_trunc else n.id[:12], "Name": n.name, "Driver": n.driver,
             "Scope": "local", "IPv6": "false", "Internal": str(n.internal).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.labels or {}).items())),
             "CreatedAt": n.created} for n in nets]
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    click.echo(fmt.format_rows(format_ or LS_TABLE, rows, LS_HEADERS, LS_TABLE[6:]), nl=False)


@network.command()
@click.option("-f", "--format", "format_", help="Format the output using a Go template.")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, format_: str | None, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    docs, missing = [], []
    for ref in refs:
        try:
            docs.append(engine.inspect(paths(ctx), ref))
        except NotFound:
            missing.append(ref)
    if format_:
        for d in docs:
            click.echo(fmt.render(format_, d))
    else:
        click.echo(json.dumps(docs, indent=4))
    for ref in missing:
        click.echo(f"Error: No such network: {ref}", err=True)
    if missing:
        ctx.exit(1)


@network.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    failed = False
    for ref in refs:
        try:
            engine.remove(paths(ctx), ref)
        except NotFound:
            click.echo(f"Error: No such network: {ref}", err=True)
            failed = True
            continue
        except MinidockError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
            continue
        click.echo(ref)
    if failed:
        ctx.exit(1)


@network.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx: click.Context, force: bool) -> None:
    """Remove all unused networks."""
    confirm_prune("network prune", "WARNING! This will remove all custom networks not used "
                  "by at least one container.", force)
    gone = engine.prune(paths(ctx))
    if gone:
        click.echo("Deleted Networks:")
        for name in gone:
            click.echo(name)
        click.echo()


@network.command()
@click.option("--ip", help="IPv4 address (e.g., 172.30.100.104).")
@click.option("--alias", "aliases", multiple=True, help="Add network-scoped alias for the "
              "container.")
@click.argument("ref", metavar="NETWORK")
@click.argument("container")
@click.pass_context
def connect(ctx: click.Context, ip: str | None, aliases: tuple[str, ...], ref: str,
            container: str) -> None:
    """Connect a container to a network."""
    try:
        engine.connect(paths(ctx), ref, container, ip, aliases)
    except MinidockError as e:
        _fail(ctx, f"Error response from daemon: {e.message}")


@network.command()
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect.")
@click.argument("ref", metavar="NETWORK")
@click.argument("container")
@click.pass_context
def disconnect(ctx: click.Context, force: bool, ref: str, container: str) -> None:
    """Disconnect a container from a network."""
    try:
        engine.disconnect(paths(ctx), ref, container)
    except MinidockError as e:
        _fail(ctx, f"Error response from daemon: {e.message}")


network.add_command(ls, "list")
network.add_command(rm, "remove")


def _fail(ctx: click.Context, message: str) -> None:
    """One line on stderr, exit 1: how docker's network commands fail."""
    click.echo(message, err=True)
    ctx.exit(1)
