"""/proc/<pid>/mountinfo read into one record per mount: the one parser of that file.

A line (proc(5)) has six fixed fields, zero or more optional ones ended by a lone ``-``, then
three more::

    36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    ^  ^  ^    ^     ^           ^         ^           ^    ^         ^
    id |  dev  root  mount point options   optional    type source    super options
       parent

The kernel writes a space, tab, newline or backslash inside a path as an octal escape
(``\\040``, ``\\011``, ``\\012``, ``\\134``); :func:`unescape` undoes that, and the root, the
mount point and the source come out unescaped. Lines that do not have this shape are skipped.
"""

from __future__ import annotations

import re

from minidock.records import record

SELF = "/proc/self/mountinfo"

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    r"""A mountinfo field as the path it stands for (\040 -> space, \134 -> backslash)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@record(frozen=True)
class Mount:
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    #: "major:minor" of the filesystem's superblock: two mounts of one filesystem share it.
    device: str
    #: The directory of the filesystem that is mounted here ("/" unless a bind mount).
    root: str
    mount_point: str
    #: Per-mount options (rw, nosuid, ...).
    options: str
    #: Propagation and the like: "shared:9", "master:1", "unbindable".
    optional: tuple[str, ...]
    fstype: str
    source: str
    #: Per-superblock options; for cgroup v1 they name the hierarchy's controllers.
    super_options: str


def parse(text: str) -> list[Mount]:
    """The mounts of a mountinfo text, in its order (parents before their children)."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        mounts.append(Mount(
            mount_id=mount_id,
            parent_id=parent_id,
            device=fields[2],
            root=unescape(fields[3]),
            mount_point=unescape(fields[4]),
            options=fields[5],
            optional=tuple(fields[6:sep]),
            fstype=fields[sep + 1],
            source=unescape(fields[sep + 2]),
            super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
        ))
    return mounts


def read_text(path: str = SELF) -> str:
    """The text of a mountinfo file; a path that is not UTF-8 keeps its bytes as surrogates."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def read(path: str = SELF) -> list[Mount]:
    """The mounts of this process's mount namespace (or of ``path``'s process)."""
    return parse(read_text(path))


def mount_of(path: str, mounts: list[Mount] | None = None) -> Mount | None:
    """The mount ``path`` (absolute, symlinks resolved) is on: the deepest mount point at or
    above it, the last one mounted where several are stacked."""
    best = None
    for m in read() if mounts is None else mounts:
        point = m.mount_point
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = m
    return best
