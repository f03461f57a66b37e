"""RegistryClient: one session with one registry, its manifests, blobs, uploads and tags.

It chooses the endpoint (mirrors, https then http for an insecure registry), answers the
registry's challenge (auth.py), sends every request through the pooled transport
(transport.py) and checks what comes back: manifests against their digest, blobs against
the digest and size of their descriptor as they stream.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

from minidock.errors import AuthenticationError, InvalidArgument, RegistryError
from minidock.image.credentials import Credentials
from minidock.image.distribution.auth import (
    MAX_TOKEN_RESPONSE,
    TOKENS,
    Challenge,
    TokenCache,
    basic_authorization,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    token_key,
    token_url,
)
from minidock.image.distribution.transport import (
    CHUNK,
    DOCKER_HUB_REGISTRY,
    MAX_REDIRECTS,
    RETRY_DELAYS,
    USER_AGENT,
    Endpoint,
    Response,
    Transport,
    describe,
    endpoints_for,
    explain_status,
    is_transient,
    origin,
    printable,
    redirect_target,
    verifies_tls,
    with_retries,
)
from minidock.image.reference import validate_digest
from minidock.oci.image import MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, Descriptor, media_type_of
from minidock.records import record
from minidock.settings import EngineConfig


@record(frozen=True)
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
                                        f"{printable(resp.header('WWW-Authenticate') or '', 80)!r}")
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

    def _fetch_token(self, c: Challenge, scopes: Sequence[str], creds: Credentials | None,
                     offline: bool = False) -> str:
        """Ask the realm for a token (distribution's token spec, the GET flavour)."""
        realm = c.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"token server realm {printable(realm, 100)!r} is not an "
                                "http(s) URL")
        if parts.scheme == "http" and creds is not None and not self.config.is_insecure(
            parts.netloc
        ):
            raise RegistryError(f"refusing to send credentials to {realm}: plain http")
        url = token_url(c, scopes, creds.username if creds is not None else None, offline)
        headers = {"User-Agent": USER_AGENT}
        if creds is not None:
            headers["Authorization"] = basic_authorization(creds)
        verify = parts.scheme == "https" and verifies_tls(self.config, parts.netloc)
        resp = self._with_retries(
            lambda: self.transport.request("GET", url, headers, None, verify), realm)
        if resp.status != 200:
            body = resp.drain()
            if resp.status == 401 and creds is not None:
                raise AuthenticationError("unauthorized: incorrect username or password")
            raise explain_status(resp.status, body, "token", printable(realm, 100))
        token, lifetime = parse_token_response(resp.read_all(MAX_TOKEN_RESPONSE, "token"))
        self.tokens.put(token_key(c, scopes, creds.username if creds else ""), token,
                        lifetime)
        return token

    def _authorization(self, scopes: Sequence[str]) -> str | None:
        c = self._challenge
        if c is None:
            return None
        creds = self._creds_for(self.endpoint)
        if c.scheme == "basic":
            return basic_authorization(creds) if creds is not None else None
        key = token_key(c, scopes, creds.username if creds else "")
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
            self.tokens.drop(token_key(self._challenge, scopes,
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
        headers = {"User-Agent": USER_AGENT, "Authorization": basic_authorization(creds)}
        resp = self._with_retries(
            lambda: self.transport.request("GET", ep.base + "/v2/", headers, None, ep.verify),
            ep.base + "/v2/")
        body = resp.drain()
        if resp.status == 401:
            raise AuthenticationError("unauthorized: incorrect username or password")
        if resp.status != 200:
            raise explain_status(resp.status, body, "login", ep.base)

    # ---- requests ----

    def _with_retries(self, send: Callable[[], Response], what: str,
                      retry_5xx: bool = True) -> Response:
        return with_retries(send, what, self._sleep, retry_5xx)

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
        send_auth = origin(url) == origin(ep.base)
        for _ in range(MAX_REDIRECTS + 1):
            h = {"User-Agent": USER_AGENT, **headers}
            if send_auth:
                auth = self._authorization(scopes)
                if auth:
                    h["Authorization"] = auth
            target = urllib.parse.urlsplit(url)
            verify = ep.verify if target.netloc == ep.netloc else (
                target.scheme == "https" and verifies_tls(self.config, target.netloc))
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
            raise RegistryError(f"read manifest {subject}: {describe(e)}") from e
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
                                f"{printable(header, 80)}, the content hashes to {digest}")
        media_type = media_type_of(resp.header("Content-Type")) or ""
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
                                    f"{printable(header, 80)} instead")
            skip = received if resp.status == 200 else 0
            if resp.status == 206:
                content_range = resp.header("Content-Range") or ""
                if not content_range.startswith(f"bytes {received}-"):
                    resp.close()
                    raise RegistryError(f"blob {desc.digest}: bad Content-Range "
                                        f"{printable(content_range, 80)!r} for a resumed download")
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
                delay = next(delays, None) if is_transient(e) else None
                if delay is None:
                    raise RegistryError(f"download blob {desc.digest}: {describe(e)}") from e
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
                                    f"{printable(got, 40)}, want 0-{sent - 1}")
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
                                f"{printable(header, 80)}")

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
                                f"{printable(header, 80)}, we sent {digest}")
        return digest

    def close(self) -> None:
        self.transport.close()
