"""``login`` and ``logout``: credentials checked against a registry, then kept (or dropped).

The CLI asks the user; this module talks to the registry and the credential store:

    registry_host(server)     the ``host[:port]`` a login is for (Docker Hub's aliases folded)
    stored(host)              the credentials kept for it, if any
    login(host, creds)        check them with the registry (401 -> AuthenticationError), keep
                              them; returns the file they went to
    logout(host)              drop them; returns (the key they were kept under, were they)
"""

from __future__ import annotations

import os

from minidock.errors import AuthenticationError, InvalidArgument
from minidock.image.credentials import Credentials, CredentialStore, hostname_of, server_key

__all__ = ["Credentials", "login", "logout", "registry_host", "stored"]


def registry_host(server: str | None) -> str:
    """The registry ``host[:port]`` a login is for (default Docker Hub)."""
    host = hostname_of(server.strip()) if server else "docker.io"
    if not host:
        raise InvalidArgument(f"invalid registry address {server!r}")
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def stored(host: str) -> Credentials | None:
    return CredentialStore().get(host)


def login(host: str, creds: Credentials) -> str:
    """Check ``creds`` with the registry, then keep them; the credentials file's path."""
    from minidock.image.distribution import RegistryClient
    from minidock.settings import load_engine_config

    client = RegistryClient(host, load_engine_config(), lambda _host: creds, push=True)
    try:
        client.check_login()
    except AuthenticationError as e:
        raise AuthenticationError(f"login to {host}: {e}") from None
    finally:
        client.close()
    store = CredentialStore()
    store.store(host, creds)
    return os.path.abspath(store.path)


def logout(host: str) -> tuple[str, bool]:
    """Forget the credentials of ``host``: (the key they were kept under, were there any)."""
    return server_key(host), CredentialStore().erase(host)
