"""HTTP to registries: endpoints, TLS, pooled connections, redirects, retries, error wording.

Nothing here knows the registry API beyond ``/v2/``: :class:`Transport` sends one request and
hands back a :class:`Response` whose connection returns to the pool once its body is read;
:func:`with_retries` repeats transient failures; :func:`redirect_target` says where a redirect
may lead and whether credentials may follow; :func:`explain_status` turns an unexpected
answer into one line.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from contextlib import ExitStack

from minidock.errors import AuthenticationError, RegistryError
from minidock.records import record
from minidock.settings import EngineConfig

MAX_ERROR_BODY = 64 << 10
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)
TIMEOUT = 60.0
MAX_REDIRECTS = 10
CHUNK = 1 << 20
USER_AGENT = "minidock/0.1 (python http.client)"


# --- endpoints -----------------------------------------------------------------------------

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"


@record(frozen=True)
class Endpoint:
    """Where to send a registry's requests: ``scheme://netloc`` plus how to check TLS."""

    scheme: str
    netloc: str
    verify: bool = True
    mirror: bool = False

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def verifies_tls(config: EngineConfig, netloc: str) -> bool:
    """Is ``netloc``'s certificate checked? Always, unless it is insecure without a CA."""
    return not config.is_insecure(netloc) or bool(config.ca_files(netloc))


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
                                        verify=verifies_tls(config, parts.netloc),
                                        mirror=True))
        out.append(Endpoint("https", DOCKER_HUB_REGISTRY))
        return out
    if config.is_insecure(domain):
        verify = bool(config.ca_files(domain))
        return [Endpoint("https", domain, verify=verify), Endpoint("http", domain)]
    return [Endpoint("https", domain)]


# --- redirects -----------------------------------------------------------------------------


def origin(url: str) -> tuple[str, str]:
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
    (as Docker): https -> http is refused outright; the header goes only to the
    registry's own scheme, host and port, so a 307 to a storage host (S3, a CDN) gets no
    credentials, and once dropped it is not restored on a later hop.
    """
    target = urllib.parse.urljoin(current, location.strip())
    scheme = urllib.parse.urlsplit(target).scheme
    if scheme not in ("http", "https"):
        raise RegistryError(f"refusing redirect to {target!r}: not an http(s) URL")
    if urllib.parse.urlsplit(current).scheme == "https" and scheme == "http":
        raise RegistryError(f"refusing redirect from {current} to {target}: https to http")
    return target, origin(target) == origin(auth_origin)


# --- errors --------------------------------------------------------------------------------

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def printable(text: str, limit: int = 200) -> str:
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
            return [(printable(doc["error"]), printable(str(desc)))]
        return []
    out = []
    for e in errors:
        if isinstance(e, dict):
            out.append((printable(str(e.get("code") or "")),
                        printable(str(e.get("message") or ""))))
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
            f" (limit {printable(limit.split(';')[0], 20)})" if limit else "",
            f"; retry after {printable(retry, 40)} s" if retry else "",
        ])
        return RegistryError(f"toomanyrequests: {message or 'too many requests'}{extra}")
    reason = http.client.responses.get(status, "")
    detail = f": {message}" if message else ""
    return RegistryError(f"{what} {subject}: registry answered {status} {reason}{detail}")


def is_transient(e: BaseException) -> bool:
    """Worth a retry: the connection failed or broke, not a certificate or name problem."""
    if isinstance(e, (ssl.SSLCertVerificationError, socket.gaierror)):
        return False
    if isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLEOFError):
        return False
    return isinstance(e, (OSError, http.client.HTTPException))


def describe(e: BaseException) -> str:
    """A network failure in Docker's words (``x509: ...``, ``connection refused``)."""
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


# --- the transport: pooled connections, TLS per host -------------------------------------


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
            with ExitStack() as undo:
                undo.callback(self.release, conn, False)
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if reused and attempt == 0:
                        continue  # released by undo, then a new connection
                    raise
                undo.pop_all()
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


# --- retries ---------------------------------------------------------------------------------


def with_retries(send: Callable[[], Response], what: str, sleep: Callable[[float], None],
                 retry_5xx: bool = True) -> Response:
    """Call ``send`` until it answers, retrying connection errors and 5xx with backoff."""
    delays = iter(RETRY_DELAYS)
    while True:
        try:
            resp = send()
        except RegistryError:
            raise
        except Exception as e:
            delay = next(delays, None) if is_transient(e) else None
            if delay is None:
                raise RegistryError(f"{what}: {describe(e)}") from e
            sleep(delay)
            continue
        if resp.status >= 500 and retry_5xx:
            delay = next(delays, None)
            if delay is not None:
                resp.drain()
                sleep(delay)
                continue
        return resp
