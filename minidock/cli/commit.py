"""``commit`` and ``diff`` (also ``container commit``/``container diff``): a container's
changes, made into an image or listed. Thin: the work is minidock.engine.images.commit and
minidock.engine.containers.changes, imported when a command runs."""

from __future__ import annotations

import click

from minidock.cli.shared import paths


@click.command("commit")
@click.option("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith '
              '<hannibal@a-team.com>")')
@click.option("-c", "--change", "changes", multiple=True,
              help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", default="", help="Commit message")
@click.option("-p", "--pause", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              show_default=True, help="Pause container during commit")
@click.argument("container")
@click.argument("reference", required=False, metavar="[REPOSITORY[:TAG]]")
@click.pass_context
def commit(ctx: click.Context, author: str, changes: tuple[str, ...], message: str,
           pause: bool, container: str, reference: str | None) -> None:
    """Create a new image from a container's changes."""
    from minidock.engine.images.commit import CommitOptions
    from minidock.engine.images.commit import commit as commit_

    click.echo(commit_(paths(ctx), CommitOptions(
        container=container, reference=reference, message=message, author=author,
        changes=list(changes), pause=pause)))


@click.command("diff")
@click.argument("container")
@click.pass_context
def diff(ctx: click.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem."""
    from minidock.engine.containers.changes import diff as diff_

    for kind, path in diff_(paths(ctx), container):
        click.echo(f"{kind} {path}")
