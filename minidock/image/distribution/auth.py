"""Registry authentication: challenges, bearer tokens and their cache, basic auth, scopes.

Pure: the client (client.py) sends the requests; this module reads a ``WWW-Authenticate``
header, picks the challenge minidock answers, builds the token request, reads the token
server's answer and keeps tokens until they expire::

    401  WWW-Authenticate: Bearer realm="https://auth.example/token",service="reg"
      -> GET https://auth.example/token?service=reg&scope=repository:R:pull   (Basic user:pass)
      -> {"token": T, "expires_in": 300}    -> TokenCache[(realm, service, scopes, user)] = T
    401  WWW-Authenticate: Basic realm="reg"  -> Authorization: Basic base64(user:pass)
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence

from minidock.errors import RegistryError
from minidock.image.credentials import Credentials
from minidock.jsonobj import parse_object
from minidock.records import field, record

MAX_TOKEN_RESPONSE = 1 << 20

# Docker treats a token as valid for at least a minute, whatever the server says.
MIN_TOKEN_LIFETIME = 60


# --- WWW-Authenticate (RFC 7235) -----------------------------------------------------------


@record(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: lowercased scheme and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_BARE_VALUE = re.compile(r"[^,\s]+")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value into challenges.

    Grammar (RFC 7235 section 4.1), several challenges separated by commas::

        challenge  = auth-scheme [ 1*SP ( token68 / #( token "=" ( token / quoted-string ) ) ) ]

    The scheme is case-insensitive (registries send ``Bearer``, some proxies ``bearer``);
    parameter names are lowercased, values kept as sent (quoted strings unescaped). The
    difficulty is that a comma separates both parameters and challenges: after a comma, a
    token followed by ``=`` is another parameter, anything else starts a new challenge.
    """
    out: list[Challenge] = []
    i, n = 0, len(header)

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and header[i] in chars:
            i += 1

    while i < n:
        skip(" \t,")
        m = _TOKEN_CHARS.match(header, i)
        if not m:
            break  # garbage: keep what was understood
        scheme = m.group(0).lower()
        i = m.end()
        params: dict[str, str] = {}
        out.append(Challenge(scheme, params))
        skip(" \t")
        # token68 form (``Basic abc==``): one opaque token, no ``key=value`` after it.
        # (``realm="x"`` and ``realm=x`` continue past the "=", so they never match here.)
        m68 = _TOKEN68.match(header, i)
        if m68 and (m68.end() == n or header[m68.end()] in " \t,"):
            params["token68"] = m68.group(0)
            i = m68.end()
            continue
        while i < n:
            skip(" \t,")
            start = i
            m = _TOKEN_CHARS.match(header, i)
            if not m:
                break
            key = m.group(0).lower()
            i = m.end()
            skip(" \t")
            if i >= n or header[i] != "=":
                i = start  # not a parameter: the next challenge's scheme
                break
            i += 1
            skip(" \t")
            if i < n and header[i] == '"':
                i += 1
                value: list[str] = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(header[i])
                    i += 1
                i += 1  # the closing quote (or the end of a broken header)
                params[key] = "".join(value)
            else:
                # RFC 7235 wants a token here; servers also send bare URLs (":" and "/" are
                # not token characters), so take everything up to the next comma or space.
                m = _BARE_VALUE.match(header, i)
                params[key] = m.group(0) if m else ""
                i = m.end() if m else i
            skip(" \t")
            if i < n and header[i] != ",":
                break  # malformed; stop with what we have
    return out


def pick_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge minidock answers: Bearer (token auth) before Basic; others unsupported."""
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


# --- bearer tokens -------------------------------------------------------------------------


def token_url(c: Challenge, scopes: Sequence[str], account: str | None,
              offline: bool = False) -> str:
    """The GET of distribution's token spec: the realm with service, scopes and account."""
    realm = c.params.get("realm", "")
    query: list[tuple[str, str]] = []
    if c.params.get("service"):
        query.append(("service", c.params["service"]))
    query += [("scope", s) for s in scopes]
    if account is not None:
        query.append(("account", account))
    if offline:
        query += [("offline_token", "true"), ("client_id", "minidock")]
    sep = "&" if urllib.parse.urlsplit(realm).query else "?"
    return realm + (sep + urllib.parse.urlencode(query) if query else "")


def token_key(c: Challenge, scopes: Sequence[str], user: str) -> tuple[str, ...]:
    """What a cached token is valid for: its realm and service, these scopes, this user."""
    return (c.params.get("realm", ""), c.params.get("service", ""), " ".join(sorted(scopes)),
            user)


def parse_token_response(body: bytes) -> tuple[str, int]:
    """A token server's JSON answer -> (token, lifetime in seconds).

    distribution's token spec: ``token`` (or the OAuth2 name ``access_token``; when both are
    present they are the same), ``expires_in`` in seconds, defaulting to 60 and raised to 60
    when lower, as Docker does.
    """
    doc = parse_object(body, "token server sent invalid JSON", RegistryError)
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError("token server sent no token")
    if any(c in token for c in "\r\n"):
        raise RegistryError("token server sent an invalid token")
    expires = doc.get("expires_in")
    lifetime = expires if isinstance(expires, int) and not isinstance(expires, bool) else 0
    return token, max(lifetime, MIN_TOKEN_LIFETIME)


class TokenCache:
    """Bearer tokens per (realm, service, scopes, user), each kept until it expires.

    The clock is injectable so tests can move time. Thread-safe: parallel downloads share it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            found = self._tokens.get(key)
            if found is None:
                return None
            token, expires_at = found
            if self._clock() >= expires_at:
                del self._tokens[key]
                return None
            return token

    def put(self, key: tuple[str, ...], token: str, lifetime: float) -> None:
        with self._lock:
            self._tokens[key] = (token, self._clock() + lifetime)

    def drop(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


# One cache per process: a pull and the automatic pull of `run` share their tokens.
TOKENS = TokenCache()


# --- basic auth and scopes -----------------------------------------------------------------


def basic_authorization(creds: Credentials) -> str:
    """The ``Authorization`` value of HTTP basic auth for ``creds``."""
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def repository_scopes(repo: str, actions: Iterable[str] = ("pull",)) -> list[str]:
    return [f"repository:{repo}:{','.join(actions)}"]
