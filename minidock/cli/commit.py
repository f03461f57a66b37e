"""``commit``, ``diff`` and ``cp`` (also under ``container``): a container's changes made into
an image or listed, and files copied in or out. Thin: the work is minidock.engine.images.commit,
minidock.engine.containers.changes and minidock.engine.containers.cp, imported when a command
runs."""

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


def _split_container_path(arg: str) -> tuple[str, str] | None:
    """``CONTAINER:PATH`` -> (container, path); None for a local path (one that starts with
    / or ., or has no colon), as Docker's CLI tells them apart."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None
    name, _, path = arg.partition(":")
    return name, path


@click.command("cp")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.argument("src", metavar="SRC_PATH")
@click.argument("dst", metavar="DEST_PATH")
@click.pass_context
def cp(ctx: click.Context, archive: bool, follow_link: bool, src: str, dst: str) -> None:
    """Copy files/folders between a container and the local filesystem.

    CONTAINER:SRC_PATH DEST_PATH|-  or  SRC_PATH|- CONTAINER:DEST_PATH
    """
    from minidock.engine.containers import cp as engine
    from minidock.errors import InvalidArgument

    del archive  # ownership is kept either way, as docker 20.10's daemon does
    source, dest = _split_container_path(src), _split_container_path(dst)
    if (source is None) == (dest is None):
        raise InvalidArgument("copying between containers is not supported" if source
                              else "must specify at least one container source")
    if source is not None:
        engine.copy_from(paths(ctx), source[0], source[1], dst, follow_link=follow_link)
    elif dest is not None:
        engine.copy_to(paths(ctx), dest[0], src, dest[1], follow_link=follow_link)
