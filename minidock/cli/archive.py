"""``save``, ``load``, ``export`` (and ``image save``/``image load``): thin commands.

The engine work is in minidock.engine.images.archive, imported when a command runs so that
``minidock --help`` stays fast.
"""

from __future__ import annotations

import click

from minidock.cli.shared import paths


@click.command("save")
@click.option("-o", "--output", metavar="FILE", help="Write to a file, instead of STDOUT.")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def save(ctx: click.Context, output: str | None, names: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    from minidock.engine.images import archive

    archive.save_to(paths(ctx), list(names), output)


@click.command("load")
@click.option("-i", "--input", "input_", metavar="FILE",
              help="Read from tar archive file, instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@click.pass_context
def load(ctx: click.Context, input_: str | None, quiet: bool) -> None:
    """Load an image from a tar archive or STDIN."""
    from minidock.engine.images import archive

    # Docker's -q hides the progress bars only; the "Loaded image" lines are always printed.
    del quiet
    for line in archive.load(paths(ctx), input_).lines():
        click.echo(line)


@click.command("export")
@click.option("-o", "--output", metavar="FILE", help="Write to a file, instead of STDOUT.")
@click.argument("container")
@click.pass_context
def export(ctx: click.Context, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from minidock.engine.images import archive

    archive.export_to(paths(ctx), container, output)
