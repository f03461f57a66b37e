"""info, version and system check."""

from __future__ import annotations

import os
import platform
import sys

import click

from minidock import __version__
from minidock.cli.shared import paths


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _backing_fs(path: str) -> str:
    """Docker's name for the filesystem under the root (extfs, xfs, tmpfs, ...)."""
    from minidock.linux import mountinfo

    best, fstype = "", "unknown"
    for m in mountinfo.read():
        mnt = m.mount_point
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, m.fstype
    return {"ext4": "extfs", "ext3": "extfs", "ext2": "extfs"}.get(fstype, fstype)


@click.command()
@click.pass_context
def info(ctx: click.Context) -> None:
    """Display system-wide information."""
    from minidock import cgroups
    from minidock.engine.containers.observe import host_memory
    from minidock.engine.system import info as engine_info

    p = paths(ctx)
    e = engine_info(p)
    root = p.root
    existing = root
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    lines = [
        "Client:",
        f" Version:    {__version__}",
        " Context:    default (no daemon: every command is its own engine)",
        "",
        "Server:",
        f" Containers: {e.containers}",
        f"  Running: {e.running}",
        f"  Paused: {e.paused}",
        f"  Stopped: {e.stopped}",
        f" Images: {e.images}",
        f" Server Version: {__version__}",
        " Storage Driver: overlay2",
        f"  Backing Filesystem: {_backing_fs(existing)}",
        "  Supports d_type: true",
        f"  Using metacopy: {_overlay_param('metacopy')}",
        "  Native Overlay Diff: true",
        "  userxattr: false",
        " Logging Driver: json-file",
        " Cgroup Driver: cgroupfs",
        f" Cgroup Version: {cgroups.detect_version()}",
        f" Runtimes: {' '.join(e.runtimes)}",
        f" Default Runtime: {e.default_runtime}",
        f" Kernel Version: {platform.release()}",
        f" Operating System: {_os_name()}",
        " OSType: linux",
        f" Architecture: {platform.machine()}",
        f" CPUs: {os.cpu_count()}",
        f" Total Memory: {_fmt_gib(host_memory())}",
        f" Name: {platform.node()}",
        f" Minidock Root Dir: {root}",
        f" Minidock Run Dir: {p.run_root}",
        " Debug Mode: false",
    ]
    click.echo("\n".join(lines))


def _fmt_gib(n: int) -> str:
    return f"{n / (1 << 30):.4g}GiB"


def _overlay_param(name: str) -> str:
    try:
        with open(f"/sys/module/overlay/parameters/{name}") as f:
            return "true" if f.read().strip() == "Y" else "false"
    except OSError:
        return "false"


@click.command()
def version() -> None:
    """Show the minidock version information."""
    from minidock.engine.images import host_platform

    arch = host_platform()[0]
    click.echo("\n".join([
        "Client:",
        f" Version:           {__version__}",
        f" Python version:    {platform.python_version()}",
        f" OS/Arch:           linux/{arch}",
        "",
        "Engine (daemonless, in-process):",
        f" Version:           {__version__}",
        " Runtime:           minidock (OCI runtime-spec 1.0.2)",
        f" Kernel:            {platform.release()}",
        f" Executable:        {sys.executable}",
    ]))



@click.command("check")
@click.option("--repair", is_flag=True, help="Repair what is found.")
@click.pass_context
def check(ctx: click.Context, repair: bool) -> None:
    """List what is inconsistent or left over (stale mounts, cgroups, bundles, unused layers)."""
    from minidock.cli.format import table
    from minidock.engine.containers import check as checker

    p = paths(ctx)
    found = checker.check(p)
    rows = [["KIND", "PATH", "PROBLEM"]] + [[f.kind, f.path, f.problem] for f in found]
    if not found:
        click.echo("No problems found.")
        return
    click.echo(table(rows))
    if not repair:
        click.echo(f"{len(found)} problem(s) found; `minidock system check --repair` "
                   "repairs them.")
        ctx.exit(1)
    failures = checker.repair(p, found)
    for f, why in failures:
        click.echo(f"not repaired: {f.kind} {f.path}: {why}", err=True)
    left = checker.check(p)
    click.echo(f"Repaired; {len(left)} problem(s) left.")
    if left:
        click.echo(table([["KIND", "PATH", "PROBLEM"]]
                             + [[f.kind, f.path, f.problem] for f in left]))
        ctx.exit(1)


DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


@click.command()
@click.option("--format", "format_", help="Pretty-print with a Go template.")
@click.pass_context
def df(ctx: click.Context, format_: str | None) -> None:
    """Show minidock disk usage."""
    from minidock.cli import format as fmt
    from minidock.engine import disk

    rows = []
    for row in disk.usage(paths(ctx)):
        size, free = row["Size"], row["Reclaimable"]
        rows.append({**row, "Size": fmt.human_size(size, 4),
                     "Reclaimable": fmt.human_size(free, 4)
                     + (f" ({free * 100 // size}%)" if size else "")})
    click.echo(fmt.format_rows(format_ or DF_TABLE, rows, DF_HEADERS, DF_TABLE[6:]), nl=False)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove all unused images not just dangling ones.")
@click.option("--volumes", is_flag=True, help="Prune volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx: click.Context, all_: bool, volumes: bool, force: bool) -> None:
    """Remove unused data."""
    from minidock.cli.shared import confirm_prune, echo_pruned_sections
    from minidock.engine import disk

    warning = ["WARNING! This will remove:", "  - all stopped containers",
               "  - all networks not used by at least one container"]
    if volumes:
        warning.append("  - all volumes not used by at least one container")
    warning += ["  - all images without at least one container associated to them" if all_
                else "  - all dangling images",
                "  - all build cache" if all_ else "  - unused build cache", ""]
    confirm_prune("system prune", "\n".join(warning), force)
    echo_pruned_sections(*disk.prune(paths(ctx), all_, volumes))


@click.group("system")
def system() -> None:
    """Manage minidock."""


system.add_command(info)
system.add_command(check)
system.add_command(df)
system.add_command(prune)
