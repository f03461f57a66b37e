"""``build``: an image from a Dockerfile, with the classic builder's steps and output. Thin:
the work is minidock.build.builder, imported when the command runs."""

from __future__ import annotations

import os

import click

from minidock.cli.shared import paths
from minidock.errors import InvalidArgument, MinidockError


def _pairs(values: tuple[str, ...], env_fallback: bool) -> dict[str, str | None]:
    """``K=V`` flags as a mapping; a bare ``K`` takes the caller's environment value when
    ``env_fallback`` (docker's --build-arg), else the empty string."""
    out: dict[str, str | None] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if eq:
            out[key] = value
        elif env_fallback:
            out[key] = os.environ.get(key)
        else:
            out[key] = ""
    return out


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True,
              help="Name and optionally a tag in the 'name:tag' format")
@click.option("-f", "--file", "dockerfile", default=None,
              help="Name of the Dockerfile (Default is 'PATH/Dockerfile')")
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("--pull", is_flag=True, help="Always attempt to pull a newer version of the image")
@click.option("--target", default=None, help="Set the target build stage to build.")
@click.option("-q", "--quiet", is_flag=True,
              help="Suppress the build output and print image ID on success")
@click.option("--network", default="none",
              help="Set the networking mode for the RUN instructions during build "
                   "(none, host)")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image")
@click.option("--rm", "remove", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              show_default=True,
              help="Remove intermediate containers after a successful build")
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers")
@click.option("--iidfile", default=None, help="Write the image ID to the file")
@click.option("--trace", "trace_", is_flag=True,
              help="Print every kernel step of the build (mounts, containers) to stderr.")
@click.argument("context", metavar="PATH | -")
@click.pass_context
def build(ctx: click.Context, tags: tuple[str, ...], dockerfile: str | None,
          build_args: tuple[str, ...], no_cache: bool, pull: bool, target: str | None,
          quiet: bool, network: str, labels: tuple[str, ...], remove: bool, force_rm: bool,
          iidfile: str | None, trace_: bool, context: str) -> None:
    """Build an image from a Dockerfile."""
    if trace_:
        from minidock.linux import trace

        trace.enable(os.dup(2), "minidock")
    # flag values are the CLI's to refuse (exit 125); the build's own refusals exit 1
    from minidock.image.reference import parse_tagged

    for arg in build_args:
        if arg.startswith("="):
            raise InvalidArgument(f'invalid argument "{arg}" for "--build-arg" flag: invalid '
                                  f"environment variable: {arg}")
    for tag in tags:
        try:
            parse_tagged(tag)
        except MinidockError as e:
            raise InvalidArgument(f'invalid argument "{tag}" for "-t, --tag" flag: '
                                  f"{e.message}") from None
    try:
        image_id = _build(ctx, context, tags, dockerfile, build_args, no_cache, pull, target,
                          quiet, network, labels, remove, force_rm)
    except MinidockError as e:
        if e.exit_code == 125:
            e.exit_code = 1  # docker build exits 1 for what it refuses, 125 is run's
        raise
    if iidfile:
        with open(iidfile, "w") as f:
            f.write(image_id)
    if quiet:
        click.echo(image_id)


def _build(ctx: click.Context, context: str, tags: tuple[str, ...], dockerfile: str | None,
           build_args: tuple[str, ...], no_cache: bool, pull: bool, target: str | None,
           quiet: bool, network: str, labels: tuple[str, ...], remove: bool,
           force_rm: bool) -> str:
    from minidock.build.builder import BuildOptions
    from minidock.build.builder import build as build_

    if network not in ("none", "host", "default"):
        raise InvalidArgument(f"network {network} not found (supported: none, host)")
    return build_(paths(ctx), BuildOptions(
        context=context, dockerfile=dockerfile, tags=list(tags),
        build_args=_pairs(build_args, True), no_cache=no_cache, pull=pull, target=target,
        quiet=quiet, network="none" if network == "default" else network,
        labels={k: v or "" for k, v in _pairs(labels, False).items()},
        remove=remove, force_remove=force_rm))
