"""The registry client pull and push talk through: this engine's settings, stored logins."""

from __future__ import annotations

from typing import Any

from minidock.image.reference import Reference


def registry_client(ref: Reference, push: bool = False) -> Any:
    """A client for ``ref``'s registry (mirrors and insecure registries from the settings,
    credentials from ``login``); ``push`` skips the pull mirrors."""
    from minidock.image.credentials import CredentialStore
    from minidock.image.distribution import RegistryClient
    from minidock.settings import load_engine_config

    creds = CredentialStore()
    return RegistryClient(ref.domain, load_engine_config(), creds.get, push=push)
