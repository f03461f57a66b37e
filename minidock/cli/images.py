"""``images``, ``image ls|inspect|rm|import|tag``, ``tag``, ``rmi``, ``import``.

Thin commands: parse, call one engine function, format like docker/cli.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import click

from minidock.cli import paths
from minidock.cli.format import human_size, render, since, table
from minidock.engine import images as engine
from minidock.errors import InvalidArgument, MinidockError
from minidock.image.reference import parse_reference, short_id
from minidock.paths import Paths


def _in_use(p: Paths) -> Callable[[str], list[str]]:
    """Which containers use an image (the containers store answers; none until it exists)."""

    def users(image_id: str) -> list[str]:
        try:
            from minidock.engine import containers  # type: ignore[attr-defined, unused-ignore]
        except ImportError:
            return []
        result: list[str] = containers.users_of_image(p, image_id)
        return result

    return users


# --- images / image ls ---------------------------------------------------------------------


def _matches(summary_ref: str, wanted: str | None) -> bool:
    """``docker images REPOSITORY[:TAG]``: the repository must match, the tag may be a glob."""
    if wanted is None:
        return True
    repo, _, tag = summary_ref.rpartition(":")
    want = parse_reference(wanted)
    if repo != want.familiar_name:
        return False
    return want.tag is None or fnmatchcase(tag, want.tag)


def _list(
    ctx: click.Context, reference: str | None, quiet: bool, all_: bool, no_trunc: bool,
    digests: bool,
) -> None:
    summaries = engine.list_images(paths(ctx), all_images=all_)
    rows: list[list[str]] = []
    for s in summaries:
        image_id = s.id if no_trunc else short_id(s.id)
        created = since(s.created)
        size = human_size(s.size)
        if s.repo_tags:
            pairs = [(t.rpartition(":")[0], t.rpartition(":")[2]) for t in s.repo_tags]
        elif s.repo_digests:
            pairs = [(d.partition("@")[0], "<none>") for d in s.repo_digests]
        else:
            pairs = [("<none>", "<none>")]
        for repo, tag in pairs:
            if reference is not None and (repo == "<none>" or not _matches(f"{repo}:{tag}",
                                                                           reference)):
                continue
            digest = next((d.partition("@")[2] for d in s.repo_digests
                           if d.partition("@")[0] == repo), "<none>")
            row = [repo, tag] + ([digest] if digests else []) + [image_id, created, size]
            rows.append(row)
    if quiet:
        for row in rows:
            click.echo(row[3 if digests else 2])
        return
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + [
        "IMAGE ID", "CREATED", "SIZE"]
    click.echo(table([header, *rows]))


def _list_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("-q", "--quiet", is_flag=True, help="Only show image IDs."),
        click.option("-a", "--all", "all_", is_flag=True,
                     help="Show all images (default hides intermediate images)."),
        click.option("--no-trunc", is_flag=True, help="Don't truncate output."),
        click.option("--digests", is_flag=True, help="Show digests."),
        click.argument("reference", required=False, metavar="[REPOSITORY[:TAG]]"),
    ]):
        f = opt(f)
    return f


@click.command("images")
@_list_options
@click.pass_context
def images(ctx: click.Context, reference: str | None, quiet: bool, all_: bool, no_trunc: bool,
           digests: bool) -> None:
    """List images."""
    _list(ctx, reference, quiet, all_, no_trunc, digests)


@click.command("ls")
@_list_options
@click.pass_context
def image_ls(ctx: click.Context, reference: str | None, quiet: bool, all_: bool,
             no_trunc: bool, digests: bool) -> None:
    """List images."""
    _list(ctx, reference, quiet, all_, no_trunc, digests)


# --- inspect -------------------------------------------------------------------------------


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format output using a template "
              "({{.Field.Sub}} and {{json .Field}} for now).")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def image_inspect(ctx: click.Context, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    p = paths(ctx)
    found: list[dict[str, Any]] = []
    errors: list[MinidockError] = []
    for ref in refs:
        try:
            found.append(engine.inspect_image(p, ref))
        except MinidockError as e:
            errors.append(e)
    if fmt:
        for obj in found:
            click.echo(render(fmt, obj))
    else:
        # docker/cli: json.MarshalIndent(..., "", "    "), an array even for one image
        click.echo(json.dumps(found, indent=4, ensure_ascii=False))
    _raise_all(errors)


def _raise_all(errors: list[MinidockError]) -> None:
    if not errors:
        return
    if len(errors) == 1:
        raise errors[0]
    first = errors[0]
    raise type(first)("\n".join(e.message for e in errors))


# --- tag / rmi -----------------------------------------------------------------------------


@click.command("tag")
@click.argument("source", metavar="SOURCE_IMAGE[:TAG]")
@click.argument("target", metavar="TARGET_IMAGE[:TAG]")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    engine.tag(paths(ctx), source, target)


def _remove(ctx: click.Context, refs: tuple[str, ...], force: bool) -> None:
    p = paths(ctx)
    errors: list[MinidockError] = []
    for ref in refs:
        try:
            for line in engine.remove_image(p, ref, force, _in_use(p)):
                click.echo(line)
        except MinidockError as e:
            errors.append(e)
    _raise_all(errors)


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def rmi(ctx: click.Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    _remove(ctx, refs, force)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def image_rm(ctx: click.Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    _remove(ctx, refs, force)


# --- import --------------------------------------------------------------------------------


@click.command("import")
@click.option("-c", "--change", "changes", multiple=True,
              help="Apply Dockerfile instruction to the created image.")
@click.option("-m", "--message", help="Set commit message for imported image.")
@click.option("--platform", help="Set platform (only this host's platform is supported).")
@click.argument("source", metavar="file|URL|-")
@click.argument("reference", required=False, metavar="[REPOSITORY[:TAG]]")
@click.pass_context
def import_(ctx: click.Context, changes: tuple[str, ...], message: str | None,
            platform: str | None, source: str, reference: str | None) -> None:
    """Import the contents from a tarball to create a filesystem image."""
    if platform:
        arch, variant = engine.host_platform()
        host = f"linux/{arch}" + (f"/{variant}" if variant else "")
        if platform not in (host, f"linux/{arch}"):
            raise InvalidArgument(f"--platform {platform}: only the host platform ({host}) "
                                  "is supported")
    image_id = engine.import_image(paths(ctx), source, reference, list(changes), message)
    click.echo(image_id)


# --- the image group -----------------------------------------------------------------------


@click.group("image")
def image() -> None:
    """Manage images."""


image.add_command(image_ls, "ls")
image.add_command(image_ls, "list")
image.add_command(image_inspect, "inspect")
image.add_command(image_rm, "rm")
image.add_command(import_, "import")
image.add_command(tag, "tag")
