"""COPY and ADD: files of the build context (or of a stage's or an image's root) written into
a step's root filesystem, by the classic builder's rules.

Sources, each resolved inside its own root (a symlink never leads out of it)::

    COPY a.txt dir/ "*.md" /dst/     a path or a Go filepath.Match pattern, relative to the
                                     context; ``..`` out of it is refused; what .dockerignore
                                     left out does not exist
    COPY --from=build /out /dst      a path in the stage's (or image's) root filesystem

Destination (``dest``; relative to WORKDIR)::

    a directory source               its contents go into dest (made if missing)
    a file, dest ending in /         dest/<name>; also when dest is an existing directory
    a file, other dest               dest itself (its parents made)
    several sources                  dest must end in /
    ADD of a local tar archive       extracted into dest (plain, gzip, bzip2, xz, zstd),
                                     through the image layer's safe apply routine
    ADD of an http(s) URL            downloaded to dest/<name from the URL> or dest, 0600

Everything copied is owned by 0:0 (or --chown's user and group, names looked up in the
step's /etc/passwd and /etc/group); modes and mtimes are the source's (--chmod replaces the
mode). Missing parent directories are made 0755 and owned like the copy. The destination is
resolved inside the step's root, and entries are created relative to directory fds with
nothing followed, so a symlink in the image cannot turn the copy onto the host.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import stat

from minidock.build import sources as hashes
from minidock.errors import InvalidArgument
from minidock.gofmt import path_match_regex
from minidock.linux import fs
from minidock.records import field, record

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_REOPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # an O_PATH fd, via /proc
_WILDCARD = re.compile(r"[*?\[]")


class CopyError(InvalidArgument):
    """A COPY/ADD that cannot be done; the builder prefixes the instruction."""


@record
class Source:
    """One source of a COPY/ADD: a path inside ``root``, symlinks resolved in it."""

    root: str  # the context directory, or a mounted root filesystem
    path: str  # relative to root, "" for the root itself
    name: str  # the name it goes by at the destination (the last component written)
    allowed: frozenset[str] | None = None  # the context paths a build sees (None: all)
    content: bytes | None = None  # a heredoc's text (no file behind it)
    url_mtime: float | None = None  # a downloaded file's Last-Modified time


@record
class Ownership:
    """Who owns what a COPY makes: 0:0 by default, --chown's ids, or (``keep``: a COPY
    --from without --chown) each file's own, as Docker keeps them then."""

    uid: int = 0
    gid: int = 0
    mode: int | None = None  # --chmod
    keep: bool = False

    def of(self, st: os.stat_result | None) -> tuple[int, int]:
        if self.keep and st is not None:
            return st.st_uid, st.st_gid
        return (0, 0) if self.keep else (self.uid, self.gid)


@record
class _Walk:
    owner: Ownership
    allowed: frozenset[str] | None
    links: dict[tuple[int, int], tuple[int, str]] = field(default_factory=dict)


# --- sources -------------------------------------------------------------------------------


def _go_match_regex(pattern: str) -> re.Pattern[str]:
    try:
        return path_match_regex(pattern)
    except ValueError as e:
        raise CopyError(str(e)) from None


def _clean(path: str, keyword: str, original: str) -> str:
    rel = posixpath.normpath("/" + path).lstrip("/")
    outside = posixpath.normpath(path)
    if not path.startswith("/") and (outside == ".." or outside.startswith("../")):
        raise CopyError(f"forbidden path outside the build context: {original} ()")
    return "" if rel == "." else rel


def context_sources(context: str, words: list[str], allowed: frozenset[str] | None,
                    keyword: str) -> list[Source]:
    """The context's sources of a COPY/ADD (patterns expanded, symlinks followed inside it)."""
    out: list[Source] = []
    for word in words:
        rel = _clean(word, keyword, word)
        if _WILDCARD.search(rel):
            regex = _go_match_regex(rel)
            candidates = sorted(allowed) if allowed is not None else _walk_all(context)
            found = [p for p in candidates if regex.match(p)]
            # a matched directory takes what is below it along: drop those
            found = [p for p in found if not any(p.startswith(q + "/") for q in found)]
            for p in found:
                out.append(Source(context, p, posixpath.basename(p), allowed))
            continue
        out.append(_resolved(context, rel, allowed, word))
    if not out:
        raise CopyError("no source files were specified")
    return out


def _walk_all(root: str) -> list[str]:
    found = []
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(top, name), root))
    return sorted(found)


def _resolved(root: str, rel: str, allowed: frozenset[str] | None, word: str) -> Source:
    name = posixpath.basename(rel) if rel else ""
    try:
        real = hashes.resolve(root, rel) if rel else "."
    except (FileNotFoundError, NotADirectoryError):
        raise CopyError(f"file not found in build context or excluded by .dockerignore: stat "
                        f"{word}: file does not exist") from None
    except OSError as e:
        raise CopyError(f"{word}: {e.strerror}") from None
    real = "" if real == "." else real
    if real.startswith("../") or real == "..":
        raise CopyError(f"forbidden path outside the build context: {word} ()")
    if allowed is not None and real and real not in allowed:
        raise CopyError(f"file not found in build context or excluded by .dockerignore: stat "
                        f"{word}: file does not exist")
    return Source(root, real, name, allowed)


def root_sources(root: str, words: list[str]) -> list[Source]:
    """The sources of a COPY --from: paths (and patterns) in a stage's or image's root."""
    out: list[Source] = []
    for word in words:
        rel = posixpath.normpath("/" + word).lstrip("/")
        rel = "" if rel == "." else rel
        if _WILDCARD.search(rel):
            regex = _go_match_regex(rel)
            found = [p for p in _walk_all(root) if regex.match(p)]
            found = [p for p in found if not any(p.startswith(q + "/") for q in found)]
            out += [Source(root, p, posixpath.basename(p)) for p in found]
            continue
        try:
            real = hashes.resolve(root, rel) if rel else ""
        except (FileNotFoundError, NotADirectoryError):
            raise CopyError(f"stat {word}: file does not exist") from None
        real = "" if real == "." else real
        out.append(Source(root, real, posixpath.basename(rel)))
    if not out:
        raise CopyError("no source files were specified")
    return out


def source_hash(src: Source) -> str:
    """The content hash of one source (``file:`` / ``dir:``), as the history line shows."""
    if src.content is not None:
        import hashlib

        return "file:" + hashlib.sha256(src.content).hexdigest()
    full = os.path.join(src.root, src.path)
    on_disk = src.allowed is None  # a stage's or image's file, not the context's
    if src.path and not os.path.isdir(full):
        return "file:" + hashes.entry_hash(src.root, src.path, on_disk)
    below = None
    if src.allowed is not None:
        prefix = src.path + "/" if src.path else ""
        below = [p for p in sorted(src.allowed) if p.startswith(prefix)]
    if not src.path:
        return hashes.joined_hash("dir", sorted(hashes.entry_hash(src.root, p, on_disk)
                                                for p in (below or _walk_all(src.root))))
    return hashes.source_hash(src.root, src.path, below, on_disk)


# --- the destination -----------------------------------------------------------------------


def normalize_dest(workdir: str, dest: str) -> str:
    """dest made absolute against WORKDIR, a trailing slash kept."""
    if dest.startswith("/"):
        return dest
    joined = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
    return joined + "/" if dest.endswith("/") and joined != "/" else joined


def _make_parents(root: str, path: str, owner: Ownership) -> None:
    if path.strip("/"):
        fs.make_dirs_in_root(root, path, 0o755, *owner.of(None))


def _open_dir(root_fd: int, path: str) -> int | None:
    try:
        fd = fs.open_in_root(root_fd, path, os.O_PATH)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return None
        return fs.open_in_root(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.close(fd)


def copy(dest_root: str, dest: str, sources: list[Source], owner: Ownership, *,
         extract: bool = False) -> None:
    """Copy ``sources`` to ``dest`` (absolute, trailing slash kept) in ``dest_root``."""
    if len(sources) > 1 and not dest.endswith("/"):
        raise CopyError("When using COPY with more than one source file, the destination "
                        "must be a directory and end with a /")
    root_fd = os.open(dest_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for src in sources:
            _copy_source(dest_root, root_fd, dest, src, owner, extract)
    finally:
        os.close(root_fd)


def _copy_source(dest_root: str, root_fd: int, dest: str, src: Source, owner: Ownership,
                 extract: bool) -> None:
    walk = _Walk(owner, src.allowed)
    try:
        if src.content is not None:
            _write_content(dest_root, root_fd, dest, src, owner)
            return
        sroot = os.open(src.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sfd = fs.open_in_root(sroot, src.path, os.O_PATH)
        finally:
            os.close(sroot)
        try:
            st = os.fstat(sfd)
            if stat.S_ISDIR(st.st_mode):
                existed = _open_dir(root_fd, dest)
                if existed is None:
                    _make_parents(dest_root, dest, owner)
                    dfd = _open_dir(root_fd, dest)
                    if dfd is None:
                        raise CopyError(f"cannot copy to non-directory: {dest}")
                    _finish_dir(dfd, None, owner)
                else:
                    dfd = existed
                src_dir = os.open(f"/proc/self/fd/{sfd}", _REOPEN_DIR)
                try:
                    _copy_children(src_dir, src.path, dfd, walk)
                finally:
                    os.close(src_dir)
                    os.close(dfd)
                return
            if extract and stat.S_ISREG(st.st_mode) and _is_archive(sfd):
                _extract(dest_root, root_fd, dest, sfd, owner)
                return
            target = dest
            if dest.endswith("/") or _open_dir_exists(root_fd, dest):
                target = posixpath.join(dest, src.name)
            _make_parents(dest_root, posixpath.dirname(target.rstrip("/")), owner)
            parent, name = fs.open_parent_in_root(root_fd, target)
            try:
                pfd = os.open(".", _REOPEN_DIR, dir_fd=parent)
            finally:
                os.close(parent)
            try:
                _copy_file_fd(sfd, st, pfd, name, walk, src.url_mtime)
            finally:
                os.close(pfd)
        finally:
            os.close(sfd)
    finally:
        for fd, _ in walk.links.values():
            os.close(fd)


def _open_dir_exists(root_fd: int, path: str) -> bool:
    fd = _open_dir(root_fd, path)
    if fd is None:
        return False
    os.close(fd)
    return True


def _write_content(dest_root: str, root_fd: int, dest: str, src: Source,
                   owner: Ownership) -> None:
    target = posixpath.join(dest, src.name) if dest.endswith("/") or \
        _open_dir_exists(root_fd, dest) else dest
    _make_parents(dest_root, posixpath.dirname(target), owner)
    parent, name = fs.open_parent_in_root(root_fd, target)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        os.write(fd, src.content or b"")
        os.fchown(fd, *owner.of(None))
        os.fchmod(fd, owner.mode if owner.mode is not None else 0o644)
    finally:
        os.close(fd)


def _copy_children(sfd: int, prefix: str, dfd: int, walk: _Walk) -> None:
    for name in sorted(os.listdir(sfd), key=os.fsencode):
        rel = f"{prefix}/{name}" if prefix else name
        if walk.allowed is not None and rel not in walk.allowed:
            continue
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            fs.make_dir_at(dfd, name)
            child_src = os.open(name, _DIR, dir_fd=sfd)
            child_dst = os.open(name, _DIR, dir_fd=dfd)
            try:
                _copy_children(child_src, rel, child_dst, walk)
                _finish_dir(child_dst, st, walk.owner)
            finally:
                os.close(child_src)
                os.close(child_dst)
            continue
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            _copy_file_fd(fd, st, dfd, name, walk, None)
        finally:
            os.close(fd)


def _finish_dir(dfd: int, st: os.stat_result | None, owner: Ownership) -> None:
    os.fchown(dfd, *owner.of(st))
    if owner.mode is not None:
        os.fchmod(dfd, owner.mode)
    elif st is not None:
        os.fchmod(dfd, stat.S_IMODE(st.st_mode))
    else:
        os.fchmod(dfd, 0o755)
    if st is not None:
        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_file_fd(sfd: int, st: os.stat_result, dfd: int, name: str, walk: _Walk,
                  mtime: float | None) -> None:
    """Copy the non-directory behind the O_PATH fd ``sfd`` to ``name`` in ``dfd``."""
    with contextlib.suppress(FileNotFoundError):
        existing = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"cannot overwrite directory {name!r} with a non-directory")
        os.unlink(name, dir_fd=dfd)
    owner = walk.owner
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in walk.links:
        first_dir, first_name = walk.links[key]
        os.link(first_name, name, src_dir_fd=first_dir, dst_dir_fd=dfd, follow_symlinks=False)
        return
    mode = stat.S_IMODE(st.st_mode) if owner.mode is None else owner.mode
    if stat.S_ISLNK(st.st_mode):
        # readlinkat(fd, ""): the target of the link an O_PATH|O_NOFOLLOW fd stands for
        os.symlink(os.readlink("", dir_fd=sfd), name, dir_fd=dfd)
        os.chown(name, *owner.of(st), dir_fd=dfd, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        return
    if stat.S_ISREG(st.st_mode):
        src = os.open(f"/proc/self/fd/{sfd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                          os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                fs.copy_data(src, out, st.st_size)
                os.fchown(out, *owner.of(st))
                os.fchmod(out, mode)
                if mtime is not None:
                    os.utime(out, (mtime, mtime))
                else:
                    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(src)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.mknod(name, stat.S_IFMT(st.st_mode) | mode, st.st_rdev, dir_fd=dfd)
        os.chown(name, *owner.of(st), dir_fd=dfd, follow_symlinks=False)
    else:
        return  # a socket: Docker's tar skips it too
    if st.st_nlink > 1:
        walk.links[key] = (os.dup(dfd), name)


# --- ADD: archives -------------------------------------------------------------------------

_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _is_archive(sfd: int) -> bool:
    """Whether the file is a (compressed) tar, as Docker's ``IsArchivePath`` decides."""
    fd = os.open(f"/proc/self/fd/{sfd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, 512, 0)
    finally:
        os.close(fd)
    return looks_like_archive(head)


def looks_like_archive(head: bytes) -> bool:
    """Compression by magic number, a plain tar by a valid first header checksum."""
    if head.startswith(_MAGIC):
        return True
    if len(head) < 512:
        return False
    try:
        stored = int(head[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(head[:148]) + 8 * 32 + sum(head[156:])
    return stored == computed


def _extract(dest_root: str, root_fd: int, dest: str, sfd: int, owner: Ownership) -> None:
    from minidock.image.layer import LayerError, apply_layer

    _make_parents(dest_root, dest, owner)
    dfd = _open_dir(root_fd, dest)
    if dfd is None:
        raise CopyError(f"cannot extract an archive to non-directory: {dest}")
    try:
        with open(f"/proc/self/fd/{sfd}", "rb") as stream:
            try:
                apply_layer(stream, f"/proc/self/fd/{dfd}")
            except LayerError as e:
                raise CopyError(str(e).replace("apply layer", "extract archive", 1)) from None
    finally:
        os.close(dfd)
