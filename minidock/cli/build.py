"""``build``: an image from a Dockerfile, with the classic builder's steps and output. Thin:
the flags go to minidock.cli.buildflags.build_command (which the console script also calls
directly for the plain forms), the work is minidock.build.builder."""

from __future__ import annotations

import click

from minidock.cli.shared import paths


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
@click.option("--network", default="default",
              help="Set the networking mode for the RUN instructions during build "
                   "(default = the bridge, bridge, none, host)")
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
    from minidock.cli.buildflags import build_command

    build_command(paths(ctx), context, tags, dockerfile, build_args, no_cache, pull, target,
                  quiet, network, labels, remove, force_rm, iidfile, trace_)
