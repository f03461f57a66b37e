"""``top``, ``stats`` and ``port``: what a container does and where it can be reached."""

from __future__ import annotations

import sys

import click

from minidock.cli import format as fmt
from minidock.cli.shared import paths
from minidock.engine.containers import observe
from minidock.errors import MinidockError


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False})
@click.argument("container")
@click.argument("ps_options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, container: str, ps_options: tuple[str, ...]) -> None:
    """Display the running processes of a container (host pids; ps options, default -ef)."""
    try:
        titles, rows = observe.top(paths(ctx), container, " ".join(ps_options) or "-ef")
    except MinidockError as e:
        click.echo(f"Error response from daemon: {e.message}", err=True)
        ctx.exit(1)
    # docker/cli: tabwriter with minwidth 20, padding 3
    text = "\n".join("\t".join(r) for r in [titles, *rows])
    click.echo(fmt.tabwriter(text, minwidth=20, padding=3))


STATS_HEADERS = {
    "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}
# docker/cli's default (cli/command/container/formatter_stats.go)
STATS_TABLE = ("table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t"
               "{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}")

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def bytes_size(size: float) -> str:
    """go-units BytesSize: base 1024, 4 significant digits (``1.367MiB``, ``23.44GiB``)."""
    i = 0
    while size >= 1024 and i < len(_BINARY_UNITS) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{_BINARY_UNITS[i]}"


def stats_row(r: observe.Reading, ref: str, no_trunc: bool) -> dict[str, object]:
    return {
        "Container": ref,
        "ID": r.id if no_trunc else r.id[:12],
        "Name": r.name,
        "CPUPerc": f"{r.cpu_percent:.2f}%",
        "MemUsage": f"{bytes_size(r.memory)} / {bytes_size(r.memory_limit)}",
        "MemPerc": f"{r.memory_percent:.2f}%",
        "NetIO": f"{fmt.human_size(r.net_rx)} / {fmt.human_size(r.net_tx)}",
        "BlockIO": f"{fmt.human_size(r.block_read)} / {fmt.human_size(r.block_write)}",
        "PIDs": str(r.pids),
    }


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Show all containers (default shows just running).")
@click.option("--format", "format_", help="Format output using a custom template.")
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the "
              "first result.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.argument("containers", nargs=-1)
@click.pass_context
def stats(ctx: click.Context, containers: tuple[str, ...], all_: bool, format_: str | None,
          no_stream: bool, no_trunc: bool) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    refs = list(containers)
    while True:
        try:
            readings = observe.stats(paths(ctx), refs, all_=all_)
        except MinidockError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            ctx.exit(1)
        rows = [stats_row(r, refs[i] if refs else r.id[:12], no_trunc)
                for i, r in enumerate(readings)]
        text = fmt.format_rows(format_ or STATS_TABLE, rows, STATS_HEADERS,
                               default_table=STATS_TABLE)
        if no_stream:
            click.echo(text, nl=False)
            return
        # on a terminal, as docker does: clear, home, redraw once a second; into a pipe,
        # one table after another, each flushed as it is made
        if sys.stdout.isatty():
            sys.stdout.write("\033[2J\033[H")
        sys.stdout.write(text)
        sys.stdout.flush()


@click.command()
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_context
def port(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    from minidock.engine import containers as engine
    from minidock.net.ports import port_lines

    try:
        c = engine.get(paths(ctx), container)
    except MinidockError as e:
        click.echo(f"Error: {e.message}", err=True)
        ctx.exit(1)
    ports = c.endpoint.get("Ports") if c.state.running else None
    which = None
    if private_port is not None:
        number, _, proto = private_port.partition("/")
        if not number.isdigit() or int(number) > 0xFFFF:
            click.echo(f"Error: invalid port {private_port!r}: want PRIVATE_PORT[/PROTO], "
                       "such as 80 or 53/udp", err=True)
            ctx.exit(1)
        which = f"{int(number)}/{proto or 'tcp'}"
    lines = port_lines(ports or {}, which)
    if lines is None:
        click.echo(f"Error: No public port '{which}' published for {container}", err=True)
        ctx.exit(1)
    for line in lines:
        click.echo(line)
