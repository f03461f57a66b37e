"""Registry credentials in a Docker-compatible ``config.json``.

The file is docker/cli's (cli/config/configfile)::

    {"auths": {"https://index.docker.io/v1/": {"auth": "<base64 user:password>"},
               "localhost:5000":              {"auth": "..."}},
     "credsStore": "pass",                      # optional: docker-credential-pass holds them
     "credHelpers": {"gcr.io": "gcloud"}}       # optional: a helper per registry

minidock writes ``~/.minidock/config.json`` (``MINIDOCK_AUTH_CONFIG`` names another file), mode
0600 in a 0700 directory, replaced atomically, keeping whatever else the file holds. It reads
that file first and then Docker's own (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``), so an existing ``docker login`` works; a ``credsStore`` or
``credHelpers`` entry there is honoured by running ``docker-credential-<name> get``, the
credential-helper protocol (server URL on stdin, ``{"Username","Secret"}`` JSON on stdout).

Keys: Docker Hub is always ``https://index.docker.io/v1/`` (the v1 index URL Docker has used
since the start); any other registry is its ``host[:port]``. Lookups normalize keys the way
docker/cli's ConvertToHostname does (drop the scheme and any path), so older entries such as
``https://localhost:5000/v1/`` still match.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess

from minidock.errors import InvalidArgument
from minidock.jsonobj import parse_object
from minidock.records import field, record
from minidock.storage.atomic import atomic_write

AUTH_CONFIG_ENV = "MINIDOCK_AUTH_CONFIG"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
MAX_FILE = 4 << 20


@record(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def default_path() -> str:
    env = os.environ.get(AUTH_CONFIG_ENV)
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".minidock", "config.json")


def docker_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def hostname_of(key: str) -> str:
    """docker/cli's ConvertToHostname: ``https://host:5000/v1/`` -> ``host:5000``."""
    stripped = key
    for prefix in ("http://", "https://"):
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix):]
            break
    return stripped.split("/", 1)[0]


def server_key(server: str) -> str:
    """The key a registry's credentials are stored under (Docker Hub: the v1 index URL)."""
    host = hostname_of(server.strip())
    if not host:
        raise InvalidArgument(f"invalid registry address {server!r}")
    if host in _HUB_HOSTS:
        return DOCKER_HUB_KEY
    return host


def encode_auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def decode_auth(value: str) -> Credentials:
    """``base64(user:password)`` -> Credentials; the password may itself contain ``:``."""
    try:
        raw = base64.b64decode(value, validate=False).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid auth entry in credentials file: {e}") from e
    user, sep, password = raw.partition(":")
    if not sep:
        raise InvalidArgument("invalid auth entry in credentials file: no ':' in it")
    return Credentials(user, password)


def _load(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as e:
        raise InvalidArgument(f"read {path}: {e.strerror}") from e
    if len(data) > MAX_FILE:
        raise InvalidArgument(f"read {path}: larger than {MAX_FILE} bytes")
    if not data.strip():
        return {}
    return parse_object(data, f"parse {path}")


def lookup_auths(doc: dict[str, object], key: str) -> Credentials | None:
    """The ``auths`` entry of ``doc`` for ``key`` (exact first, then by hostname)."""
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    want = hostname_of(key)
    candidates = [key] + [k for k in auths if k != key and hostname_of(k) == want]
    if key == DOCKER_HUB_KEY:
        candidates += [k for k in auths if hostname_of(k) in _HUB_HOSTS and k not in candidates]
    for k in candidates:
        entry = auths.get(k)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            return decode_auth(entry["auth"])
        # An old format kept them apart; docker/cli still reads it.
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


def _helper_for(doc: dict[str, object], key: str) -> str | None:
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        name = helpers.get(hostname_of(key)) or helpers.get(key)
        if isinstance(name, str) and name:
            return name
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _run_helper(helper: str, key: str) -> Credentials | None:
    """``docker-credential-<helper> get``: server on stdin, JSON on stdout; None if unknown."""
    if "/" in helper or helper.startswith("."):
        return None
    try:
        proc = subprocess.run([f"docker-credential-{helper}", "get"], input=key.encode(),
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None  # "credentials not found in native keychain" and the like
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return None
    user, secret = doc.get("Username"), doc.get("Secret")
    # "<token>" marks an OAuth identity token, which the v2 token flow would need to
    # exchange with a refresh grant; minidock does not do that.
    if not isinstance(user, str) or not isinstance(secret, str) or user == "<token>":
        return None
    return Credentials(user, secret)


class CredentialStore:
    """minidock's credentials file, with Docker's as a read-only fallback."""

    def __init__(self, path: str | None = None, fallback: str | None = None) -> None:
        self.path = path or default_path()
        # With an explicit file (tests, MINIDOCK_AUTH_CONFIG), Docker's is still consulted
        # unless the caller passes fallback="" to turn it off.
        self.fallback = docker_path() if fallback is None else fallback

    def get(self, server: str) -> Credentials | None:
        key = server_key(server)
        found = lookup_auths(_load(self.path), key)
        if found is not None:
            return found
        if self.fallback and os.path.abspath(self.fallback) != os.path.abspath(self.path):
            doc = _load(self.fallback)
            helper = _helper_for(doc, key)
            if helper is not None:
                via_helper = _run_helper(helper, key)
                if via_helper is not None:
                    return via_helper
            return lookup_auths(doc, key)
        return None

    def store(self, server: str, creds: Credentials) -> str:
        """Save ``creds`` for ``server`` (0600, atomically); returns the key used."""
        key = server_key(server)
        doc = _load(self.path)
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        # Drop other spellings of the same registry, so a lookup cannot find a stale one.
        for k in [k for k in auths if k != key and server_key(k) == key]:
            del auths[k]
        auths[key] = {"auth": encode_auth(creds.username, creds.password)}
        doc["auths"] = auths
        self._write(doc)
        return key

    def erase(self, server: str) -> bool:
        """Forget ``server``'s credentials in minidock's file; False if there were none."""
        key = server_key(server)
        doc = _load(self.path)
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            return False
        doomed = [k for k in auths if server_key(k) == key]
        if not doomed:
            return False
        for k in doomed:
            del auths[k]
        self._write(doc)
        return True

    def _write(self, doc: dict[str, object]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700, exist_ok=True)
        body = json.dumps(doc, indent="\t") + "\n"
        atomic_write(self.path, body.encode(), 0o600)
