"""Image references: ``[host[:port]/]name[:tag][@sha256:digest]``, normalized as Docker does.

Pure functions, no I/O. The grammar is distribution/reference's::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [ domain "/" ] path-component ( "/" path-component )*
    domain      := host [ ":" port ]      host = DNS-ish name, IPv4 or [IPv6]
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest      := "sha256:" [a-f0-9]{64}        (minidock only stores sha256)

Normalization (``docker.io`` is Docker Hub)::

    ubuntu                   -> docker.io/library/ubuntu:latest
    foo/bar:1                -> docker.io/foo/bar:1
    index.docker.io/ubuntu   -> docker.io/library/ubuntu:latest
    localhost:5000/foo       -> localhost:5000/foo:latest

The first path element is a registry host when it contains "." or ":", is "localhost", or
has uppercase letters (repository paths never do). The *familiar* form strips
``docker.io/`` and ``library/`` again and is what users see and what repositories.json keys.
"""

from __future__ import annotations

import re

from minidock.errors import InvalidArgument
from minidock.records import record, replace

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
# Any algorithm is *syntactically* a digest (so "foo@md5:..." gives a digest error, not a
# format error); only sha256 is accepted afterwards.
_DIGEST_ANY = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    r"^((?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME + r")"
    r"(?::(" + _TAG + r"))?(?:@(" + _DIGEST_ANY + r"))?$",
    re.ASCII,
)
_DOMAIN_RE = re.compile(r"^" + _DOMAIN_AND_PORT + r"$", re.ASCII)
_REMOTE_RE = re.compile(r"^" + _REMOTE_NAME + r"$", re.ASCII)
_TAG_RE = re.compile(r"^" + _TAG + r"$", re.ASCII)
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_HEX_PREFIX_RE = re.compile(r"^[a-f0-9]{1,64}$")


@record(frozen=True)
class Reference:
    """A normalized named reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name: ``docker.io/library/ubuntu``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Repository name as users write it: ``ubuntu``, ``foo/bar``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            if "/" not in rest:
                return rest
        return self.path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """``ubuntu:latest``, ``localhost:5000/foo:bar``, ``ubuntu@sha256:...``."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    def with_default_tag(self) -> Reference:
        """Docker's TagNameOnly: add ``latest`` when there is neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return replace(self, tag=DEFAULT_TAG)
        return self

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag, digest=None)

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)

    @property
    def registry(self) -> str:
        """Host to talk to: Docker Hub's ``docker.io`` is served by registry-1.docker.io."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain


def _invalid(value: str, why: str = "") -> InvalidArgument:
    return InvalidArgument(f"invalid reference format: {value!r}" + (f": {why}" if why else ""))


def split_docker_domain(name: str) -> tuple[str, str]:
    """Split ``[domain/]remainder`` the way Docker does, applying the Hub defaults."""
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(value: str) -> Reference:
    """Parse and normalize a named reference; raise InvalidArgument naming the value.

    The tag is left unset when none is given (see :meth:`Reference.with_default_tag`).
    """
    if not value:
        raise InvalidArgument("invalid reference format: repository name must have at "
                              "least one component")
    if _IDENTIFIER_RE.match(value):
        raise InvalidArgument(f"invalid repository name ({value}), cannot specify 64-byte "
                              "hexadecimal strings")
    domain, remainder = split_docker_domain(value)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidArgument(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    full = f"{domain}/{remainder}"
    m = _REFERENCE_RE.match(full)
    if not m:
        raise _invalid(value)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(value, f"repository name must not be more than "
                              f"{NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None and not _DIGEST_RE.match(digest):
        raise _invalid(value, f"unsupported digest {digest!r} (want sha256:<64 hex>)")
    # The regexp may attribute a "host:port" to the path when the domain was implied, so take
    # the split from split_docker_domain, which is authoritative, and check its two halves.
    path = remainder.split("@", 1)[0]
    if tag is not None:
        path = path[: -(len(tag) + 1)]
    if not _DOMAIN_RE.match(domain) or not _REMOTE_RE.match(path):
        raise _invalid(value)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def parse_tagged(value: str) -> Reference:
    """A reference for storing a tag: ``latest`` by default, digests refused (docker tag)."""
    ref = parse_reference(value)
    if ref.digest is not None:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: {value!r}")
    if ref.familiar_name == "sha256":
        raise InvalidArgument("refusing to create an ambiguous tag using digest algorithm as "
                              f"name: {value!r}")
    return ref.with_default_tag()


def familiar(value: str) -> str:
    """Normalize ``value`` and give its familiar form with the default tag: ``ubuntu:latest``."""
    return parse_reference(value).with_default_tag().familiar()


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


def validate_digest(value: str) -> str:
    """Return ``value`` if it is ``sha256:<64 lowercase hex>``, else raise InvalidArgument.

    Every digest or id that becomes part of a path goes through this first.
    """
    if not isinstance(value, str) or not _DIGEST_RE.match(value):
        raise InvalidArgument(f"invalid digest {value!r}: want sha256:<64 hex digits>")
    return value


def digest_hex(value: str) -> str:
    """The 64 hex digits of a validated sha256 digest."""
    return validate_digest(value)[len("sha256:"):]


def is_identifier(value: str) -> bool:
    """64 hex digits without algorithm: an image id as ``docker`` accepts it."""
    return bool(_IDENTIFIER_RE.match(value))


def is_id_prefix(value: str) -> bool:
    """``abc123`` or ``sha256:abc123``: something that may be a (prefix of an) image id."""
    hexpart = value[len("sha256:"):] if value.startswith("sha256:") else value
    return bool(_HEX_PREFIX_RE.match(hexpart))


def short_id(value: str) -> str:
    """Docker's TruncateID: drop the algorithm, keep 12 hex digits."""
    if ":" in value:
        value = value.split(":", 1)[1]
    return value[:12]
