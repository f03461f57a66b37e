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

``COPY --from`` hashes a stage's or image's files as they are on disk instead (the daemon's
lazy source, not a tar from the CLI): the mode with its file type bits (33188 for rw-r--r--),
the file's own uid and gid, and the user and group names the *host* gives those ids.
"""

from __future__ import annotations

import hashlib
import os
import stat

from minidock.linux import fs

_TYPEFLAG = {stat.S_IFREG: "0", stat.S_IFLNK: "2", stat.S_IFCHR: "3", stat.S_IFBLK: "4",
             stat.S_IFDIR: "5", stat.S_IFIFO: "6"}
_CAPABILITY = "security.capability"


def _host_name(table: str, number: int) -> str:
    import grp
    import pwd

    try:
        return pwd.getpwuid(number).pw_name if table == "passwd" else grp.getgrgid(number).gr_name
    except KeyError:
        return ""


def entry_hash(context: str, rel: str, on_disk: bool = False) -> str:
    """The hex tarsum of the context entry ``rel`` (``/``-separated, relative); ``on_disk``:
    of a stage's or image's file, as COPY --from sees it (module docstring)."""
    full = os.path.join(context, rel)
    st = os.lstat(full)
    kind = stat.S_IFMT(st.st_mode)
    is_dir = kind == stat.S_IFDIR
    size = st.st_size if kind == stat.S_IFREG else 0
    owner = [("uid", "0"), ("gid", "0")]
    names = [("uname", ""), ("gname", "")]
    if on_disk:
        owner = [("uid", str(st.st_uid)), ("gid", str(st.st_gid))]
        names = [("uname", _host_name("passwd", st.st_uid)),
                 ("gname", _host_name("group", st.st_gid))]
    fields = [
        ("name", rel.rstrip("/") + "/" if is_dir else rel),
        ("mode", str(st.st_mode if on_disk else stat.S_IMODE(st.st_mode))),
        *owner,
        ("size", str(size)),
        ("typeflag", _TYPEFLAG.get(kind, "0")),
        ("linkname", os.readlink(full) if kind == stat.S_IFLNK else ""),
        *names,
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


def joined_hash(prefix: str, hashes: list[str]) -> str:
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


def source_hash(context: str, rel: str, below: list[str] | None = None,
                on_disk: bool = False) -> str:
    """``file:<hex>`` or ``dir:<hex>`` of one COPY/ADD source (symlinks followed inside the
    context). For a directory, ``below`` lists the context paths under it that the build
    sees (after .dockerignore; every path under it by default): the hash covers the
    directory itself and each of them, a symlink among them as what it points to."""
    rel = resolve(context, rel)
    full = os.path.join(context, rel)
    if not os.path.isdir(full):
        return "file:" + entry_hash(context, rel, on_disk)
    if below is None:
        below = []
        for root, dirs, files in os.walk(full):
            for name in dirs + files:
                below.append(os.path.relpath(os.path.join(root, name), context))
    entries = [rel, *(resolve(context, p) if os.path.islink(os.path.join(context, p)) else p
                      for p in below)]
    return joined_hash("dir", sorted(entry_hash(context, p, on_disk) for p in entries))


def sources_hash(hashes: list[str]) -> str:
    """What a COPY/ADD of these sources says: the one hash, or ``multi:`` over several."""
    return hashes[0] if len(hashes) == 1 else joined_hash("multi", hashes)
