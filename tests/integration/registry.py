"""Real registries for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

Three modes, each a real ``docker-registry serve`` with a config written here (the package's own
/etc/docker/registry/config.yml listens on every interface and wants an htpasswd file that does
not exist, so it is never used):

    open    plain HTTP, no auth
    tls     HTTPS with a throwaway CA, htpasswd Basic auth (bcrypt)
    token   Bearer token auth against TokenIssuer, a JWT issuer written here (plain HTTP on
            127.0.0.1 by default, as Docker allows for 127.0.0.0/8; tls=True puts both behind TLS)

Token auth, as the registry checks it (distribution registry/auth/token/token.go):

    client                      registry                         TokenIssuer (this module)
      | GET /v2/...                |                                  |
      |--------------------------->|                                  |
      |  401 WWW-Authenticate: Bearer realm=<issuer>/token,service=..,scope=repository:r:pull
      |<---------------------------|                                  |
      | GET /token?service=..&scope=..   (Basic creds, or none: anonymous)
      |-------------------------------------------------------------->|  checks creds, grants
      |  {"token": JWT, "access_token": JWT, "expires_in": N}         |  a subset of the scope
      |<--------------------------------------------------------------|
      | GET /v2/... Authorization: Bearer JWT                         |
      |--------------------------->| verifies: iss == config issuer, aud == service,
      |                            | exp/nbf (+-60 s leeway), RS256 signature with the key of
      |                            | the x5c[0] cert, which must chain to rootcertbundle;
      |                            | then the `access` claim must cover the action

Seeding goes through skopeo (an independent implementation of the registry protocol) from an
OCI image layout built here from the test rootfs tarballs; RegistryHTTP speaks the API directly
for what skopeo refuses to produce (plain layers, bad input); and the *_on_disk helpers plant
content in the registry's storage behind its back, for input a registry would never accept
(digest mismatch, truncated blob, malformed manifests) but a broken or hostile one could serve.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import gzip
import hashlib
import http.client
import http.server
import io
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Mode = Literal["open", "tls", "token"]
Compression = Literal["gzip", "zstd", "none"]
ManifestFormat = Literal["v2s2", "oci"]

REGISTRY_BIN_ENV = "MINIDOCK_TEST_REGISTRY_BIN"

# Media types (reference.md section 3)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MANIFEST_ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])
OCI_LAYER_TYPES: dict[Compression, str] = {
    "none": OCI_LAYER,
    "gzip": OCI_LAYER + "+gzip",
    "zstd": OCI_LAYER + "+zstd",
}
DOCKER_LAYER_TYPES: dict[Compression, str] = {"none": DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP}

# distribution's token check adds this much leeway to exp and nbf (token.go `Leeway`)
TOKEN_LEEWAY = 60
STOP_TIMEOUT = 5.0
START_TIMEOUT = 20.0


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_binary() -> str | None:
    return os.environ.get(REGISTRY_BIN_ENV) or shutil.which("docker-registry")


def free_port() -> int:
    """A port that was free a moment ago (the registry binds it itself, so start() retries if
    another process takes it in between)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


# -- a throwaway CA ------------------------------------------------------------------------------


class TestCA:
    """A CA made for one registry: ca.crt, and certs it issues for servers or token signing."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path, name: str = "minidock test CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        # P-256 keys: generating an RSA key costs ~100 ms, an EC key microseconds
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = self.dir / "ca.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        *,
        dns: Sequence[str] = ("localhost",),
        ips: Sequence[str] = ("127.0.0.1",),
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
        server: bool = True,
    ) -> tuple[Path, Path, x509.Certificate]:
        """Issue ``<name>.crt`` and ``<name>.key``; a TLS server cert valid for ``dns`` and
        ``ips`` (Go checks only SANs, never the CN), or with server=False a plain signing
        cert (the token issuer's)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans), critical=False
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        crt = self.dir / f"{name}.crt"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile = _write_private(
            self.dir / f"{name}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return crt, keyfile, cert


def ssl_context(ca_path: Path | str | None) -> ssl.SSLContext:
    """A client context that trusts only ``ca_path`` (or the system store when None)."""
    return ssl.create_default_context(cafile=str(ca_path) if ca_path else None)


def htpasswd_line(user: str, password: str) -> str:
    """An htpasswd entry; distribution accepts bcrypt hashes only."""
    import bcrypt  # the `test` extra; imported here so the module loads without it

    # cost 5 (the minimum Go's bcrypt accepts is 4): every Basic request re-hashes
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}\n"


# -- the JWT token issuer ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One request to the issuer, as the tests assert on it."""

    method: str
    path: str
    account: str | None  # the Basic (or OAuth form) user, None when anonymous
    authenticated: bool  # credentials given and right
    service: str | None
    scopes: tuple[str, ...]
    status: int
    granted: tuple[dict[str, Any], ...]  # the `access` claim of the token issued
    grant_type: str | None = None  # POST (OAuth2) requests only

    @property
    def anonymous(self) -> bool:
        return self.account is None


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:name:pull,push`` -> (type, name, actions); the name may hold a ``:`` (a
    registry host with a port), so the type is before the first colon and the actions after the
    last one, as distribution's auth.parseScope reads it."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    rtype, actions = parts[0], parts[-1]
    name = ":".join(parts[1:-1])
    return rtype, name, [a for a in actions.split(",") if a]


class _ThreadedHTTP:
    """An http.server served from a daemon thread on 127.0.0.1: ``_serve`` starts it (and
    learns the port), ``stop`` ends it. Shared by the token issuer and the static registry."""

    _httpd: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    port = 0

    def _serve(self, httpd: http.server.ThreadingHTTPServer, name: str) -> None:
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, name=f"{name}:{self.port}",
                                        daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)
            self._thread = None


class TokenIssuer(_ThreadedHTTP):
    """A threaded HTTP (or HTTPS) token server on 127.0.0.1, the ``realm`` of a token-auth
    registry. Policy (Docker Hub's shape):

    - wrong Basic credentials: 401; no credentials: anonymous;
    - a known user gets every action asked for ("pull", "push", "delete", "*"), except users in
      ``readonly`` who get "pull" only;
    - anonymous gets "pull" on repositories whose name starts with one of ``anonymous_pull``;
    - anything not granted is left out of the token, which is still issued (the registry then
      answers 401 insufficient_scope, as Docker Hub does).

    ``expires_in`` is what the client is told. The JWT's exp is set so that the registry rejects
    it after that many seconds, too: exp = iat + expires_in - 60, because distribution accepts
    a token until exp + 60 s (``enforce_expiry=False`` sets exp = iat + expires_in, the usual).
    ``requests`` logs every request (TokenRequest) so tests can assert anonymous versus
    authenticated fetches and their scopes; ``clear()`` empties it.
    """

    def __init__(
        self,
        directory: Path,
        ca: TestCA,
        *,
        users: Mapping[str, str] | None = None,
        readonly: Iterable[str] = (),
        anonymous_pull: Iterable[str] = ("public/",),
        service: str = "minidock-test-registry",
        issuer: str = "minidock-test-issuer",
        expires_in: int = 300,
        enforce_expiry: bool = True,
        tls: bool = False,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.users = dict(users or {"alice": "alice-secret"})
        self.readonly = set(readonly)
        self.anonymous_pull = tuple(anonymous_pull)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.enforce_expiry = enforce_expiry
        self.tls = tls
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self.tokens_issued = 0
        # The signing key's cert is issued by the test CA: the registry's rootcertbundle is the
        # CA cert, and each token carries the signing cert in its x5c header (token.go verifies
        # x5c[0] against the bundle; a `kid` would have to be a libtrust key fingerprint).
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _, _, cert = ca.issue("token-signer", key=self._key, server=False)
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.rootcertbundle = ca.cert_path
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle

    def start(self) -> TokenIssuer:
        handler = _make_token_handler(self)
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True  # a hung client must not block shutdown
        if self.tls:
            crt, key, _ = self.ca.issue("token-server")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(crt, key)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._serve(httpd, "token-issuer")
        return self


    @property
    def realm(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/token"

    # -- the log

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self._requests.append(req)

    @contextlib.contextmanager
    def settings(self, **changes: Any) -> Iterator[TokenIssuer]:
        """Change attributes (expires_in, readonly, anonymous_pull, users...) for a block."""
        old = {k: getattr(self, k) for k in changes}
        for k, v in changes.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)

    # -- policy and tokens

    def check_credentials(self, user: str | None, password: str | None) -> bool | None:
        """True: right; False: wrong; None: none given."""
        if user is None:
            return None
        known = self.users.get(user)
        return known is not None and secrets.compare_digest(known, password or "")

    def grant(self, account: str | None, scopes: Iterable[str]) -> list[dict[str, Any]]:
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            rtype, name, actions = parsed
            if account is None:
                allowed = (
                    {"pull"}
                    if rtype == "repository" and name.startswith(self.anonymous_pull)
                    else set()
                )
            elif account in self.readonly:
                allowed = {"pull"}
            else:
                allowed = {"pull", "push", "delete", "*"}
            granted = [a for a in actions if a in allowed]
            if granted:
                access.append({"type": rtype, "name": name, "actions": granted})
        return access

    def make_token(self, account: str | None, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        lifetime = self.expires_in - TOKEN_LEEWAY if self.enforce_expiry else self.expires_in
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._x5c}
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        with self._lock:
            self.tokens_issued += 1
        return signing_input + "." + _b64url(sig)


def _make_token_handler(issuer: TokenIssuer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is `issuer.requests`; stderr would clutter pytest's output

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="minidock-test-issuer"')
            self.end_headers()
            self.wfile.write(data)

        def _basic(self) -> tuple[str | None, str | None]:
            auth = self.headers.get("Authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "basic":
                return None, None
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return "", ""
            return user, password

        def _issue(
            self,
            account: str | None,
            password: str | None,
            service: str | None,
            scopes: list[str],
            grant_type: str | None = None,
        ) -> None:
            path = urllib.parse.urlsplit(self.path).path
            ok = issuer.check_credentials(account, password)

            def record(status: int, granted: list[dict[str, Any]]) -> None:
                issuer._record(
                    TokenRequest(
                        method=self.command,
                        path=path,
                        account=account,
                        authenticated=bool(ok),
                        service=service,
                        scopes=tuple(scopes),
                        status=status,
                        granted=tuple(granted),
                        grant_type=grant_type,
                    )
                )

            if path != "/token":
                record(404, [])
                self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": path}]})
                return
            if ok is False:
                record(401, [])
                self._reply(
                    401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
                )
                return
            if service is not None and service != issuer.service:
                record(400, [])
                self._reply(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
                return
            access = issuer.grant(account if ok else None, scopes)
            token = issuer.make_token(account if ok else None, access)
            record(200, access)
            body: dict[str, Any] = {
                "token": token,
                "access_token": token,
                "expires_in": issuer.expires_in,
                "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            }
            if grant_type is not None and ok:
                # the OAuth2 flow hands out a refresh token; ours is the password itself, opaque
                # to the client, which is all the protocol promises
                body["refresh_token"] = f"refresh:{account}:{password}"
            self._reply(200, body)

        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            user, password = self._basic()
            scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
            service = query["service"][0] if query.get("service") else None
            self._issue(user, password, service, scopes)

        def do_POST(self) -> None:
            # OAuth2 password / refresh_token grant (docker/distribution docs/spec/auth/oauth.md)
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())

            def one(key: str) -> str | None:
                values = form.get(key)
                return values[0] if values else None

            grant_type = one("grant_type")
            user, password = one("username"), one("password")
            if grant_type == "refresh_token":
                token = one("refresh_token") or ""
                _, user, password = [*token.split(":", 2), "", ""][:3]
            scopes = [s for s in (one("scope") or "").split(" ") if s]
            self._issue(user, password, one("service"), scopes, grant_type=grant_type or "")

    return Handler


# -- the registry process ------------------------------------------------------------------------


def _pdeathsig() -> None:
    """In the child before exec: die with the test process (a pytest killed by -9 must not
    leave a registry listening). Resolved before fork, so the child only makes the call."""
    _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


class RegistryError(RuntimeError):
    pass


class RegistryServer:
    """``docker-registry serve`` on 127.0.0.1 with its own config, storage and (tls) CA.

    Everything lives in one temp dir (``dir``), removed by stop() unless MINIDOCK_TEST_KEEP=1:
    config.yml, storage/ (filesystem driver), registry.log, ca/ (tls, token), htpasswd.
    start() picks a free port, waits until /v2/ answers (200 open, 401 otherwise), and retries
    on a port race. kill() is the registry dying mid-transfer (SIGKILL); start() again serves
    the same storage on the same port. Use as a context manager, or call stop() in a finally.
    """

    def __init__(
        self,
        mode: Mode = "open",
        *,
        base_dir: Path | str | None = None,
        username: str = "alice",
        password: str = "alice-secret",
        tls: bool | None = None,
        expires_in: int = 300,
        enforce_expiry: bool = True,
        anonymous_pull: Iterable[str] = ("public/",),
        readonly_users: Mapping[str, str] | None = None,
    ) -> None:
        binary = registry_binary()
        if binary is None:
            raise RegistryError(
                "docker-registry is not installed (apt-get install docker-registry)"
            )
        self.binary = binary
        self.mode: Mode = mode
        self.tls = (mode == "tls") if tls is None else tls
        if mode == "tls" and not self.tls:
            raise ValueError("mode 'tls' is htpasswd over TLS: tls=False makes no sense")
        self.dir = Path(tempfile.mkdtemp(prefix=f"minidock-registry-{mode}-", dir=base_dir))
        self.storage = self.dir / "storage"
        self.storage.mkdir()
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.ca: TestCA | None = None
        self.issuer: TokenIssuer | None = None
        self.readonly_username: str | None = None
        self.readonly_password: str | None = None
        self._log: Any = None
        try:
            if self.tls or mode == "token":
                self.ca = TestCA(self.dir / "ca")
            if mode in ("tls", "token"):
                self.username, self.password = username, password
            ro = dict(readonly_users or {"bob": "bob-secret"})
            if ro:
                self.readonly_username, self.readonly_password = next(iter(ro.items()))
            if mode == "tls":
                # htpasswd has no read-only users: every valid user may push
                lines = [htpasswd_line(username, password)]
                (self.dir / "htpasswd").write_text("".join(lines))
            if mode == "token":
                assert self.ca is not None
                self.issuer = TokenIssuer(
                    self.dir / "issuer",
                    self.ca,
                    users={username: password, **ro},
                    readonly=ro.keys(),
                    anonymous_pull=anonymous_pull,
                    expires_in=expires_in,
                    enforce_expiry=enforce_expiry,
                    tls=self.tls,
                ).start()
        except BaseException:
            self.stop()
            raise

    # -- addresses

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as a reference's registry part."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def ca_path(self) -> Path | None:
        return self.ca.cert_path if self.ca is not None and self.tls else None

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password

    def ref(self, name: str) -> str:
        """``repo:tag`` -> ``127.0.0.1:PORT/repo:tag``."""
        return f"{self.host}/{name}"

    # -- config

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            # no `cache: blobdescriptor`: an in-memory descriptor cache would hide blobs the
            # tests corrupt on disk; uploadpurging off: no background job touching storage
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                # shared secret for upload state; a fixed one keeps uploads valid across kill()
                # and start() (otherwise each start generates a new one)
                "secret": "minidock-test-" + self.dir.name,
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.tls:
            assert self.ca is not None
            if not (self.dir / "ca" / "registry.crt").exists():
                self.ca.issue("registry")
            cfg["http"]["tls"] = {
                "certificate": str(self.dir / "ca" / "registry.crt"),
                "key": str(self.dir / "ca" / "registry.key"),
            }
        if self.mode == "tls":
            cfg["auth"] = {
                "htpasswd": {"realm": "minidock-test", "path": str(self.dir / "htpasswd")}
            }
        elif self.mode == "token":
            assert self.issuer is not None
            cfg["auth"] = {
                "token": {
                    "realm": self.issuer.realm,
                    "service": self.issuer.service,
                    "issuer": self.issuer.issuer,
                    "rootcertbundle": str(self.issuer.rootcertbundle),
                }
            }
        return cfg

    # -- lifecycle

    def start(self) -> RegistryServer:
        if self.running:
            return self
        keep_port = self.port != 0  # a restart after kill() serves on the same address
        last = ""
        for _ in range(1 if keep_port else 5):
            if not keep_port:
                self.port = free_port()
            # JSON is YAML: no YAML library needed to write the config
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
            self.proc = subprocess.Popen(
                [self.binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                preexec_fn=_pdeathsig,
            )
            try:
                self._wait_ready()
                return self
            except RegistryError as e:
                last = str(e)
                self._reap(kill=True)
                if "address already in use" not in last:
                    break
        self.stop()
        raise RegistryError(f"docker-registry ({self.mode}) did not start:\n{last}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        expect = 200 if self.mode == "open" else 401
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RegistryError(f"exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = http_request(
                    "GET", self.url + "/v2/", ca_path=self.ca_path, timeout=2
                )
                if status == expect:
                    return
                raise RegistryError(f"GET /v2/ answered {status}, expected {expect}")
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RegistryError(f"/v2/ not answering after {START_TIMEOUT}s\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL the registry now (a registry dying mid-pull); start() brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap(kill=True)

    def _reap(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()  # the registry drains connections on SIGTERM
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the registry and the issuer, remove the temp dir. Safe to call twice."""
        try:
            self._reap()
        finally:
            if self.issuer is not None:
                self.issuer.stop()
            if os.environ.get("MINIDOCK_TEST_KEEP") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __repr__(self) -> str:
        return f"<RegistryServer {self.mode} {self.url} pid={self.pid}>"

    # -- storage, behind the registry's back (filesystem driver layout)

    @property
    def _v2(self) -> Path:
        return self.storage / "docker" / "registry" / "v2"

    def blob_path(self, digest: str) -> Path:
        alg, hexd = digest.split(":", 1)
        return self._v2 / "blobs" / alg / hexd[:2] / hexd / "data"


# -- plain HTTP(S) -------------------------------------------------------------------------------


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    ca_path: Path | str | None = None,
    timeout: float = 30,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, no redirects followed, no status raised: (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.netloc, timeout=timeout, context=ssl_context(ca_path)
        )
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target or "/", body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="..",service="..",scope=".."`` -> ("bearer", {...})."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().strip(",").strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i += 1 if i < len(rest) and rest[i] == "," else 0
    return scheme.lower(), params


class RegistryHTTP:
    """The registry API spoken directly (the tests' own minimal client, for what skopeo will
    not do: plain layers, exact bytes, bad input). Answers 401 challenges: Basic with the
    server's credentials, Bearer through the issuer (anonymous when ``anonymous``)."""

    def __init__(
        self,
        server: RegistryServer,
        *,
        anonymous: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.server = server
        self.credentials = None if anonymous else (credentials or server.credentials)
        self._auth: str | None = None  # the Authorization header that worked last

    def _basic(self) -> str:
        assert self.credentials is not None
        return "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()

    def _authorize(self, challenge: str) -> str | None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            return self._basic() if self.credentials else None
        if scheme != "bearer":
            return None
        query = {"service": params.get("service", "")}
        if params.get("scope"):
            query["scope"] = params["scope"]
        url = params["realm"] + "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": self._basic()} if self.credentials else {}
        status, _, body = http_request("GET", url, headers=headers, ca_path=self.server.ca_path)
        if status != 200:
            raise RegistryError(f"token request {url} answered {status}: {body[:200]!r}")
        data = json.loads(body)
        return "Bearer " + str(data.get("token") or data["access_token"])

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        url = path_or_url if "://" in path_or_url else self.server.url + path_or_url
        hdrs = dict(headers or {})
        if self._auth:
            hdrs["Authorization"] = self._auth
        status, rh, data = http_request(
            method, url, body=body, headers=hdrs, ca_path=self.server.ca_path
        )
        challenge = rh.get("WWW-Authenticate")
        if status == 401 and challenge:
            auth = self._authorize(challenge)
            if auth:
                self._auth = hdrs["Authorization"] = auth
                status, rh, data = http_request(
                    method, url, body=body, headers=hdrs, ca_path=self.server.ca_path
                )
        return status, rh, data

    def push_blob(
        self, repo: str, data: bytes, *, digest: str | None = None, check: bool = True
    ) -> tuple[int, str]:
        """Monolithic upload (POST, then PUT ?digest=). ``digest`` defaults to the right one;
        pass another to see the registry refuse it. Returns (status of the PUT, digest)."""
        digest = digest or sha256_digest(data)
        status, rh, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise RegistryError(f"POST /v2/{repo}/blobs/uploads/: {status} {body[:300]!r}")
        location = rh["Location"]
        if "://" not in location:
            location = self.server.url + location
        sep = "&" if "?" in location else "?"
        status, _, body = self.request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if check and status != 201:
            raise RegistryError(f"PUT blob {digest} to {repo}: {status} {body[:300]!r}")
        return status, digest

    def push_manifest(
        self, repo: str, ref: str, body: bytes, media_type: str, *, check: bool = True
    ) -> tuple[int, str]:
        """PUT a manifest's exact bytes; returns (status, digest of the bytes)."""
        status, _, resp = self.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", body=body, headers={"Content-Type": media_type}
        )
        if check and status != 201:
            raise RegistryError(f"PUT manifest {repo}:{ref}: {status} {resp[:300]!r}")
        return status, sha256_digest(body)

    def get_manifest(self, repo: str, ref: str) -> tuple[int, str | None, bytes]:
        """(status, Content-Type, body) of GET /v2/<repo>/manifests/<ref>."""
        status, rh, body = self.request(
            "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT}
        )
        return status, rh.get("Content-Type"), body

    def get_blob(self, repo: str, digest: str) -> tuple[int, bytes]:
        status, _, body = self.request("GET", f"/v2/{repo}/blobs/{digest}")
        return status, body

    def tags(self, repo: str) -> list[str]:
        status, _, body = self.request("GET", f"/v2/{repo}/tags/list")
        if status != 200:
            raise RegistryError(f"GET tags of {repo}: {status} {body[:200]!r}")
        return list(json.loads(body).get("tags") or [])


# -- behind the registry's back: content no registry would accept, served as stored -------------


def _link(path: Path, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest)


def put_blob_on_disk(
    server: RegistryServer, repo: str, data: bytes, digest: str | None = None
) -> str:
    """Store ``data`` as blob ``digest`` of ``repo`` without the registry checking it: with a
    wrong digest the registry later serves bytes that do not hash to it (Docker-Content-Digest
    is the path's digest). The registry stats the file for Content-Length."""
    digest = digest or sha256_digest(data)
    path = server.blob_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    alg, hexd = digest.split(":", 1)
    _link(server._v2 / "repositories" / repo / "_layers" / alg / hexd / "link", digest)
    return digest


def corrupt_blob_on_disk(
    server: RegistryServer, digest: str, *, data: bytes | None = None, truncate: int | None = None
) -> None:
    """Replace a stored blob's bytes (``data``) or cut it to ``truncate`` bytes: GET then
    serves content that does not match its digest (or is shorter than its descriptor says)."""
    path = server.blob_path(digest)
    if not path.exists():
        raise RegistryError(f"no blob {digest} in {server}")
    if data is not None:
        path.write_bytes(data)
    if truncate is not None:
        with open(path, "r+b") as f:
            f.truncate(truncate)


def put_manifest_on_disk(
    server: RegistryServer, repo: str, tag: str | None, body: bytes, digest: str | None = None
) -> str:
    """Store manifest bytes under ``repo`` (and ``tag``) without validation. What the registry
    then serves for it depends on whether distribution 2.8 can parse it (see the self-tests)."""
    digest = put_blob_on_disk(server, repo, body, digest)
    alg, hexd = digest.split(":", 1)
    base = server._v2 / "repositories" / repo / "_manifests"
    _link(base / "revisions" / alg / hexd / "link", digest)
    if tag is not None:
        _link(base / "tags" / tag / "current" / "link", digest)
        _link(base / "tags" / tag / "index" / alg / hexd / "link", digest)
    return digest


# -- images: an OCI layout built from rootfs tarballs --------------------------------------------


def make_layer(files: Mapping[str, bytes | None], *, mode: int = 0o644) -> bytes:
    """A small uncompressed layer tar: path -> content; None makes a directory. Names are
    relative (``etc/motd``), metadata fixed (root-owned, mtime 0) so digests are stable."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), mode
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: reproducible digests
    if compression == "zstd":
        import zstandard  # a minidock dependency, for zstd layers

        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


@dataclass
class ImageSpec:
    """One platform's image: uncompressed layer tars, base first (paths or bytes)."""

    layers: Sequence[Path | bytes]
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    cmd: Sequence[str] = ("sh",)
    compression: Compression = "gzip"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = self.platform
        return d


@dataclass(frozen=True)
class BuiltImage:
    """What build_oci_layout wrote for one platform: its manifest, config and layers."""

    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    platform: dict[str, str]


class OCILayout:
    """An OCI image layout directory being written (oci-layout, index.json, blobs/sha256)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.index: list[dict[str, Any]] = []

    def add_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    def add_json(self, obj: Any, media_type: str) -> Descriptor:
        data = json.dumps(obj, separators=(",", ":")).encode()
        return Descriptor(media_type, self.add_blob(data), len(data))

    def add_image(self, spec: ImageSpec) -> BuiltImage:
        layers: list[Descriptor] = []
        diff_ids: list[str] = []
        history: list[dict[str, Any]] = []
        for i, layer in enumerate(spec.layers):
            raw = layer.read_bytes() if isinstance(layer, Path) else layer
            diff_ids.append(sha256_digest(raw))
            blob = compress(raw, spec.compression)
            layers.append(
                Descriptor(OCI_LAYER_TYPES[spec.compression], self.add_blob(blob), len(blob))
            )
            history.append(
                {"created": "2024-01-01T00:00:00Z", "created_by": f"minidock test layer {i}"}
            )
        platform = {"architecture": spec.architecture, "os": spec.os}
        if spec.variant:
            platform["variant"] = spec.variant
        config = self.add_json(
            {
                "created": "2024-01-01T00:00:00Z",
                **platform,
                "config": {
                    "Cmd": list(spec.cmd),
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "Labels": dict(spec.labels) or None,
                },
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": history,
            },
            OCI_CONFIG,
        )
        manifest = self.add_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.to_json(),
                "layers": [d.to_json() for d in layers],
            },
            OCI_MANIFEST,
        )
        return BuiltImage(
            manifest=Descriptor(manifest.media_type, manifest.digest, manifest.size, platform),
            config=config,
            layers=tuple(layers),
            diff_ids=tuple(diff_ids),
            platform=platform,
        )

    def add_index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        return self.add_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [d.to_json() for d in manifests],
            },
            OCI_INDEX,
        )

    def tag(self, desc: Descriptor, tag: str) -> None:
        entry = desc.to_json()
        entry.pop("platform", None)
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.index.append(entry)
        (self.path / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index})
        )


# -- skopeo ---------------------------------------------------------------------------------------


@dataclass
class Skopeo:
    """skopeo with nothing from the host's config: its own policy (accept anything), an empty
    registries.conf, no auth file, certs only from the server's CA."""

    workdir: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy = self.workdir / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = self.workdir / "registries.conf"
        self.registries_conf.write_text("")

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REGISTRY_AUTH_FILE": str(self.workdir / "auth.json"),  # never created
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "TMPDIR": str(self.workdir),
        }

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = ["skopeo", "--policy", str(self.policy), *args]
        r = subprocess.run(
            argv,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if r.returncode != 0:
            raise RegistryError(
                f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}".rstrip()
            )
        return r

    def transport_flags(
        self, server: RegistryServer, side: Literal["src", "dest", ""], anonymous: bool = False
    ) -> list[str]:
        """--[src-|dest-]tls-verify, --...cert-dir and --...creds for ``server``."""
        p = f"--{side}-" if side else "--"
        flags = [f"{p}tls-verify={'true' if server.tls else 'false'}"]
        if server.ca_path is not None:
            certs = self.workdir / f"certs-{server.port}"
            certs.mkdir(exist_ok=True)
            shutil.copy(server.ca_path, certs / "ca.crt")
            flags.append(f"{p}cert-dir={certs}")
        if server.credentials and not anonymous:
            flags.append(f"{p}creds={':'.join(server.credentials)}")
        elif server.mode != "open":
            flags.append(f"{p}no-creds")
        return flags


def skopeo_for(server: RegistryServer) -> Skopeo:
    return Skopeo(server.dir / "skopeo")


@dataclass(frozen=True)
class Seeded:
    """An image seeded into a registry. ``digest`` is the manifest (or index) digest the
    registry holds: skopeo may rewrite the manifest (--format), so it comes from the registry."""

    ref: str  # 127.0.0.1:PORT/repo:tag
    repo: str
    tag: str
    digest: str
    media_type: str
    manifest: dict[str, Any]
    images: tuple[BuiltImage, ...]  # what was built, one per platform

    @property
    def digest_ref(self) -> str:
        return f"{self.ref.rsplit(':', 1)[0]}@{self.digest}"


def _split_repo_tag(name: str) -> tuple[str, str]:
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "latest"
    return repo, tag


def seed(
    server: RegistryServer,
    name: str,
    images: ImageSpec | Sequence[ImageSpec] | Path | Sequence[Path],
    *,
    format: ManifestFormat = "v2s2",
    compression: Compression = "gzip",
    anonymous: bool = False,
) -> Seeded:
    """Push an image built from rootfs tarball(s) to ``server`` as ``name`` (``repo[:tag]``),
    through skopeo. ``images``: a tarball (one layer), a list of tarballs (one image, layers in
    order), an ImageSpec, or several ImageSpecs (a multi-platform index; with format="v2s2"
    the registry gets a Docker manifest list). ``format`` is skopeo's --format (v2s2 or oci);
    zstd needs oci. Plain ("none") layers: skopeo compresses them for a registry, so they
    go through RegistryHTTP instead (push_image_http).
    """
    specs = _specs(images, compression)
    if any(s.compression == "none" for s in specs):
        return push_image_http(server, name, specs, format=format)
    if format == "v2s2" and any(s.compression == "zstd" for s in specs):
        raise ValueError("Docker schema2 has no zstd layer type: use format='oci'")
    repo, tag = _split_repo_tag(name)
    sk = skopeo_for(server)
    with tempfile.TemporaryDirectory(dir=sk.workdir) as tmp:
        layout = OCILayout(Path(tmp) / "layout")
        built = tuple(layout.add_image(s) for s in specs)
        if len(built) == 1:
            layout.tag(built[0].manifest, tag)
        else:
            layout.tag(layout.add_index([b.manifest for b in built]), tag)
        args = ["copy", "--quiet", "--retry-times", "2"]
        if len(built) > 1:
            args.append("--all")
        args += ["--format", format, *sk.transport_flags(server, "dest", anonymous)]
        args += [f"oci:{layout.path}:{tag}", f"docker://{server.ref(f'{repo}:{tag}')}"]
        sk.run(*args)
    return _seeded(server, repo, tag, built)


def _specs(
    images: ImageSpec | Sequence[ImageSpec] | Path | Sequence[Path], compression: Compression
) -> list[ImageSpec]:
    if isinstance(images, ImageSpec):
        return [images]
    if isinstance(images, Path):
        return [ImageSpec([images], compression=compression)]
    items = list(images)
    if items and all(isinstance(i, ImageSpec) for i in items):
        return [i for i in items if isinstance(i, ImageSpec)]
    return [ImageSpec([i for i in items if isinstance(i, Path)], compression=compression)]


def _seeded(server: RegistryServer, repo: str, tag: str, built: tuple[BuiltImage, ...]) -> Seeded:
    status, ctype, body = RegistryHTTP(server).get_manifest(repo, tag)
    if status != 200:
        raise RegistryError(f"{repo}:{tag} not in {server} after seeding: {status} {body[:200]!r}")
    return Seeded(
        ref=server.ref(f"{repo}:{tag}"),
        repo=repo,
        tag=tag,
        digest=sha256_digest(body),
        media_type=ctype or "",
        manifest=json.loads(body),
        images=built,
    )


def push_image_http(
    server: RegistryServer,
    name: str,
    images: ImageSpec | Sequence[ImageSpec],
    *,
    format: ManifestFormat = "oci",
) -> Seeded:
    """Push exactly the built blobs and manifests (no skopeo rewriting), e.g. plain layers."""
    specs = [images] if isinstance(images, ImageSpec) else list(images)
    repo, tag = _split_repo_tag(name)
    client = RegistryHTTP(server)
    docker = format == "v2s2"
    with tempfile.TemporaryDirectory(dir=server.dir) as tmp:
        layout = OCILayout(Path(tmp))
        built = tuple(layout.add_image(s) for s in specs)
        entries: list[Descriptor] = []

        def blob(d: Descriptor) -> bytes:
            return (layout.path / "blobs" / "sha256" / d.digest.split(":", 1)[1]).read_bytes()

        for b in built:
            for d in (b.config, *b.layers):
                client.push_blob(repo, blob(d))
            manifest = json.loads(blob(b.manifest))
            if docker:
                if any(s.compression == "zstd" for s in specs):
                    raise ValueError("Docker schema2 has no zstd layer type: use format='oci'")
                manifest["mediaType"] = DOCKER_MANIFEST
                manifest["config"]["mediaType"] = DOCKER_CONFIG
                for layer, spec_layer in zip(manifest["layers"], b.layers, strict=True):
                    comp: Compression = "gzip" if spec_layer.media_type.endswith("gzip") else "none"
                    layer["mediaType"] = DOCKER_LAYER_TYPES[comp]
            body = json.dumps(manifest, separators=(",", ":")).encode()
            mtype = manifest["mediaType"]
            ref = tag if len(built) == 1 else sha256_digest(body)
            _, digest = client.push_manifest(repo, ref, body, mtype)
            entries.append(Descriptor(mtype, digest, len(body), b.platform))
        if len(built) > 1:
            index = {
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST if docker else OCI_INDEX,
                "manifests": [e.to_json() for e in entries],
            }
            client.push_manifest(repo, tag, json.dumps(index).encode(), str(index["mediaType"]))
    return _seeded(server, repo, tag, built)


# /etc/seeded in the second layer of the `seeded` fixture's busybox:two-layers
SEEDED_FILE = b"seeded by the registry fixture\n"


def busybox_spec(
    test_images: Path,
    *,
    arch: str = "amd64",
    compression: Compression = "gzip",
    extra_layer: bytes | None = None,
) -> ImageSpec:
    """The busybox rootfs (busybox.tar, or busybox-arm64.tar for arch="arm64") as an image;
    ``extra_layer`` (make_layer(...)) adds a second layer on top."""
    tar = test_images / ("busybox.tar" if arch == "amd64" else f"busybox-{arch}.tar")
    layers: list[Path | bytes] = [tar]
    if extra_layer is not None:
        layers.append(extra_layer)
    variant = "v8" if arch == "arm64" else None
    return ImageSpec(layers, architecture=arch, variant=variant, compression=compression)


# -- inspecting what is in a registry ------------------------------------------------------------


def inspect_remote(
    server: RegistryServer,
    ref: str,
    *,
    raw: bool = False,
    config: bool = False,
    anonymous: bool = False,
) -> dict[str, Any]:
    """``skopeo inspect [--raw|--config] docker://<ref>``, parsed. ``ref`` may be
    ``repo:tag`` / ``repo@digest`` (this server's host is prepended) or a full reference."""
    if not ref.startswith(server.host + "/"):
        ref = server.ref(ref)
    sk = skopeo_for(server)
    args = ["inspect", *sk.transport_flags(server, "", anonymous)]
    if raw:
        args.append("--raw")
    if config:
        args.append("--config")
    result: dict[str, Any] = json.loads(sk.run(*args, f"docker://{ref}").stdout)
    return result


def remote_digest(server: RegistryServer, ref: str) -> str:
    """The digest the registry holds for ``ref`` (of its exact manifest bytes)."""
    return str(inspect_remote(server, ref)["Digest"])


def copy_to_oci_dir(
    server: RegistryServer, ref: str, dest: Path, *, all_platforms: bool = False
) -> Path:
    """``skopeo copy docker://<ref> oci:<dest>``: what a pushed image holds, layer by layer."""
    if not ref.startswith(server.host + "/"):
        ref = server.ref(ref)
    sk = skopeo_for(server)
    args = ["copy", "--quiet", *sk.transport_flags(server, "src")]
    if all_platforms:
        args.append("--all")
    sk.run(*args, f"docker://{ref}", f"oci:{dest}:latest")
    return dest


# -- a registry that serves exactly what it is told ----------------------------------------------


@dataclass
class Route:
    """One canned answer. ``truncate_at``: send the headers (with the full Content-Length),
    then only that many body bytes, and drop the connection (a registry dying mid-blob)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None


class StaticRegistry(_ThreadedHTTP):
    """A real HTTP server on 127.0.0.1 answering canned routes, for what distribution 2.8 will
    neither accept nor serve (measured by the self-tests): a manifest over its 4 MiB limit
    (PUT -> 400, planted on disk -> 500), an unknown top-level media type (400 / 500), and a
    blob cut off mid-body. GET /v2/ answers 200; unknown paths 404 with a registry error body.
    ``requests`` logs (method, path, headers) of everything asked."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.tls = False
        self.ca_path: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"

    def route(self, path: str, route: Route, methods: Iterable[str] = ("GET", "HEAD")) -> None:
        with self._lock:
            for m in methods:
                self.routes[(m, path)] = route

    def manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """Serve ``body`` as /v2/<repo>/manifests/<ref> and by its digest; returns the digest."""
        digest = sha256_digest(body)
        headers = {"Content-Type": media_type, "Docker-Content-Digest": digest}
        for r in {ref, digest}:
            self.route(f"/v2/{repo}/manifests/{r}", Route(200, body, headers))
        return digest

    def blob(
        self,
        repo: str,
        data: bytes,
        *,
        digest: str | None = None,
        truncate_at: int | None = None,
    ) -> str:
        digest = digest or sha256_digest(data)
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        self.route(f"/v2/{repo}/blobs/{digest}", Route(200, data, headers, truncate_at))
        return digest

    def start(self) -> StaticRegistry:
        self.route("/v2/", Route(200, b"{}", {"Content-Type": "application/json"}))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_static_handler(self))
        httpd.daemon_threads = True
        self._serve(httpd, "static-registry")
        return self


    def __enter__(self) -> StaticRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_static_handler(reg: StaticRegistry) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            with reg._lock:
                reg.requests.append((self.command, path, dict(self.headers.items())))
                route = reg.routes.get((self.command, path))
            if route is None:
                route = Route(
                    404,
                    b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}',
                    {"Content-Type": "application/json"},
                )
            self.send_response(route.status)
            for k, v in route.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(route.body)))
            if route.truncate_at is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if route.truncate_at is None:
                self.wfile.write(route.body)
                return
            self.wfile.write(route.body[: route.truncate_at])
            self.wfile.flush()
            self.close_connection = True
            # a hard close, as a dying server's kernel would do it
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        do_GET = do_HEAD = _answer

    return Handler
