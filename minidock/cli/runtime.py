"""``minidock runtime``: the OCI runtime with runc's command-line contract.

    minidock runtime [--root DIR] create [--bundle DIR] [--console-socket SOCK]
                                         [--pid-file FILE] ID
    minidock runtime start ID
    minidock runtime state ID
    minidock runtime kill ID [SIGNAL]
    minidock runtime pause ID | resume ID
    minidock runtime ps [--format table|json] ID
    minidock runtime delete [--force] ID
    minidock runtime list
    minidock runtime exec [--process FILE] [-t --console-socket SOCK] [-d] [--pid-file FILE]
                          [--cwd DIR] [-e K=V]... [-u UID[:GID]] [--no-new-privs] ID [ARGS...]

so that a test (or podman --runtime) can drive it exactly like runc.
"""

from __future__ import annotations

import json
import os
import signal

import click

from minidock import runtime as rt
from minidock.errors import InvalidArgument


def _state_root(ctx: click.Context) -> str:
    root = ctx.find_object(dict)
    assert root is not None
    return str(root["root"])


@click.group()
@click.option("--root", default=None, help="State directory [<run-root>/runtime].")
@click.option("--trace", "trace_", is_flag=True, help="Print every kernel step to stderr.")
@click.pass_context
def runtime(ctx: click.Context, root: str | None, trace_: bool) -> None:
    """The OCI runtime (runc's CLI contract)."""
    from minidock.cli.shared import paths

    if trace_:
        from minidock.linux import trace

        trace.enable(os.dup(2), "runtime")
    ctx.obj = {"root": root or paths(ctx).runtime_state}


@runtime.command()
@click.option("-b", "--bundle", default=".", help="Path to the bundle directory.")
@click.option("--console-socket", help="Unix socket that receives the pty master.")
@click.option("--pid-file", help="File to write the init's pid to.")
@click.argument("container_id")
@click.pass_context
def create(ctx: click.Context, container_id: str, bundle: str, console_socket: str | None,
           pid_file: str | None) -> None:
    """Create a container from an OCI bundle; its init waits for `start`."""
    opts = rt.CreateOptions(console_socket=console_socket,
                            pid_file=os.path.abspath(pid_file) if pid_file else None)
    rt.create(_state_root(ctx), container_id, os.path.abspath(bundle), opts)


@runtime.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Run the user-defined process of a created container."""
    rt.start(_state_root(ctx), container_id)


@runtime.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the OCI state of a container."""
    click.echo(json.dumps(rt.state(_state_root(ctx), container_id), indent=2))


def _signal(value: str) -> int:
    if value.isdigit():
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None


@runtime.command()
@click.argument("container_id")
@click.argument("sig", default="SIGTERM")
@click.pass_context
def kill(ctx: click.Context, container_id: str, sig: str) -> None:
    """Send a signal to the container's init."""
    rt.kill(_state_root(ctx), container_id, _signal(sig))


@runtime.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx: click.Context, container_id: str) -> None:
    """Freeze every process of the container."""
    rt.pause(_state_root(ctx), container_id)


@runtime.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx: click.Context, container_id: str) -> None:
    """Thaw a paused container."""
    rt.resume(_state_root(ctx), container_id)


@runtime.command()
@click.option("-f", "--format", "format_", type=click.Choice(["table", "json"]),
              default="table", help="Output format.")
@click.argument("container_id")
@click.pass_context
def ps(ctx: click.Context, container_id: str, format_: str) -> None:
    """List the host pids of the container's processes."""
    pids = rt.ps(_state_root(ctx), container_id)
    if format_ == "json":
        click.echo(json.dumps(pids))
    else:
        click.echo("PID")
        for pid in pids:
            click.echo(str(pid))


@runtime.command()
@click.option("-f", "--force", is_flag=True, help="Kill the container first if it runs.")
@click.argument("container_id")
@click.pass_context
def delete(ctx: click.Context, container_id: str, force: bool) -> None:
    """Delete what `create` made (cgroup, state)."""
    rt.delete(_state_root(ctx), container_id, force=force)


@runtime.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List the containers of this state directory."""
    root = _state_root(ctx)
    click.echo("ID\tPID\tSTATUS\tBUNDLE")
    for cid in rt.list_ids(root):
        try:
            s = rt.state(root, cid)
        except Exception:
            click.echo(f"{cid}\t0\tcreating\t")
            continue
        click.echo(f"{cid}\t{s['pid']}\t{s['status']}\t{s['bundle']}")


@runtime.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-p", "--process", "process_file", help="process.json (an OCI process).")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pty (needs --console-socket).")
@click.option("--console-socket", help="Unix socket that receives the pty master.")
@click.option("-d", "--detach", is_flag=True, help="Do not wait for the process to exit.")
@click.option("--pid-file", help="File to write the process's pid to.")
@click.option("--cwd", help="Working directory inside the container.")
@click.option("-e", "--env", multiple=True, help="Add an environment variable.")
@click.option("-u", "--user", help="UID[:GID] of the process.")
@click.option("--no-new-privs", is_flag=True, help="Set no_new_privs for the process.")
@click.argument("container_id")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container_id: str, args: tuple[str, ...],
          process_file: str | None, tty: bool, console_socket: str | None, detach: bool,
          pid_file: str | None, cwd: str | None, env: tuple[str, ...], user: str | None,
          no_new_privs: bool) -> None:
    """Run a process in a running container (runc exec)."""
    from minidock.oci import runtime as oci
    from minidock.records import replace
    from minidock.runtime import exec as rtexec

    root = _state_root(ctx)
    if process_file:
        with open(process_file, "rb") as f:
            doc = json.load(f)
        # the process object alone, validated by the config.json parser
        proc = oci.parse({"process": doc, "root": {"path": "rootfs"}}).process
    else:
        if not args:
            raise InvalidArgument("exec: give --process or the command to run")
        # runc's rule: the container's process, with what the flags say changed
        _, spec = rtexec.load_running(root, container_id)
        proc = replace(spec.process, args=list(args), env=[*spec.process.env, *env],
                       terminal=tty, console_size=None)
        if cwd:
            proc.cwd = cwd
        if user:
            uid, _, gid = user.partition(":")
            if not uid.isdigit() or (gid and not gid.isdigit()):
                raise InvalidArgument(f"exec: --user {user!r} must be UID[:GID]")
            proc.user = oci.User(int(uid), int(gid or 0), [])
    if no_new_privs:
        proc.no_new_privileges = True
    opts = rtexec.ExecOptions(console_socket=console_socket, subreaper=not detach,
                              pid_file=os.path.abspath(pid_file) if pid_file else None)
    pid = rtexec.exec_process(root, container_id, proc, opts)
    if detach:
        return
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    ctx.exit(128 - code if code < 0 else code)
