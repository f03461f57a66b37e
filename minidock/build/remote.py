"""ADD <url>: a file fetched over http(s) for a build step.

The file is saved under the build's private directory with mode 0600 (as Docker's builder
writes it), named after the last path component of the URL (or of where redirects led),
with the Last-Modified time of the answer as its mtime when the server sends one. TLS
verification is the registry client's: the system's trust store.
"""

from __future__ import annotations

import os
import posixpath

from minidock.errors import BuildFailed

_CHUNK = 1 << 20


def download(url: str, workdir: str) -> tuple[str, str, float | None]:
    """Fetch ``url`` into ``workdir``: (path of the file, its name, its mtime or None)."""
    import email.utils
    import urllib.parse
    import urllib.request

    try:
        response = urllib.request.urlopen(url, timeout=60)
    except OSError as e:
        reason = getattr(e, "reason", None) or e
        raise BuildFailed(f"ADD failed: {url}: {reason}") from None
    with response:
        status = getattr(response, "status", 200)
        if status >= 400:
            raise BuildFailed(f"ADD failed: {url}: status {status}")
        final = urllib.parse.urlparse(response.geturl() or url)
        name = posixpath.basename(final.path.rstrip("/")) or "__unnamed__"
        folder = os.path.join(workdir, "download-" + os.urandom(8).hex())
        os.mkdir(folder, 0o700)
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
        mtime = None
        modified = response.headers.get("Last-Modified")
        if modified:
            try:
                mtime = email.utils.parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                mtime = None
    return path, name, mtime
