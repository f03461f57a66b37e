"""``images``, ``image ls|inspect|rm|import|tag|history|prune``, ``tag``, ``rmi``, ``import``,
``history``.

Thin commands: parse, call one engine function, format like docker/cli.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import click

from minidock.cli import archive
from minidock.cli.build import build
from minidock.cli.format import format_rows, human_size, parse_rfc3339, render, since
from minidock.cli.shared import confirm_prune, echo_pruned, paths
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

IMAGE_HEADERS = {
    "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
    "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}
# docker/cli's defaults (cli/command/formatter/image.go)
IMAGES_TABLE = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
IMAGES_TABLE_DIGESTS = ("table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t"
                        "{{.CreatedSince}}\\t{{.Size}}")


def _matches(summary_ref: str, wanted: str | None) -> bool:
    """``docker images REPOSITORY[:TAG]``: the repository must match, the tag may be a glob."""
    if wanted is None:
        return True
    repo, _, tag = summary_ref.rpartition(":")
    want = parse_reference(wanted)
    if repo != want.familiar_name:
        return False
    return want.tag is None or fnmatchcase(tag, want.tag)


def go_time_string(value: str) -> str:
    """Go's time.Unix(created, 0).String() in local time: ``2024-01-02 03:04:05 +0000 UTC``."""
    t = parse_rfc3339(value)
    if t is None:
        return ""
    local = time.localtime(int(t))
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", local)


def _image_rows(summaries: list[engine.ImageSummary], reference: str | None,
                no_trunc: bool) -> list[dict[str, Any]]:
    """One row per (repository, tag) as docker/cli's imageContext, dangling ones as <none>."""
    rows: list[dict[str, Any]] = []
    for s in summaries:
        image_id = s.id if no_trunc else short_id(s.id)
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
            rows.append({
                "ID": image_id, "Repository": repo, "Tag": tag, "Digest": digest,
                "CreatedSince": since(s.created), "CreatedAt": go_time_string(s.created),
                "Size": human_size(s.size), "Containers": "N/A",
                "VirtualSize": human_size(s.size), "SharedSize": "N/A", "UniqueSize": "N/A",
            })
    return rows


def _list(
    ctx: click.Context, reference: str | None, quiet: bool, all_: bool, no_trunc: bool,
    digests: bool, filters: tuple[str, ...] = (), fmt: str | None = None,
) -> None:
    p = paths(ctx)
    parsed = engine.parse_filters(filters, engine.IMAGE_FILTERS)
    summaries = engine.filter_images(p, engine.list_images(p, all_images=all_), parsed)
    rows = _image_rows(summaries, reference, no_trunc)
    default = IMAGES_TABLE_DIGESTS if digests else IMAGES_TABLE
    if quiet:
        template = "{{.ID}}"
    elif fmt:
        template = fmt
    else:
        template = default
    click.echo(format_rows(template, rows, IMAGE_HEADERS, default_table=default), nl=False)


def _list_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("-q", "--quiet", is_flag=True, help="Only show image IDs."),
        click.option("-a", "--all", "all_", is_flag=True,
                     help="Show all images (default hides intermediate images)."),
        click.option("--no-trunc", is_flag=True, help="Don't truncate output."),
        click.option("--digests", is_flag=True, help="Show digests."),
        click.option("-f", "--filter", "filters", multiple=True,
                     help="Filter output based on conditions provided (dangling=true|false, "
                          "reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE])."),
        click.option("--format", "fmt", help="Format output using a custom template: 'table', "
                     "'table TEMPLATE' or a Go template."),
        click.argument("reference", required=False, metavar="[REPOSITORY[:TAG]]"),
    ]):
        f = opt(f)
    return f


@click.command("images")
@_list_options
@click.pass_context
def images(ctx: click.Context, reference: str | None, quiet: bool, all_: bool, no_trunc: bool,
           digests: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List images."""
    _list(ctx, reference, quiet, all_, no_trunc, digests, filters, fmt)


@click.command("ls")
@_list_options
@click.pass_context
def image_ls(ctx: click.Context, reference: str | None, quiet: bool, all_: bool,
             no_trunc: bool, digests: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List images."""
    _list(ctx, reference, quiet, all_, no_trunc, digests, filters, fmt)


# --- history -------------------------------------------------------------------------------

HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
HISTORY_TABLE = ("table {{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t"
                 "{{.Comment}}")


def _history_rows(entries: list[engine.HistoryEntry], human: bool,
                  no_trunc: bool) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        created_by = " ".join(e.created_by.replace("\t", " ").split("\n"))
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"  # docker/cli's Ellipsis(createdBy, 45)
        image_id = e.id if no_trunc or e.id == "<missing>" else short_id(e.id)
        rows.append({
            "ID": image_id,
            "CreatedSince": since(e.created) if human else go_time_rfc3339(e.created),
            "CreatedAt": go_time_rfc3339(e.created),
            "CreatedBy": created_by,
            "Size": human_size(e.size) if human else str(e.size),
            "Comment": e.comment,
        })
    return rows


def go_time_rfc3339(value: str) -> str:
    """Go's time.Format(time.RFC3339) in local time: ``2024-01-02T03:04:05Z``."""
    t = parse_rfc3339(value)
    if t is None:
        return ""
    local = time.localtime(int(t))
    offset = time.strftime("%z", local)
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone


@click.command("history")
@click.option("-H", "--human", type=click.BOOL, default=True, show_default=True, is_flag=False,
              flag_value=True,
              help="Print sizes and dates in human readable format.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--format", "fmt", help="Format output using a custom template.")
@click.argument("ref", metavar="IMAGE")
@click.pass_context
def history(ctx: click.Context, human: bool, no_trunc: bool, quiet: bool, fmt: str | None,
            ref: str) -> None:
    """Show the history of an image."""
    entries = engine.image_history(paths(ctx), ref)
    rows = _history_rows(entries, human, no_trunc)
    template = "{{.ID}}" if quiet else (fmt or HISTORY_TABLE)
    click.echo(format_rows(template, rows, HISTORY_HEADERS, default_table=HISTORY_TABLE),
               nl=False)


# --- prune ---------------------------------------------------------------------------------


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove all unused images, not just dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True,
              help="Provide filter values (e.g. 'until=24h', 'label=KEY[=VALUE]').")
@click.pass_context
def image_prune(ctx: click.Context, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images."""
    parsed = engine.parse_filters(filters, engine.PRUNE_FILTERS)
    confirm_prune("image prune",
                  "WARNING! This will remove all images without at least one container "
                  "associated to them." if all_ else
                  "WARNING! This will remove all dangling images.", force)
    p = paths(ctx)
    lines, reclaimed = engine.prune_images(p, all_, _in_use(p), parsed)
    echo_pruned("Deleted Images", lines, reclaimed)


# --- inspect -------------------------------------------------------------------------------


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format output using a Go template "
              "(e.g. '{{json .RootFS.Layers}}').")
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


def _remove(ctx: click.Context, refs: tuple[str, ...], force: bool,
            no_prune: bool = False) -> None:
    p = paths(ctx)
    errors: list[MinidockError] = []
    for ref in refs:
        try:
            for line in engine.remove_image(p, ref, force, _in_use(p), prune=not no_prune):
                click.echo(line)
        except MinidockError as e:
            errors.append(e)
    _raise_all(errors)


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.pass_context
def rmi(ctx: click.Context, force: bool, no_prune: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    _remove(ctx, refs, force, no_prune)


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
image.add_command(rmi, "rm")
image.add_command(import_, "import")
image.add_command(build, "build")
image.add_command(tag, "tag")
image.add_command(history, "history")
image.add_command(image_prune, "prune")

image.add_command(archive.save, "save")  # shared with the top-level `save`
image.add_command(archive.load, "load")
