"""Container commands: run, create, start, ps, rm, inspect, container prune, and the
detached lifecycle: logs, attach, stop, restart, kill, wait (container cleanup is the
monitor's)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import click

from minidock.cli import format as fmt
from minidock.cli.runflags import RESOURCE_FLAGS, create_options, run_command
from minidock.cli.shared import LazyGroup, confirm_prune, echo_pruned, paths
from minidock.engine import containers as engine
from minidock.errors import InvalidArgument, MinidockError
from minidock.paths import Paths

RUN_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def container_options(f: click.decorators.FC) -> click.decorators.FC:
    """Flags shared by run and create (Docker's names)."""
    for decorator in reversed([
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        click.option("--name", help="Assign a name to the container."),
        click.option("-e", "--env", multiple=True, help="Set environment variables."),
        click.option("--env-file", multiple=True,
                     help="Read in a file of environment variables."),
        click.option("-w", "--workdir", help="Working directory inside the container."),
        click.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])."),
        click.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image."),
        click.option("-h", "--hostname", help="Container host name."),
        click.option("--network", "--net", default="default", show_default=True,
                     help="Connect a container to a network: default (= bridge: minidock0, "
                          "NAT to the outside), bridge, host, none, container:NAME|ID or a "
                          "user network."),
        click.option("--rm", is_flag=True,
                     help="Automatically remove the container when it exits."),
        click.option("--ip", help="IPv4 address (e.g., 172.30.100.104) on a user network."),
        click.option("--add-host", multiple=True,
                     help="Add a custom host-to-IP mapping (host:ip; ip may be host-gateway)."),
        click.option("--dns", multiple=True, help="Set custom DNS servers."),
        click.option("--dns-search", multiple=True, help="Set custom DNS search domains."),
        click.option("--dns-option", multiple=True, help="Set DNS options."),
        click.option("--network-alias", multiple=True,
                     help="Add network-scoped alias for the container (user networks)."),
        click.option("-p", "--publish", multiple=True,
                     help="Publish a container's port(s) to the host: "
                          "[ip:][hostPort:]containerPort[/tcp|udp], ranges as 8000-8010."),
        click.option("-P", "--publish-all", is_flag=True,
                     help="Publish all exposed ports to random ports."),
        click.option("--expose", multiple=True, help="Expose a port or a range of ports."),
        click.option("-l", "--label", multiple=True, help="Set meta data on a container "
                     "(KEY=VALUE, or KEY for an empty value)."),
        click.option("--security-opt", multiple=True,
                     help="Security options: seccomp=unconfined, seccomp=PROFILE.json, "
                          "no-new-privileges."),
        click.option("-v", "--volume", multiple=True, help="Bind mount a volume "
                     "(NAME:/PATH, /HOST:/PATH[:ro], /PATH)."),
        click.option("--mount", multiple=True, help="Attach a filesystem mount to the "
                     "container (type=bind|volume|tmpfs,source=...,target=...[,readonly])."),
        click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory (/PATH[:OPTIONS])."),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem "
                     "as read only."),
        click.option("--volumes-from", multiple=True, help="Mount volumes from the specified "
                     "container(s) (CONTAINER[:ro|rw])."),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities (NET_ADMIN, "
                     "CAP_SYS_PTRACE, ALL)."),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities (CHOWN, ALL)."),
        click.option("--privileged", is_flag=True, help="Give extended privileges to this "
                     "container: every capability, the host's devices, writable /sys, no "
                     "seccomp, nothing masked."),
        click.option("--device", multiple=True, help="Add a host device to the container "
                     "(HOST[:CONTAINER][:rwm])."),
        click.option("--device-cgroup-rule", multiple=True, help="Add a rule to the cgroup "
                     "allowed devices list ('c 1:11 r')."),
        click.option("--pid", help="PID namespace to use (host, container:NAME)."),
        click.option("--ipc", help="IPC mode to use (private, shareable, host, "
                     "container:NAME)."),
        click.option("--uts", help="UTS namespace to use (host)."),
        click.option("--cgroupns", help="Cgroup namespace to use (host, private)."),
        click.option("--userns", help="User namespace to use: host, or remap (container "
                     "ids mapped to a subordinate range, as config.json's userns-remap)."),
        click.option("--shm-size", help="Size of /dev/shm (e.g. 128m)."),
        click.option("--ulimit", multiple=True, help="Ulimit options (nofile=1024:2048)."),
        click.option("--sysctl", multiple=True, help="Sysctl options (net.ipv4.ip_forward=1)."),
        click.option("--group-add", multiple=True, help="Add additional groups to join."),
        click.option("--init", is_flag=True, help="Run an init inside the container that "
                     "forwards signals and reaps processes."),
        click.option("--runtime", help="Runtime to use for this container: minidock (the "
                     "built-in one), runc, crun, a name from config.json's runtimes, or a "
                     "path."),
    ]):
        f = decorator(f)
    return resource_options()(f)


#: the limits `docker update` changes (not swappiness, the OOM killer or device bandwidth)
UPDATE_PARAMS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
                 "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems", "pids_limit",
                 "blkio_weight")


def resource_options(only: tuple[str, ...] | None = None
                     ) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """The limits of run, create and update (runflags.RESOURCE_FLAGS): values stay text,
    parsed with Docker's rules by engine.containers.resources.parse_flags."""
    def decorate(f: click.decorators.FC) -> click.decorators.FC:
        for names, param, takes, multi, help_ in reversed(RESOURCE_FLAGS):
            if only is not None and param not in only:
                continue
            if takes:
                f = click.option(*names, param, multiple=multi, help=help_)(f)
            else:
                f = click.option(*names, param, is_flag=True, help=help_)(f)
        return f
    return decorate


@click.command(context_settings=RUN_CONTEXT)
@container_options
@click.option("-d", "--detach", is_flag=True,
              help="Run container in background and print container ID.")
@click.option("--trace", "trace_", is_flag=True,
              help="Print every kernel step the runtime takes to stderr.")
@click.option("--timings", is_flag=True,
              help="Print the time each phase of the start took (also inspect's "
                   "State.Timings).")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], trace_: bool, detach: bool,
        timings: bool, **flags: object) -> None:
    """Create and run a new container from an image."""
    # (the console script usually parses `run` itself: see minidock.entry)
    ctx.exit(run_command(paths(ctx), image, command, trace_, detach, timings, **flags))


@click.command(context_settings=RUN_CONTEXT)
@container_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], **flags: object) -> None:
    """Create a new container."""
    opts = create_options(image, command, **flags)  # type: ignore[arg-type]
    c = engine.create(paths(ctx), opts)
    click.echo(c.id)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@click.option("--trace", "trace_", is_flag=True, help="Print every kernel step to stderr.")
@click.argument("container")
@click.pass_context
def start(ctx: click.Context, container: str, attach: bool, interactive: bool,
          trace_: bool) -> None:
    """Start a stopped container: in the background under a monitor, or with -a/-i in the
    foreground, attached to this terminal."""
    if trace_:
        from minidock.linux import trace

        trace.enable(os.dup(2), "minidock")
    if not (attach or interactive):
        from minidock.engine.containers import monitor

        monitor.start_detached(paths(ctx), container)
        click.echo(container)
        return
    code = engine.start(paths(ctx), container, interactive=interactive)
    ctx.exit(code)


def _ports_text(c: engine.Container) -> str:
    """ps's PORTS: the exposed and published ports of a running container (Docker shows
    none for a stopped one)."""
    ports = c.endpoint.get("Ports") if c.state.running else None
    if not ports:
        return ""
    from minidock.net.ports import ps_column

    return ps_column(ports)


def _status_text(c: engine.Container) -> str:
    """Docker's STATUS column: "Up 3 minutes", "Exited (137) 5 seconds ago", "Created"."""
    st = c.state
    if st.status.value in ("running", "paused"):
        up = "Up " + fmt.human_duration(time.time() - (fmt.parse_rfc3339(st.started_at) or 0))
        return up + (" (Paused)" if st.status.value == "paused" else "")
    if st.status.value == "exited":
        return f"Exited ({st.exit_code}) {fmt.since(st.finished_at)}"
    if st.status.value == "removing":
        return "Removal In Progress"
    return st.status.value.capitalize()  # Created, Dead


def _command_text(c: engine.Container, trunc: bool) -> str:
    text = " ".join([c.path, *c.args])
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
    "State": "STATE", "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
    "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
}
# docker/cli's default (cli/command/formatter/container.go)
PS_TABLE = ("table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t"
            "{{.Ports}}\\t{{.Names}}")


def _go_time_string(value: str) -> str:
    """Go's time.Unix(created, 0).String() in local time: ``2024-01-02 03:04:05 +0000 UTC``."""
    t = fmt.parse_rfc3339(value)
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(int(t)))


def _ps_row(c: engine.Container, no_trunc: bool) -> dict[str, object]:
    """A row as docker/cli's containerContext presents it to --format."""
    labels = c.config.get("Labels") or {}
    return {
        "ID": c.id if no_trunc else c.short_id,
        # a container made from an image id (a build's) shows the short id, as docker's ps
        "Image": (c.image_ref[7:19] if not no_trunc and c.image_ref == c.image_id
                  else c.image_ref),
        "Command": _command_text(c, not no_trunc),
        "CreatedAt": _go_time_string(c.created),
        "RunningFor": fmt.since(c.created),
        "Status": _status_text(c),
        "Ports": _ports_text(c),
        "Names": c.name,
        "State": c.state.status.value,
        "Size": "N/A",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": "",
        "Networks": engine.network_name(c.host_config.get("NetworkMode") or ""),
        "LocalVolumes": "0",
    }


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers.")
@click.option("-f", "--filter", "filters", multiple=True,
              help="Filter output (id, name, status, exited, ancestor, label, before, since).")
@click.option("-n", "--last", type=int, default=-1,
              help="Show n last created containers (includes all states).")
@click.option("-l", "--latest", is_flag=True,
              help="Show the latest created container (includes all states).")
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("-s", "--size", is_flag=True, help="Display total file sizes.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "format_", help="Format output using a custom template: 'table', "
              "'table TEMPLATE' or a Go template.")
@click.pass_context
def ps(ctx: click.Context, all_: bool, filters: tuple[str, ...], last: int, latest: bool,
       quiet: bool, size: bool, no_trunc: bool, format_: str | None) -> None:
    """List containers."""
    from minidock.engine.filters import parse_ps_filters, ps_shows_stopped, select_containers

    parsed = parse_ps_filters(filters)
    if latest:
        last = 1
    every = all_ or last >= 0 or ps_shows_stopped(parsed)
    problems: list[str] = []
    items = engine.list_containers(paths(ctx), all_=every, problems=problems)
    for line in problems:  # the rest is listed all the same
        click.echo(f"WARNING: {line}", err=True)
    if parsed:
        items = select_containers(paths(ctx), items, parsed)
    if last >= 0:
        items = items[:last]
    if quiet:
        for c in items:
            click.echo(c.id if no_trunc else c.short_id)
        return
    rows = [_ps_row(c, no_trunc) for c in items]
    table = PS_TABLE
    if size or (format_ and ".Size" in format_):
        _add_sizes(paths(ctx), items, rows)
        table = PS_TABLE + "\\t{{.Size}}" if size else PS_TABLE
    click.echo(fmt.format_rows(format_ or table, rows, PS_HEADERS, default_table=table),
               nl=False)


def _add_sizes(p: Paths, items: list[engine.Container], rows: list[dict[str, object]]) -> None:
    """Docker's SIZE: what the container wrote (its rw layer's diff) and, as "virtual",
    that plus its image."""
    from minidock.engine.containers.observe import disk_usage

    for c, row in zip(items, rows, strict=True):
        sizes = disk_usage(p, c)
        if sizes is not None:
            rw, image = sizes
            row["Size"] = f"{fmt.human_size(rw)} (virtual {fmt.human_size(rw + image)})"


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container.")
@click.option("-v", "--volumes", is_flag=True,
              help="Remove anonymous volumes associated with the container.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove one or more containers."""
    failed = None
    if force and len(containers) > 1:
        # SIGKILL them all first: their monitors then record the exits (each a cleanup
        # process) in parallel, instead of one after the other as each removal waits.
        for ref in containers:
            try:
                engine.kill(paths(ctx), ref, "KILL")
            except MinidockError:
                pass
    for ref in containers:
        try:
            engine.remove(paths(ctx), ref, force=force, volumes=volumes)
            click.echo(ref)
        except MinidockError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = e
    if failed is not None:
        ctx.exit(1)


@click.command()
@click.option("-f", "--format", "format_", help="Format output using a Go template.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, containers: tuple[str, ...], format_: str | None) -> None:
    """Return low-level information on containers."""
    docs = [engine.inspect(paths(ctx), ref) for ref in containers]
    if format_:
        for d in docs:
            click.echo(fmt.render(format_, d))
        return
    click.echo(json.dumps(docs, indent=4))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True,
              help="Provide filter values (e.g. 'until=24h', 'label=KEY[=VALUE]').")
@click.pass_context
def prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped containers."""
    from minidock.engine.filters import PRUNE_FILTERS, parse_filters

    parsed = parse_filters(filters, PRUNE_FILTERS)
    confirm_prune("container prune", "WARNING! This will remove all stopped containers.",
                  force)
    removed, reclaimed = engine.prune(paths(ctx), parsed)
    echo_pruned("Deleted Containers", removed, reclaimed)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", show_default=True,
              help="Number of lines to show from the end of the logs.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", help="Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or "
              "relative (e.g. 42m for 42 minutes).")
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, container: str, follow: bool, tail: str, timestamps: bool,
         since: str | None) -> None:
    """Fetch the logs of a container."""
    from minidock.engine.stdio import io
    from minidock.engine.stdio import logs as logmod

    p = paths(ctx)
    c = engine.get(p, container)
    if tail == "all":
        count = None
    else:
        try:
            count = int(tail)
        except ValueError:
            raise InvalidArgument(f'invalid value for "tail": "{tail}"') from None
    since_ns = logmod.parse_since(since) if since else None
    path = engine.log_path(c)
    entries, offset = logmod.read(path, tail=count, since_ns=since_ns)
    sys.stdout.flush()

    def show(entry: logmod.Entry) -> None:
        text = (entry.fixed_time() + " " if timestamps else "") + entry.text
        io._write_all(2 if entry.stream == "stderr" else 1, text.encode())

    for entry in entries:
        show(entry)
    if follow:
        def stopped() -> bool:
            return engine.wait_unwatched(p, c.id, timeout=0)

        for entry in logmod.follow(path, offset, stopped):
            if since_ns is None or entry.time_ns >= since_ns:
                show(entry)


@click.command()
@click.option("--sig-proxy/--no-sig-proxy", default=True, hidden=True)
@click.argument("container")
@click.pass_context
def attach(ctx: click.Context, container: str, sig_proxy: bool) -> None:
    """Attach local standard input, output, and error streams to a running container.

    Detach from a -t container with Ctrl-P Ctrl-Q."""
    from minidock.engine.containers import attach as attach_mod

    code = attach_mod.attach(paths(ctx), container)
    ctx.exit(0 if code is None else code)


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None,
              help="Seconds to wait before killing the container [10].")
@click.option("-s", "--signal", "signal_", help="Signal to send to the container.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, containers: tuple[str, ...], timeout: int | None,
         signal_: str | None) -> None:
    """Stop one or more running containers."""
    _each(ctx, containers, lambda ref: engine.stop(paths(ctx), ref, timeout, signal_))


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None,
              help="Seconds to wait before killing the container [10].")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def restart(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Restart one or more containers."""
    from minidock.engine.containers import monitor

    _each(ctx, containers, lambda ref: monitor.restart(paths(ctx), ref, timeout))


@click.command()
@click.option("-s", "--signal", "signal_", default="KILL", show_default=True,
              help="Signal to send to the container.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, containers: tuple[str, ...], signal_: str) -> None:
    """Kill one or more running containers."""
    engine.parse_signal(signal_)  # a bad signal is an error before any container is touched
    _each(ctx, containers, lambda ref: engine.kill(paths(ctx), ref, signal_))


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait_(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    _each(ctx, containers, lambda ref: engine.wait(paths(ctx), ref), echo_result=True)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    _each(ctx, containers, lambda ref: engine.pause(paths(ctx), ref))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    _each(ctx, containers, lambda ref: engine.unpause(paths(ctx), ref))


@click.command()
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    try:
        engine.rename(paths(ctx), container, new_name)
    except MinidockError as e:
        click.echo(f"Error response from daemon: {e.message}", err=True)
        ctx.exit(1)


def _each(ctx: click.Context, refs: tuple[str, ...], action: Callable[[str], object],
          echo_result: bool = False) -> None:
    """Docker's multi-container commands: go on after a failure, report it, exit 1."""
    failed = False
    for ref in refs:
        try:
            result = action(ref)
        except MinidockError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
            continue
        click.echo(str(result) if echo_result else ref)
    if failed:
        ctx.exit(1)


@click.command()
@resource_options(UPDATE_PARAMS)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def update(ctx: click.Context, containers: tuple[str, ...], **flags: str | None) -> None:
    """Update configuration of one or more containers."""
    from minidock.engine.containers import resources

    if not any(v is not None for v in flags.values()):
        click.echo("you must provide one or more flags when using this command", err=True)
        ctx.exit(1)
    try:
        given = resources.parse_flags(**flags)  # type: ignore[arg-type]
    except MinidockError as e:
        click.echo(e.message, err=True)
        ctx.exit(125)

    def one(ref: str) -> str:
        for warning in engine.update_limits(paths(ctx), ref, given):
            click.echo(f"WARNING: {warning}", err=True)
        return ref

    _each(ctx, containers, one)


@click.command("cleanup", hidden=True)
@click.argument("container_id")
@click.pass_context
def cleanup(ctx: click.Context, container_id: str) -> None:
    """Record a detached container's exit and release what it held (run by its monitor)."""
    engine.cleanup(paths(ctx), container_id)


@click.group(cls=LazyGroup, lazy={"exec": "exec:exec_", "top": "observe:top",
                                  "stats": "observe:stats", "port": "observe:port",
                                  "commit": "commit:commit",
                                  "diff": "commit:diff", "cp": "commit:cp",
                                  "export": "archive:export"})
def container() -> None:
    """Manage containers."""


container.add_command(run)
container.add_command(create)
container.add_command(start)
container.add_command(ps, "ls")
container.add_command(ps)
container.add_command(rm)
container.add_command(inspect)
container.add_command(prune)
container.add_command(logs)
container.add_command(attach)
container.add_command(stop)
container.add_command(restart)
container.add_command(kill)
container.add_command(wait_)
container.add_command(pause)
container.add_command(unpause)
container.add_command(rename)
container.add_command(update)
container.add_command(cleanup)

