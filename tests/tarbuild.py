"""Building layer tars entry by entry, for the layer-apply tests (unit) and the attack tests
(integration), and the fixture that runs them with both in-root resolvers."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from minidock.linux import fs

MTIME = 1_600_000_000
Entry = tuple[tarfile.TarInfo, bytes]


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test with both in-root resolvers (see minidock.linux.fs)."""
    monkeypatch.setattr(fs, "use_openat2", request.param == "openat2")
    return str(request.param)


def entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int | None = None,
    gid: int | None = None,
    mtime: float = MTIME,
    linkname: str = "",
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
) -> Entry:
    """One member; owned by the caller unless ``uid``/``gid`` say otherwise."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = os.getuid() if uid is None else uid
    info.gid = os.getgid() if gid is None else gid
    info.mtime = mtime
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def d(name: str, **kw: object) -> Entry:
    kw.setdefault("mode", 0o755)
    return entry(name, tarfile.DIRTYPE, **kw)  # type: ignore[arg-type]


def sym(name: str, target: str, **kw: object) -> Entry:
    return entry(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **kw)  # type: ignore[arg-type]


def hard(name: str, target: str) -> Entry:
    return entry(name, tarfile.LNKTYPE, linkname=target)


def make_tar(*entries: Entry, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()
