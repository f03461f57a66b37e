"""What the commands share: the lazily loading group, the Paths the top-level group built,
and the prune commands' prompt and report."""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from minidock.paths import Paths


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is invoked."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            mod = importlib.import_module(f"minidock.cli.{module}")
            cmd: click.Command = getattr(mod, attr)
            return cmd
        return super().get_command(ctx, cmd_name)



def paths(ctx: click.Context) -> Paths:
    """The Paths object the top-level group built (for commands)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Paths)
    return obj



def confirm_prune(command: str, warning: str, force: bool) -> None:
    """Docker's prune prompt; without a terminal to ask on, -f is required."""
    if force:
        return
    from minidock.errors import InvalidArgument

    if not os.isatty(0):
        raise InvalidArgument(f"{command}: confirmation needed: use -f in scripts")
    click.confirm(f"{warning}\nAre you sure you want to continue?", abort=True)



def echo_pruned(title: str, lines: list[str], reclaimed: int) -> None:
    """What a prune removed, then the space (docker/cli: units.HumanSize, 4 digits)."""
    echo_pruned_sections([(title, lines)], reclaimed)


def echo_pruned_sections(sections: list[tuple[str, list[str]]], reclaimed: int) -> None:
    """Each non-empty section (``system prune``'s containers, networks, ...), then the
    space."""
    from minidock.cli.format import human_size

    for title, lines in sections:
        if lines:
            click.echo(f"{title}:")
            for line in lines:
                click.echo(line)
            click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed, 4)}")
