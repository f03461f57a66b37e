"""The content hash of COPY and ADD sources, as Docker's classic builder computes it.

It is both the cache key of a COPY/ADD step and part of its history line
(``/bin/sh -c #(nop) COPY file:<hex> in /dst ``), so it must be Docker's to the bit:

    file:<hex>    one file (or symlink): sha256 of its tarsum v1 header, then its content
    dir:<hex>     a directory: sha256 of the sorted hashes of everything below it, joined by ","
    multi:<hex>   several sources: the same over their own hashes, in the order given

The tarsum v1 header (moby ``pkg/tarsum``) is the concatenation of ``key + value`` for name,
mode, uid, gid, size, typeflag, linkname, uname, gname, devmajor and devminor (no mtime: a
touched file still hits the cache), then any ``security.capability`` xattr. The values are those
of the tar entry the daemon sees: name relative to the context (a directory's ends in ``/``),
the permission bits alone (420 for rw-r--r--), uid and gid 0 (Docker's CLI sends the context
owned by root) with empty user and group names, size for regular files only. A source that is
a symlink is hashed as what it points to inside the context, under that name.
"""

from __future__ import annotations

import hashlib
import os
import stat

from minidock.linux import fs

_TYPEFLAG = {stat.S_IFREG: "0", stat.S_IFLNK: "2", stat.S_IFCHR: "3", stat.S_IFBLK: "4",
             stat.S_IFDIR: "5", stat.S_IFIFO: "6"}
_CAPABILITY = "security.capability"


def entry_hash(context: str, rel: str) -> str:
    """The hex tarsum of the context entry ``rel`` (``/``-separated, relative)."""
    full = os.path.join(context, rel)
    st = os.lstat(full)
    kind = stat.S_IFMT(st.st_mode)
    is_dir = kind == stat.S_IFDIR
    size = st.st_size if kind == stat.S_IFREG else 0
    fields = [
        ("name", rel.rstrip("/") + "/" if is_dir else rel),
        ("mode", str(stat.S_IMODE(st.st_mode))),
        ("uid", "0"), ("gid", "0"),
        ("size", str(size)),
        ("typeflag", _TYPEFLAG.get(kind, "0")),
        ("linkname", os.readlink(full) if kind == stat.S_IFLNK else ""),
        ("uname", ""), ("gname", ""),
        ("devmajor", str(os.major(st.st_rdev)) if kind in (stat.S_IFCHR, stat.S_IFBLK) else "0"),
        ("devminor", str(os.minor(st.st_rdev)) if kind in (stat.S_IFCHR, stat.S_IFBLK) else "0"),
    ]
    h = hashlib.sha256()
    for key, value in fields:
        h.update((key + value).encode("utf-8", "surrogateescape"))
    if kind != stat.S_IFLNK:
        try:
            cap = os.getxattr(full, _CAPABILITY, follow_symlinks=False)
        except OSError:
            cap = None
        if cap is not None:
            h.update(_CAPABILITY.encode() + cap)
    if kind == stat.S_IFREG and size:
        with open(full, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _joined(prefix: str, hashes: list[str]) -> str:
    return prefix + ":" + hashlib.sha256(",".join(hashes).encode()).hexdigest()


def resolve(context: str, rel: str) -> str:
    """``rel`` with every symlink followed inside the context, as if it were ``/`` (Docker's
    FollowSymlinkInScope): the context path it names."""
    root_fd = os.open(context, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = fs.open_in_root(root_fd, rel, os.O_PATH)
    finally:
        os.close(root_fd)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return os.path.relpath(real, os.path.realpath(context))


def source_hash(context: str, rel: str, below: list[str] | None = None) -> str:
    """``file:<hex>`` or ``dir:<hex>`` of one COPY/ADD source (symlinks followed inside the
    context). For a directory, ``below`` lists the context paths under it that the build
    sees (after .dockerignore; every path under it by default): the hash covers the
    directory itself and each of them, a symlink among them as what it points to."""
    rel = resolve(context, rel)
    full = os.path.join(context, rel)
    if not os.path.isdir(full):
        return "file:" + entry_hash(context, rel)
    if below is None:
        below = []
        for root, dirs, files in os.walk(full):
            for name in dirs + files:
                below.append(os.path.relpath(os.path.join(root, name), context))
    entries = [rel, *(resolve(context, p) if os.path.islink(os.path.join(context, p)) else p
                      for p in below)]
    return _joined("dir", sorted(entry_hash(context, p) for p in entries))


def sources_hash(hashes: list[str]) -> str:
    """What a COPY/ADD of these sources says: the one hash, or ``multi:`` over several."""
    return hashes[0] if len(hashes) == 1 else _joined("multi", hashes)
