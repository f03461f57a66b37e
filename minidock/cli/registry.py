"""``pull``, ``push``, ``login``, ``logout``: the commands that talk to registries.

Thin commands as docker/cli's (cli/command/image/pull.go, registry/login.go): parse, call the
engine, print. The registry client is imported only inside the commands.
"""

from __future__ import annotations

import sys

import click

from minidock.cli.shared import paths
from minidock.errors import InvalidArgument
from minidock.image.reference import parse_reference


@click.command("pull")
@click.option("--platform", help="Set platform if server is multi-platform capable "
              "(os/arch[/variant]).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images "
              "(not supported).")
@click.argument("name", metavar="NAME[:TAG|@DIGEST]")
@click.pass_context
def pull(ctx: click.Context, platform: str | None, quiet: bool, all_tags: bool,
         name: str) -> None:
    """Download an image from a registry."""
    from minidock.engine.distribution.pull import pull as engine_pull

    if all_tags:
        raise InvalidArgument("pull --all-tags is not supported")
    ref = parse_reference(name)
    if ref.tag is None and ref.digest is None and not quiet:
        click.echo("Using default tag: latest")
    result = engine_pull(paths(ctx), name, platform=platform, out=sys.stdout, quiet=quiet)
    click.echo(str(result.reference))


@click.command("push")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.argument("name", metavar="NAME[:TAG]")
@click.pass_context
def push(ctx: click.Context, quiet: bool, name: str) -> None:
    """Upload an image to a registry."""
    from minidock.engine.distribution.push import push as engine_push

    engine_push(paths(ctx), name, out=sys.stdout, quiet=quiet)


@click.command("login")
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password.")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
@click.argument("server", required=False, metavar="[SERVER]")
def login(username: str | None, password: str | None, password_stdin: bool,
          server: str | None) -> None:
    """Log in to a registry (default Docker Hub).

    The credentials are checked against the registry first and then stored in
    ~/.minidock/config.json (mode 0600; MINIDOCK_AUTH_CONFIG names another file).
    """
    from minidock.engine.distribution import login as engine

    if password is not None and password_stdin:
        raise InvalidArgument("--password and --password-stdin are mutually exclusive")
    if password is not None:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
                   err=True)
    if password_stdin:
        if not username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    host = engine.registry_host(server)
    creds = engine.stored(host) if username is None and password is None else None
    if creds is not None:
        pass  # Docker: "Authenticating with existing credentials..."
    else:
        if username is None:
            if not sys.stdin.isatty():
                raise InvalidArgument("Cannot perform an interactive login from a non TTY "
                                      "device")
            username = click.prompt("Username", prompt_suffix=": ")
        if password is None:
            if not sys.stdin.isatty():
                raise InvalidArgument("Cannot perform an interactive login from a non TTY "
                                      "device")
            import getpass

            password = getpass.getpass("Password: ")
        if not username or not password:
            raise InvalidArgument("Username and password are required")
        creds = engine.Credentials(username, password)
    path = engine.login(host, creds)
    click.echo(f"WARNING! Your password will be stored unencrypted in {path}.", err=True)
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("server", required=False, metavar="[SERVER]")
def logout(server: str | None) -> None:
    """Log out from a registry (default Docker Hub)."""
    from minidock.engine.distribution import login as engine

    key, removed = engine.logout(engine.registry_host(server))
    if removed:
        click.echo(f"Removing login credentials for {key}")
    else:
        click.echo(f"Not logged in to {key}")
