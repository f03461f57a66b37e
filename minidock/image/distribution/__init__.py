"""A client for the registry HTTP API v2 (the OCI distribution spec), on the standard library.

http.client and ssl, not requests or httpx: this package loads only when an image is pulled,
pushed or logged in to. Its rooms::

    auth.py        WWW-Authenticate challenges, bearer tokens (TokenCache), basic auth, scopes
    transport.py   endpoints, TLS, pooled connections, redirect policy, retries, error wording
    client.py      RegistryClient: ping, login check, manifests, blobs, uploads, tags

The documents it moves are parsed in minidock/oci/image.py (manifests, indexes, descriptors)
and matched to the machine in minidock/image/platform.py; both are re-exported here, so a
pull needs this one import.

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

from minidock.image.distribution.auth import (
    TOKENS,
    Challenge,
    TokenCache,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    repository_scopes,
)
from minidock.image.distribution.client import ManifestResult, RegistryClient
from minidock.image.distribution.transport import (
    Endpoint,
    endpoints_for,
    explain_status,
    redirect_target,
    registry_errors,
)
from minidock.image.platform import (
    config_platform,
    parse_platform,
    platform_matches,
    select_manifest,
)
from minidock.oci.image import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    check_json_depth,
    load_json,
    parse_manifest,
)

__all__ = [
    "DOCKER_CONFIG", "DOCKER_LAYER", "DOCKER_LIST", "DOCKER_MANIFEST", "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_SIZE", "OCI_CONFIG", "OCI_INDEX", "OCI_LAYER", "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD", "OCI_MANIFEST", "TOKENS", "Challenge", "Descriptor", "Endpoint",
    "ImageIndex", "ImageManifest", "ManifestResult", "Platform", "RegistryClient", "TokenCache",
    "check_json_depth", "config_platform", "endpoints_for", "explain_status", "load_json",
    "parse_manifest", "parse_platform", "parse_token_response", "parse_www_authenticate",
    "pick_challenge", "platform_matches", "redirect_target", "registry_errors",
    "repository_scopes", "select_manifest",
]
