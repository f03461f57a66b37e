"""A client for the registry HTTP API v2 (the OCI distribution spec), on the standard library.

http.client and ssl, not requests or httpx: this module loads only when an image is pulled,
pushed or logged in to, and the whole protocol fits in one file. The pure parts (challenge
parsing, token cache, redirect policy, manifest validation, platform selection, error
wording) come first and are unit-tested; the socket side comes last.

One pull, as it goes over the wire::

    GET  /v2/                                   -> 200 (open) or 401 + WWW-Authenticate
    GET  <realm>?service=S&scope=repository:R:pull   (Basic user:pass, or anonymous)
                                                -> {"token": T, "expires_in": 300}
    GET  /v2/R/manifests/<tag>    Accept: OCI index, OCI manifest, Docker list, Docker v2
         Authorization: Bearer T                -> the manifest (or an index: pick a platform,
                                                   GET /v2/R/manifests/<digest> of it)
    GET  /v2/R/blobs/<config digest>            -> the image config
    GET  /v2/R/blobs/<layer digest>             -> 200, or 307 to a storage host: followed
                                                   without the Authorization header

Trust: nothing a registry sends is used before it is checked. A manifest is at most
MAX_MANIFEST_SIZE bytes, hashed, and compared with the digest asked for (or with the
``Docker-Content-Digest`` header when asked by tag); blobs are hashed as they stream and must
end at exactly the size and digest of their descriptor. Credentials go only to the registry's
own host (and its token realm): a redirect to another host loses the Authorization header, and
a redirect from https to http is refused.

Transient failures (connection refused or reset, a truncated body, 5xx) are retried a bounded
number of times with exponential backoff; a blob download resumes where it stopped with a
``Range`` request. 401, 403, 404 and 429 are explained in one line each.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from minidock.errors import AuthenticationError, InvalidArgument, RegistryError
from minidock.image.config import EngineConfig
from minidock.image.credentials import Credentials
from minidock.image.reference import validate_digest
from minidock.jsonobj import parse_object

# --- media types and limits ----------------------------------------------------------------

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# Layers minidock can apply (layer.py sniffs the compression by magic number anyway). The
# "foreign"/"nondistributable" kinds are fetched from the registry like any other blob.
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_FOREIGN_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

# containerd and distribution limit manifests to 4 MiB; configs get more room (long
# histories), still far below what could exhaust memory.
MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 8 << 20
MAX_JSON_DEPTH = 64
MAX_LAYERS = 125
MAX_TOKEN_RESPONSE = 1 << 20
MAX_ERROR_BODY = 64 << 10

# Docker treats a token as valid for at least a minute, whatever the server says.
MIN_TOKEN_LIFETIME = 60

RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)
TIMEOUT = 60.0
MAX_REDIRECTS = 10
CHUNK = 1 << 20
USER_AGENT = "minidock/0.1 (python http.client)"


# --- WWW-Authenticate (RFC 7235) -----------------------------------------------------------


@dataclass(frozen=True)
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


# --- redirects -----------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) with the default port made explicit, for same-origin checks."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return parts.scheme, f"{host}:{port}"


def redirect_target(current: str, location: str, auth_origin: str) -> tuple[str, bool]:
    """Where a redirect leads and whether the Authorization header may follow it.

    ``auth_origin`` is the registry URL the credentials belong to. The policy
    (docs/security.md): https -> http is refused outright; the header goes only to the
    registry's own scheme, host and port, so a 307 to a storage host (S3, a CDN) gets no
    credentials, and once dropped it is not restored on a later hop.
    """
    target = urllib.parse.urljoin(current, location.strip())
    scheme = urllib.parse.urlsplit(target).scheme
    if scheme not in ("http", "https"):
        raise RegistryError(f"refusing redirect to {target!r}: not an http(s) URL")
    if urllib.parse.urlsplit(current).scheme == "https" and scheme == "http":
        raise RegistryError(f"refusing redirect from {current} to {target}: https to http")
    return target, _origin(target) == _origin(auth_origin)


# --- JSON documents --------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def check_json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before json.loads recurses into it."""
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', data)):
        if m.group(0) in b"[{":
            depth += 1
            if depth > limit:
                raise RegistryError(f"JSON document nested deeper than {limit} levels")
        else:
            depth -= 1


def load_json(data: bytes, what: str) -> dict[str, Any]:
    check_json_depth(data)
    return parse_object(data, f"invalid {what}", RegistryError)


# --- platforms -----------------------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "i386": ("386", None),
    "i686": ("386", None),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def normalized(self) -> Platform:
        """containerd's Normalize: aliases resolved, arm64 -> v8 and arm -> v7 by default."""
        arch, variant = self.architecture.lower(), (self.variant or None)
        if arch in _ARCH_ALIASES:
            arch, implied = _ARCH_ALIASES[arch]
            variant = variant or implied
        if variant is not None:
            variant = variant.lower()
            if not variant.startswith("v") and variant.isdigit():
                variant = "v" + variant
        if arch == "arm64" and variant in (None, "v8", "v8.0"):
            variant = "v8"  # "arm64 without variant = v8" (image-spec)
        elif arch == "arm" and variant is None:
            variant = "v7"
        elif arch == "amd64" and variant == "v1":
            variant = None
        return Platform(self.os.lower(), arch, variant)


def parse_platform(value: str) -> Platform:
    """``os/arch[/variant]`` as ``--platform`` takes it (``linux/arm64/v8``, ``linux/amd64``)."""
    parts = value.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {value!r}: want os/arch[/variant]")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()


def _platform_rank(want: Platform, have: Platform) -> int | None:
    """How well ``have`` serves ``want``: 0 exact, higher worse, None unusable.

    Like containerd's default matcher: os and architecture must be equal; the variant must
    be equal, except that an arm v7 machine runs v6 and v5 images (ranked after v7).
    """
    w, h = want.normalized(), have.normalized()
    if w.os != h.os or w.architecture != h.architecture:
        return None
    if w.variant == h.variant:
        return 0
    if w.architecture == "arm" and w.variant and h.variant:
        try:
            wv, hv = int(w.variant[1:]), int(h.variant[1:])
        except ValueError:
            return None
        if 5 <= hv < wv:
            return wv - hv
    return None


# --- manifests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise RegistryError(f"invalid manifest: {where} is not an object")
    media_type = obj.get("mediaType")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise RegistryError(f"invalid manifest: {where} has no mediaType")
    if not isinstance(digest, str):
        raise RegistryError(f"invalid manifest: {where} has no digest")
    if not digest.startswith("sha256:"):
        raise RegistryError(f"invalid manifest: {where}: unsupported digest {digest[:80]!r}")
    try:
        validate_digest(digest)
    except InvalidArgument:
        raise RegistryError(f"invalid manifest: {where}: invalid digest {digest[:80]!r}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"invalid manifest: {where} has an invalid size {size!r}")
    platform = None
    raw_platform = obj.get("platform")
    if isinstance(raw_platform, dict):
        os_, arch = raw_platform.get("os"), raw_platform.get("architecture")
        variant = raw_platform.get("variant")
        if isinstance(os_, str) and isinstance(arch, str):
            platform = Platform(os_, arch, variant if isinstance(variant, str) and variant
                                else None)
    annotations = obj.get("annotations")
    return Descriptor(
        media_type, digest, size, platform,
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict)
        else {},
    )


def _bare(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def parse_manifest(data: bytes, content_type: str | None = None) -> ImageManifest | ImageIndex:
    """Validate a manifest or index (schema 2 / OCI) and return its typed form.

    The kind comes from the body's ``mediaType``, else the Content-Type, else the shape of
    the document. Refused: schema 1, unknown media types, a document that has both
    ``manifests`` and ``layers`` (ambiguous: which one would a client use?), a body
    ``mediaType`` contradicting the Content-Type, layer and config media types minidock
    cannot use, more than MAX_LAYERS layers.
    """
    if len(data) > MAX_MANIFEST_SIZE:
        raise RegistryError(f"manifest too large: {len(data)} bytes (limit {MAX_MANIFEST_SIZE})")
    doc = load_json(data, "manifest")
    header_type = _bare(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise RegistryError("invalid manifest: mediaType is not a string")
    if header_type in SCHEMA1 or body_type in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RegistryError("schema 1 manifests are not supported (the image is too old; "
                            "push it again with a current client)")
    if doc.get("schemaVersion") != 2:
        raise RegistryError(f"invalid manifest: schemaVersion {doc.get('schemaVersion')!r}, "
                            "want 2")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise RegistryError("invalid manifest: it has both manifests and layers/config")
    known = INDEX_TYPES | MANIFEST_TYPES
    if body_type and header_type in known and body_type != header_type:
        raise RegistryError(f"invalid manifest: mediaType {body_type} does not match the "
                            f"Content-Type {header_type}")
    media_type = body_type or (header_type if header_type in known else None)
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else ""
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise RegistryError("invalid index: manifests is not a list")
        return ImageIndex(media_type, tuple(
            _descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)))
    if media_type not in MANIFEST_TYPES:
        raise RegistryError(f"unsupported manifest media type {media_type[:100]!r}")
    config = _descriptor(doc.get("config"), "config")
    if config.media_type not in CONFIG_TYPES:
        raise RegistryError(f"not a container image: config media type "
                            f"{config.media_type[:100]!r}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise RegistryError("invalid manifest: layers is not a list")
    if len(raw_layers) > MAX_LAYERS:
        raise RegistryError(f"invalid manifest: {len(raw_layers)} layers, the limit is "
                            f"{MAX_LAYERS}")
    layers = tuple(_descriptor(e, f"layers[{i}]") for i, e in enumerate(raw_layers))
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise RegistryError(f"unsupported layer media type {layer.media_type[:100]!r}")
    return ImageManifest(media_type, config, layers)


def select_manifest(index: ImageIndex, want: Platform) -> Descriptor:
    """The index entry for ``want``: the best match, the first of equals (image-spec)."""
    best: tuple[int, int] | None = None
    for pos, entry in enumerate(index.manifests):
        if entry.platform is None or entry.media_type not in MANIFEST_TYPES:
            continue  # attestations, nested indexes, entries without platform
        rank = _platform_rank(want, entry.platform)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, pos)
    if best is None:
        raise RegistryError(f"no matching manifest for {want} in the manifest list entries")
    return index.manifests[best[1]]


def config_platform(config: dict[str, Any]) -> Platform:
    os_ = config.get("os")
    arch = config.get("architecture")
    variant = config.get("variant")
    return Platform(os_ if isinstance(os_, str) else "", arch if isinstance(arch, str) else "",
                    variant if isinstance(variant, str) and variant else None)


def platform_matches(want: Platform, have: Platform) -> bool:
    return _platform_rank(want, have) is not None


# --- errors --------------------------------------------------------------------------------

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _clean(text: str, limit: int = 200) -> str:
    """Registry-supplied text, made safe for one terminal line."""
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def registry_errors(body: bytes) -> list[tuple[str, str]]:
    """(code, message) pairs of a registry error body ``{"errors":[{code,message,detail}]}``."""
    try:
        doc = json.loads(body[:MAX_ERROR_BODY])
    except (ValueError, RecursionError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        # token servers answer OAuth2-style: {"error": "...", "error_description": "..."}
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            desc = doc.get("error_description") or doc.get("details") or ""
            return [(_clean(doc["error"]), _clean(str(desc)))]
        return []
    out = []
    for e in errors:
        if isinstance(e, dict):
            out.append((_clean(str(e.get("code") or "")), _clean(str(e.get("message") or ""))))
    return out


def explain_status(status: int, body: bytes, what: str, subject: str,
                   headers: dict[str, str] | None = None) -> RegistryError:
    """One line for an unexpected status: ``manifest unknown: 127.0.0.1:5000/x:latest``.

    ``what`` is the kind of object (manifest, blob, ...), ``subject`` the full reference.
    """
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    errs = registry_errors(body)
    message = next((m for _, m in errs if m), "")
    if status == 404:
        # MANIFEST_UNKNOWN (no such tag) and NAME_UNKNOWN (no such repository) read the
        # same to a user: that reference is not there.
        return RegistryError(f"{what} unknown: {subject}")
    if status == 401:
        return AuthenticationError(f"unauthorized: {message or 'authentication required'}"
                                   + (f": {subject}" if subject else ""))
    if status == 403:
        return AuthenticationError(
            f"denied: {message or 'requested access to the resource is denied'}"
            + (f": {subject}" if subject else ""))
    if status == 429:
        limit = headers.get("ratelimit-limit", "")
        retry = headers.get("retry-after", "")
        extra = "".join([
            f" (limit {_clean(limit.split(';')[0], 20)})" if limit else "",
            f"; retry after {_clean(retry, 40)} s" if retry else "",
        ])
        return RegistryError(f"toomanyrequests: {message or 'too many requests'}{extra}")
    reason = http.client.responses.get(status, "")
    detail = f": {message}" if message else ""
    return RegistryError(f"{what} {subject}: registry answered {status} {reason}{detail}")


# --- endpoints -----------------------------------------------------------------------------

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """Where to send a registry's requests: ``scheme://netloc`` plus how to check TLS."""

    scheme: str
    netloc: str
    verify: bool = True
    mirror: bool = False

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def endpoints_for(domain: str, config: EngineConfig, push: bool = False) -> list[Endpoint]:
    """The endpoints to try for a registry domain, in order (Docker's lookupV2Endpoints).

    docker.io: the mirrors first (pulls only), then registry-1.docker.io over https. An
    insecure registry: https first, then plain http. Certificates of an insecure registry
    are verified only when certs.d has a CA for it.
    """
    out: list[Endpoint] = []
    if domain in (DOCKER_HUB_DOMAIN, "index.docker.io"):
        if not push:
            for mirror in config.registry_mirrors:
                parts = urllib.parse.urlsplit(mirror)
                if parts.scheme in ("http", "https") and parts.netloc:
                    out.append(Endpoint(parts.scheme, parts.netloc,
                                        verify=not config.is_insecure(parts.netloc)
                                        or bool(config.ca_files(parts.netloc)),
                                        mirror=True))
        out.append(Endpoint("https", DOCKER_HUB_REGISTRY))
        return out
    if config.is_insecure(domain):
        verify = bool(config.ca_files(domain))
        return [Endpoint("https", domain, verify=verify), Endpoint("http", domain)]
    return [Endpoint("https", domain)]


# --- the transport: pooled connections, TLS per host -------------------------------------


def _transient(e: BaseException) -> bool:
    """Worth a retry: the connection failed or broke, not a certificate or name problem."""
    if isinstance(e, (ssl.SSLCertVerificationError, socket.gaierror)):
        return False
    if isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLEOFError):
        return False
    return isinstance(e, (OSError, http.client.HTTPException))


def _describe(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"x509: {e.verify_message or e.reason}"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host: {e.strerror}"
    if isinstance(e, http.client.IncompleteRead):
        short = f", {e.expected} bytes short" if isinstance(e.expected, int) else ""
        return f"unexpected EOF{short}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(e, http.client.RemoteDisconnected):
        return "server closed the connection"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


class Transport:
    """Keep-alive connections per (scheme, host:port), shared by threads; TLS per registry."""

    def __init__(self, config: EngineConfig, timeout: float = TIMEOUT) -> None:
        self.config = config
        self.timeout = timeout
        self._idle: dict[tuple[str, str, bool], list[http.client.HTTPConnection]] = {}
        # connection -> its pool key, for every connection handed out and not yet returned
        self._busy: dict[http.client.HTTPConnection, tuple[str, str, bool]] = {}
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def _context(self, netloc: str, verify: bool) -> ssl.SSLContext:
        key = (netloc, verify)
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        ctx = ssl.create_default_context()
        if verify:
            # Docker adds certs.d CAs to the system pool; so do we.
            for ca in self.config.ca_files(netloc):
                try:
                    ctx.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as e:
                    raise RegistryError(f"load CA certificate {ca}: {e}") from e
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        cert = self.config.client_cert(netloc)
        if cert is not None:
            try:
                ctx.load_cert_chain(cert[0], cert[1])
            except (OSError, ssl.SSLError) as e:
                raise RegistryError(f"load client certificate {cert[0]}: {e}") from e
        with self._lock:
            self._contexts[key] = ctx
        return ctx

    def _connection(self, scheme: str, netloc: str,
                    verify: bool) -> tuple[http.client.HTTPConnection, bool]:
        key = (scheme, netloc, verify)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                reused = idle.pop()
                self._busy[reused] = key
                return reused, True
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(netloc, timeout=self.timeout,
                                               context=self._context(netloc, verify))
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        with self._lock:
            self._busy[conn] = key
        return conn, False

    def release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            key = self._busy.pop(conn, None)
            if reusable and key is not None:
                self._idle.setdefault(key, []).append(conn)
                return
        conn.close()

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                verify: bool) -> Response:
        """Send one request (no redirects, no retries) and return the response, body unread.

        A kept-alive connection the server has closed meanwhile fails on first use; that
        one case is retried at once on a new connection.
        """
        parts = urllib.parse.urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        for attempt in (0, 1):
            conn, reused = self._connection(parts.scheme, parts.netloc, verify)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
            except BaseException as e:
                self.release(conn, False)
                if reused and attempt == 0 and isinstance(
                    e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                ):
                    continue
                raise
            return Response(self, conn, resp, url, method)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every connection, also those in use (unblocks threads reading from them)."""
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle] + list(self._busy)
            self._busy.clear()
            self._idle.clear()
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            conn.close()


class Response:
    """An HTTP response whose connection goes back to the pool once the body is read."""

    def __init__(self, transport: Transport, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse, url: str, method: str) -> None:
        self._transport = transport
        self._conn = conn
        self._resp = resp
        self.url = url
        self.status = resp.status
        self.reason = resp.reason
        self.headers = resp.headers
        self._done = method == "HEAD"
        self._closed = False
        if self._done:
            self.close()

    def header(self, name: str) -> str | None:
        return self._resp.getheader(name)

    def header_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items()}

    @property
    def length(self) -> int | None:
        return self._resp.length

    def read(self, size: int = CHUNK) -> bytes:
        data = self._resp.read(size)
        if not data:
            missing = self._resp.length
            if missing:
                # http.client's read(n) returns b"" when the server hangs up before the
                # Content-Length it announced ("might break compatibility" to raise): a
                # registry dying mid-blob would look like a short, complete body.
                self.close()
                raise http.client.IncompleteRead(b"", missing)
            self._done = True
            self.close()
        return data

    def read_all(self, limit: int, what: str) -> bytes:
        """The whole body, refusing more than ``limit`` bytes (announced or received)."""
        if self.length is not None and self.length > limit:
            self.close()
            raise RegistryError(f"{what} too large: {self.length} bytes (limit {limit})")
        parts: list[bytes] = []
        total = 0
        while True:
            data = self.read(min(CHUNK, limit + 1 - total))
            if not data:
                break
            parts.append(data)
            total += len(data)
            if total > limit:
                self.close()
                raise RegistryError(f"{what} too large: more than {limit} bytes")
        return b"".join(parts)

    def drain(self) -> bytes:
        """Read (a bounded part of) an error body, and let the connection go."""
        try:
            return self.read_all(MAX_ERROR_BODY, "error body")
        except (RegistryError, OSError, http.client.HTTPException):
            self.close()
            return b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reusable = self._done and not self._resp.will_close
        if self._done:
            # A fully read body has closed its file already; a HEAD's empty one has not, and
            # http.client refuses the next request on the connection until it is.
            self._resp.read()
        else:
            self._resp.close()
        self._transport.release(self._conn, reusable)


# --- the client ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestResult:
    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    """A session with one registry: endpoint choice, authentication, requests.

    ``credentials`` is looked up per endpoint host (``host[:port]``, or ``docker.io`` for
    registry-1.docker.io), so a mirror never receives Docker Hub's password.
    """

    def __init__(
        self,
        domain: str,
        config: EngineConfig,
        credentials: Callable[[str], Credentials | None] | None = None,
        *,
        push: bool = False,
        tokens: TokenCache | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.domain = domain
        self.config = config
        self._credentials = credentials or (lambda _host: None)
        self.endpoints = endpoints_for(domain, config, push=push)
        self.transport = Transport(config)
        self.tokens = tokens or TOKENS
        self._sleep = sleep
        self._endpoint: Endpoint | None = None
        self._tried: set[Endpoint] = set()
        self._challenge: Challenge | None = None
        self._ping_error: RegistryError | None = None
        self._lock = threading.Lock()

    # ---- endpoint selection and /v2/ ----

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            self.ping()
        assert self._endpoint is not None
        return self._endpoint

    def _creds_for(self, endpoint: Endpoint) -> Credentials | None:
        host = self.domain if endpoint.netloc == DOCKER_HUB_REGISTRY else endpoint.netloc
        return self._credentials(host)

    def ping(self) -> Endpoint:
        """GET /v2/ on each endpoint in turn until one answers like a registry.

        The answer also says how to authenticate: 200 (nothing), or 401 with challenges.
        """
        with self._lock:
            if self._endpoint is not None:
                return self._endpoint
            failures: list[str] = []
            for ep in self.endpoints:
                if ep in self._tried:
                    continue
                self._tried.add(ep)
                send = functools.partial(self.transport.request, "GET", ep.base + "/v2/",
                                         {"User-Agent": USER_AGENT}, None, ep.verify)
                try:
                    resp = self._with_retries(send, f"{ep.base}/v2/")
                except RegistryError as e:
                    failures.append(str(e))
                    continue
                body = resp.drain()
                if resp.status == 401:
                    challenge = pick_challenge(
                        parse_www_authenticate(resp.header("WWW-Authenticate") or ""))
                    if challenge is None:
                        failures.append(f"{ep.base}/v2/: unsupported authentication scheme "
                                        f"{_clean(resp.header('WWW-Authenticate') or '', 80)!r}")
                        continue
                    self._challenge = challenge
                elif resp.status != 200:
                    failures.append(str(explain_status(resp.status, body, "registry",
                                                       f"{ep.base}/v2/")))
                    continue
                self._endpoint = ep
                return ep
            if failures or self._ping_error is None:
                self._ping_error = RegistryError(
                    "; ".join(failures) or f"no endpoint left for {self.domain}")
            raise self._ping_error

    def _next_mirror_fallback(self) -> bool:
        """After a failure on a mirror, move on to the next endpoint (Docker Hub itself)."""
        if self._endpoint is None or not self._endpoint.mirror:
            return False
        with self._lock:
            self._endpoint = None
            self._challenge = None
        return any(ep not in self._tried for ep in self.endpoints)

    # ---- authentication ----

    def _token_key(self, c: Challenge, scopes: Sequence[str], user: str) -> tuple[str, ...]:
        return (c.params.get("realm", ""), c.params.get("service", ""), " ".join(sorted(scopes)),
                user)

    def _fetch_token(self, c: Challenge, scopes: Sequence[str], creds: Credentials | None,
                     offline: bool = False) -> str:
        """Ask the realm for a token (distribution's token spec, the GET flavour)."""
        realm = c.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"token server realm {_clean(realm, 100)!r} is not an http(s) URL")
        if parts.scheme == "http" and creds is not None and not self.config.is_insecure(
            parts.netloc
        ):
            raise RegistryError(f"refusing to send credentials to {realm}: plain http")
        query: list[tuple[str, str]] = []
        if c.params.get("service"):
            query.append(("service", c.params["service"]))
        query += [("scope", s) for s in scopes]
        if creds is not None:
            query.append(("account", creds.username))
        if offline:
            query += [("offline_token", "true"), ("client_id", "minidock")]
        sep = "&" if parts.query else "?"
        url = realm + (sep + urllib.parse.urlencode(query) if query else "")
        headers = {"User-Agent": USER_AGENT}
        if creds is not None:
            headers["Authorization"] = _basic(creds)
        verify = parts.scheme == "https" and (
            not self.config.is_insecure(parts.netloc) or bool(self.config.ca_files(parts.netloc))
        )
        resp = self._with_retries(
            lambda: self.transport.request("GET", url, headers, None, verify), realm)
        if resp.status != 200:
            body = resp.drain()
            if resp.status == 401 and creds is not None:
                raise AuthenticationError("unauthorized: incorrect username or password")
            raise explain_status(resp.status, body, "token", _clean(realm, 100))
        token, lifetime = parse_token_response(resp.read_all(MAX_TOKEN_RESPONSE, "token"))
        self.tokens.put(self._token_key(c, scopes, creds.username if creds else ""), token,
                        lifetime)
        return token

    def _authorization(self, scopes: Sequence[str]) -> str | None:
        c = self._challenge
        if c is None:
            return None
        creds = self._creds_for(self.endpoint)
        if c.scheme == "basic":
            return _basic(creds) if creds is not None else None
        key = self._token_key(c, scopes, creds.username if creds else "")
        token = self.tokens.get(key) or self._fetch_token(c, scopes, creds)
        return f"Bearer {token}"

    def _reauthenticate(self, resp: Response, scopes: Sequence[str]) -> bool:
        """A 401 on a request: take the new challenge, drop the cached token; retry?"""
        challenge = pick_challenge(parse_www_authenticate(resp.header("WWW-Authenticate") or ""))
        if challenge is None:
            return False
        creds = self._creds_for(self.endpoint)
        if challenge.scheme == "basic" and creds is None:
            return False
        if self._challenge is not None and self._challenge.scheme == "bearer":
            self.tokens.drop(self._token_key(self._challenge, scopes,
                                             creds.username if creds else ""))
        # The registry's own scope wins over ours when they differ only by actions it
        # wants (e.g. push needing pull too); keep ours otherwise.
        self._challenge = Challenge(challenge.scheme, {
            k: v for k, v in challenge.params.items() if k in ("realm", "service")})
        return True

    def check_login(self) -> None:
        """``docker login``: prove the stored credentials work, before they are saved."""
        ep = self.ping()
        creds = self._creds_for(ep)
        c = self._challenge
        if c is None:
            return  # an open registry: any credentials "work"
        if creds is None:
            raise AuthenticationError("unauthorized: no credentials given")
        if c.scheme == "bearer":
            # No scope: the token server authenticates the account (Docker's login does the
            # same with offline_token=true).
            self._fetch_token(c, [], creds, offline=True)
            return
        resp = self._with_retries(
            lambda: self.transport.request(
                "GET", ep.base + "/v2/", {"User-Agent": USER_AGENT, "Authorization": _basic(creds)},
                None, ep.verify),
            ep.base + "/v2/")
        body = resp.drain()
        if resp.status == 401:
            raise AuthenticationError("unauthorized: incorrect username or password")
        if resp.status != 200:
            raise explain_status(resp.status, body, "login", ep.base)

    # ---- requests ----

    def _with_retries(self, send: Callable[[], Response], what: str,
                      retry_5xx: bool = True) -> Response:
        """Call ``send`` until it answers, retrying connection errors and 5xx with backoff."""
        delays = iter(RETRY_DELAYS)
        while True:
            try:
                resp = send()
            except RegistryError:
                raise
            except Exception as e:
                delay = next(delays, None) if _transient(e) else None
                if delay is None:
                    raise RegistryError(f"{what}: {_describe(e)}") from e
                self._sleep(delay)
                continue
            if resp.status >= 500 and retry_5xx:
                delay = next(delays, None)
                if delay is not None:
                    resp.drain()
                    self._sleep(delay)
                    continue
            return resp

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Sequence[str],
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """One API call: auth, redirects (auth dropped off-origin), retries, one re-auth.

        5xx answers are retried only for GET and HEAD: a retried PATCH or POST could
        append twice to an upload; its connection errors are retried, as a request that
        never reached the registry.
        """
        ep = self.endpoint
        url = path if path.startswith(("http://", "https://")) else ep.base + path
        reauthenticated = False
        while True:
            resp = self._with_retries(
                lambda: self._follow(method, url, headers or {}, body, scopes), f"{method} {url}",
                retry_5xx=method in ("GET", "HEAD"))
            if resp.status == 401 and not reauthenticated and self._reauthenticate(resp, scopes):
                resp.drain()
                reauthenticated = True
                continue
            return resp

    def _follow(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                scopes: Sequence[str]) -> Response:
        ep = self.endpoint
        # An upload Location may name another host: credentials only go to the registry.
        send_auth = _origin(url) == _origin(ep.base)
        for _ in range(MAX_REDIRECTS + 1):
            h = {"User-Agent": USER_AGENT, **headers}
            if send_auth:
                auth = self._authorization(scopes)
                if auth:
                    h["Authorization"] = auth
            target = urllib.parse.urlsplit(url)
            verify = ep.verify if target.netloc == ep.netloc else (
                target.scheme == "https" and (not self.config.is_insecure(target.netloc)
                                              or bool(self.config.ca_files(target.netloc))))
            resp = self.transport.request(method, url, h, body, verify)
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = resp.header("Location")
                resp.drain()
                if not location:
                    raise RegistryError(f"{method} {url}: redirect without a Location")
                url, keep = redirect_target(url, location, ep.base)
                send_auth = send_auth and keep
                continue
            return resp
        raise RegistryError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    # ---- manifests ----

    def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest a tag points to (``Docker-Content-Digest`` of a HEAD), or None.

        HEAD does not count against Docker Hub's pull rate limit; Docker uses it the same way
        to notice that an image is up to date.
        """
        try:
            resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}",
                                scopes=[f"repository:{repo}:pull"],
                                headers={"Accept": MANIFEST_ACCEPT})
        except RegistryError:
            return None
        value = resp.header("Docker-Content-Digest")
        if resp.status != 200 or not value:
            return None
        try:
            return validate_digest(value.strip())
        except InvalidArgument:
            return None

    def get_manifest(self, repo: str, reference: str, subject: str,
                     expected: Descriptor | None = None) -> ManifestResult:
        """GET a manifest or index by tag or digest, verified before it is returned.

        By digest (or with ``expected``): the bytes must hash to it (and have its size). By
        tag: the ``Docker-Content-Digest`` header, when sent, must equal the hash.
        """
        while True:
            try:
                return self._get_manifest(repo, reference, subject, expected)
            except RegistryError:
                if not self._next_mirror_fallback():
                    raise

    def _get_manifest(self, repo: str, reference: str, subject: str,
                      expected: Descriptor | None) -> ManifestResult:
        if expected is not None and expected.size > MAX_MANIFEST_SIZE:
            raise RegistryError(f"manifest too large: {expected.size} bytes (limit "
                                f"{MAX_MANIFEST_SIZE})")
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}",
                            scopes=[f"repository:{repo}:pull"],
                            headers={"Accept": MANIFEST_ACCEPT})
        if resp.status != 200:
            raise explain_status(resp.status, resp.drain(), "manifest", subject,
                                 resp.header_dict())
        try:
            data = resp.read_all(MAX_MANIFEST_SIZE, "manifest")
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"read manifest {subject}: {_describe(e)}") from e
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        want = expected.digest if expected is not None else (
            reference if reference.startswith("sha256:") else None)
        if want is not None and digest != want:
            raise RegistryError(f"manifest digest mismatch for {subject}: got {digest}, "
                                f"want {want}")
        if expected is not None and len(data) != expected.size:
            raise RegistryError(f"manifest size mismatch for {subject}: got {len(data)} bytes, "
                                f"want {expected.size}")
        header = resp.header("Docker-Content-Digest")
        if header and header.strip().startswith("sha256:") and header.strip() != digest:
            raise RegistryError(f"manifest digest mismatch for {subject}: the registry says "
                                f"{_clean(header, 80)}, the content hashes to {digest}")
        media_type = _bare(resp.header("Content-Type")) or ""
        return ManifestResult(data, media_type, digest)

    # ---- blobs ----

    def fetch_blob(self, repo: str, desc: Descriptor, limit: int, what: str) -> bytes:
        """A small blob (a config) in memory, size-limited and verified."""
        if desc.size > limit:
            raise RegistryError(f"{what} too large: {desc.size} bytes (limit {limit})")
        parts: list[bytes] = []
        self.download_blob(repo, desc, parts.append)
        return b"".join(parts)

    def download_blob(
        self,
        repo: str,
        desc: Descriptor,
        write: Callable[[bytes], object],
        *,
        cancelled: Callable[[], bool] = lambda: False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into ``write``, hashing it; raise unless digest and size match.

        ``write`` sees every byte once, in order, even across a resumed download: after a
        broken connection the next attempt asks for ``Range: bytes=<received>-`` and, if the
        registry ignores ranges (200 instead of 206), skips what was already written.
        The last bytes are written before the check, so a consumer must not commit anything
        until this returns (pull's consumer commits only after it has seen the end).
        """
        sha = hashlib.sha256()
        received = 0
        delays = iter(RETRY_DELAYS)
        path = f"/v2/{repo}/blobs/{desc.digest}"
        scopes = [f"repository:{repo}:pull"]
        while True:
            if cancelled():
                raise RegistryError("download cancelled")
            headers = {"Range": f"bytes={received}-"} if received else {}
            resp = self.request("GET", path, scopes=scopes, headers=headers)
            if resp.status not in (200, 206) or (resp.status == 206 and not received):
                raise explain_status(resp.status, resp.drain(), "blob",
                                     f"{self.domain}/{repo}@{desc.digest}", resp.header_dict())
            header = resp.header("Docker-Content-Digest")
            if header and header.strip().startswith("sha256:") and header.strip() != desc.digest:
                resp.close()
                raise RegistryError(f"blob {desc.digest}: the registry serves "
                                    f"{_clean(header, 80)} instead")
            skip = received if resp.status == 200 else 0
            if resp.status == 206:
                content_range = resp.header("Content-Range") or ""
                if not content_range.startswith(f"bytes {received}-"):
                    resp.close()
                    raise RegistryError(f"blob {desc.digest}: bad Content-Range "
                                        f"{_clean(content_range, 80)!r} for a resumed download")
            try:
                while True:
                    if cancelled():
                        resp.close()
                        raise RegistryError("download cancelled")
                    data = resp.read(CHUNK)
                    if not data:
                        break
                    if skip:
                        if len(data) <= skip:
                            skip -= len(data)
                            continue
                        data, skip = data[skip:], 0
                    if received + len(data) > desc.size:
                        resp.close()
                        raise RegistryError(f"blob {desc.digest} is larger than the "
                                            f"{desc.size} bytes its descriptor says")
                    sha.update(data)
                    received += len(data)
                    write(data)
                    if progress is not None:
                        progress(received)
            except RegistryError:
                raise
            except Exception as e:
                resp.close()
                delay = next(delays, None) if _transient(e) else None
                if delay is None:
                    raise RegistryError(f"download blob {desc.digest}: {_describe(e)}") from e
                self._sleep(delay)
                continue
            break
        if received != desc.size:
            raise RegistryError(f"blob {desc.digest} is truncated: got {received} of "
                                f"{desc.size} bytes")
        digest = "sha256:" + sha.hexdigest()
        if digest != desc.digest:
            raise RegistryError(f"blob digest mismatch: got {digest}, want {desc.digest}")

    # ---- push: blobs and manifests ----
    #
    #   HEAD /v2/R/blobs/D                         200: already there, nothing to do
    #   POST /v2/R/blobs/uploads/?mount=D&from=S   201: mounted from repository S
    #                                              202: not mountable, upload session opened
    #   POST /v2/R/blobs/uploads/                  202 + Location: a new upload session
    #   PUT  <Location>&digest=D   (whole body)    201: monolithic upload
    #   PATCH <Location> Content-Range: a-b        202 + new Location, Range: 0-b  (chunked)
    #   PUT  <Location>&digest=D   (empty)         201: chunked upload done
    #   PUT  /v2/R/manifests/T                     201 + Docker-Content-Digest

    def blob_size(self, repo: str, digest: str, scopes: Sequence[str]) -> int | None:
        """The size of ``digest`` in ``repo`` if the registry has it there, else None."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=scopes)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise explain_status(resp.status, b"", "blob", f"{self.domain}/{repo}@{digest}",
                                 resp.header_dict())
        length = resp.header("Content-Length")
        return int(length) if length and length.isdigit() else None

    def _upload_location(self, resp: Response, repo: str) -> str:
        location = resp.header("Location")
        resp.drain()
        if not location:
            raise RegistryError(f"upload to {self.domain}/{repo}: no Location in the answer")
        return urllib.parse.urljoin(self.endpoint.base + "/", location)

    def mount_blob(self, repo: str, digest: str, source: str,
                   scopes: Sequence[str]) -> str | None:
        """Cross-repository mount; None when mounted, else the upload session it opened."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                            scopes=[*scopes, f"repository:{source}:pull"],
                            headers={"Content-Length": "0"}, body=b"")
        if resp.status == 201:
            resp.drain()
            return None
        if resp.status == 202:
            return self._upload_location(resp, repo)
        raise explain_status(resp.status, resp.drain(), "blob mount",
                             f"{self.domain}/{repo}@{digest}", resp.header_dict())

    def start_upload(self, repo: str, scopes: Sequence[str]) -> str:
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes,
                            headers={"Content-Length": "0"}, body=b"")
        if resp.status != 202:
            raise explain_status(resp.status, resp.drain(), "blob upload",
                                 f"{self.domain}/{repo}", resp.header_dict())
        return self._upload_location(resp, repo)

    @staticmethod
    def _with_query(url: str, **params: str) -> str:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query += list(params.items())
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def upload_monolithic(self, repo: str, location: str, data: bytes, digest: str,
                          scopes: Sequence[str]) -> None:
        """The whole blob in one PUT (small blobs: configs, small layers)."""
        resp = self.request("PUT", self._with_query(location, digest=digest), scopes=scopes,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(len(data))}, body=data)
        self._check_committed(resp, repo, digest)

    def upload_chunked(
        self,
        repo: str,
        location: str,
        read: Callable[[int], bytes],
        size: int,
        digest: str,
        scopes: Sequence[str],
        chunk_size: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """PATCH the blob ``chunk_size`` bytes at a time, then PUT to commit it.

        Each PATCH says which bytes it carries (Content-Range, inclusive); the registry
        answers with the next Location and the Range it holds, which must end where we are.
        """
        sent = 0
        while sent < size:
            data = read(min(chunk_size, size - sent))
            if not data:
                raise RegistryError(f"upload {digest}: the layer ended after {sent} of "
                                    f"{size} bytes")
            resp = self.request("PATCH", location, scopes=scopes, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{sent}-{sent + len(data) - 1}",
                "Content-Length": str(len(data)),
            }, body=data)
            if resp.status != 202:
                raise explain_status(resp.status, resp.drain(), "blob upload",
                                     f"{self.domain}/{repo}@{digest}", resp.header_dict())
            got = resp.header("Range") or ""
            location = self._upload_location(resp, repo)
            sent += len(data)
            if got and got != f"0-{sent - 1}":
                raise RegistryError(f"upload {digest}: the registry holds bytes "
                                    f"{_clean(got, 40)}, want 0-{sent - 1}")
            if progress is not None:
                progress(sent)
        resp = self.request("PUT", self._with_query(location, digest=digest), scopes=scopes,
                            headers={"Content-Length": "0"}, body=b"")
        self._check_committed(resp, repo, digest)

    def _check_committed(self, resp: Response, repo: str, digest: str) -> None:
        body = resp.drain()
        if resp.status != 201:
            raise explain_status(resp.status, body, "blob upload",
                                 f"{self.domain}/{repo}@{digest}", resp.header_dict())
        header = resp.header("Docker-Content-Digest")
        if header and header.strip() != digest:
            raise RegistryError(f"upload {digest}: the registry stored it as "
                                f"{_clean(header, 80)}")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str,
                     scopes: Sequence[str]) -> str:
        """PUT a manifest; returns its digest (checked against the registry's)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scopes=scopes,
                            headers={"Content-Type": media_type,
                                     "Content-Length": str(len(data))}, body=data)
        body = resp.drain()
        if resp.status not in (200, 201):
            raise explain_status(resp.status, body, "manifest",
                                 f"{self.domain}/{repo}:{reference}", resp.header_dict())
        header = resp.header("Docker-Content-Digest")
        if header and header.strip() != digest:
            raise RegistryError(f"manifest {repo}:{reference}: the registry stored digest "
                                f"{_clean(header, 80)}, we sent {digest}")
        return digest

    def close(self) -> None:
        self.transport.close()


def _basic(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def repository_scopes(repo: str, actions: Iterable[str] = ("pull",)) -> list[str]:
    return [f"repository:{repo}:{','.join(actions)}"]
