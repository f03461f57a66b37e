"""``minidock login`` / ``logout`` against real registries: htpasswd over TLS, JWT token auth,
and an open one. Credentials are checked before they are saved, in a Docker-compatible file
with mode 0600."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import registry as reglib
from conftest import MD, describe

pytestmark = [pytest.mark.registry]


@pytest.fixture
def auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / ".minidock" / "config.json"
    monkeypatch.setenv("MINIDOCK_AUTH_CONFIG", str(path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return path


def ok(md: MD, *args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    r = md.run(*args, **kwargs)
    assert r.returncode == 0, describe(r)
    return r


def b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_login_tls_htpasswd_then_logout(md: MD, registry_tls: reglib.RegistryServer,
                                        client_config: Path, auth_file: Path) -> None:
    user, password = registry_tls.username, registry_tls.password
    assert user and password
    r = ok(md, "login", "-u", user, "--password-stdin", registry_tls.host, input=password + "\n")
    assert r.stdout == "Login Succeeded\n"
    assert f"stored unencrypted in {auth_file}" in r.stderr
    assert json.loads(auth_file.read_text())["auths"] == {
        registry_tls.host: {"auth": b64(user, password)}}
    assert stat.S_IMODE(os.stat(auth_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(auth_file.parent).st_mode) == 0o700

    # logging in again with the stored credentials (no -u/-p) checks them again
    assert ok(md, "login", f"https://{registry_tls.host}").stdout == "Login Succeeded\n"

    r = ok(md, "logout", registry_tls.host)
    assert r.stdout == f"Removing login credentials for {registry_tls.host}\n"
    assert json.loads(auth_file.read_text())["auths"] == {}
    assert ok(md, "logout", registry_tls.host).stdout == (
        f"Not logged in to {registry_tls.host}\n")


def test_wrong_password_is_refused_and_not_saved(
    md: MD, registry_tls: reglib.RegistryServer, client_config: Path, auth_file: Path
) -> None:
    r = md.run("login", "-u", "alice", "-p", "nope", registry_tls.host)
    assert r.returncode == 125, describe(r)
    assert "WARNING! Using --password via the CLI is insecure" in r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"Error: login to {registry_tls.host}: unauthorized: incorrect username or password")
    assert not auth_file.exists()


def test_login_token_registry(md: MD, registry_token: reglib.RegistryServer,
                              auth_file: Path) -> None:
    issuer = registry_token.issuer
    assert issuer is not None and registry_token.username and registry_token.password
    issuer.clear()
    ok(md, "login", "-u", registry_token.username, "--password-stdin", registry_token.host,
       input=registry_token.password)
    assert [(r.account, r.authenticated) for r in issuer.requests] == [
        (registry_token.username, True)]
    issuer.clear()
    r = md.run("login", "-u", registry_token.username, "--password-stdin", registry_token.host,
               input="wrong")
    assert r.returncode == 125, describe(r)
    assert "unauthorized: incorrect username or password" in r.stderr
    # the good credentials stay
    assert json.loads(auth_file.read_text())["auths"][registry_token.host]["auth"] == b64(
        registry_token.username, registry_token.password)


def test_login_to_an_open_registry(md: MD, registry: reglib.RegistryServer,
                                   auth_file: Path) -> None:
    ok(md, "login", "-u", "x", "--password-stdin", registry.host, input="y")
    assert json.loads(auth_file.read_text())["auths"][registry.host] == {"auth": b64("x", "y")}


def test_login_argument_errors(md: MD, registry: reglib.RegistryServer,
                               auth_file: Path) -> None:
    for args, message in [
        (("--password-stdin", registry.host), "Must provide --username with --password-stdin"),
        (("-u", "a", "-p", "b", "--password-stdin", registry.host), "mutually exclusive"),
        (("-u", "a", registry.host), "Cannot perform an interactive login from a non TTY"),
    ]:
        r = md.run("login", *args)
        assert r.returncode == 125 and message in r.stderr, describe(r)
    assert not auth_file.exists()


def test_logout_keeps_other_entries(md: MD, auth_file: Path) -> None:
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": b64("a", "b")},
        "localhost:5000": {"auth": b64("c", "d")}}, "credsStore": ""}))
    assert ok(md, "logout").stdout == "Removing login credentials for https://index.docker.io/v1/\n"
    doc = json.loads(auth_file.read_text())
    assert doc["auths"] == {"localhost:5000": {"auth": b64("c", "d")}} and "credsStore" in doc
