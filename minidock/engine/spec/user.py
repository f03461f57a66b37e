"""Resolving ``-u name|uid[:group|gid]`` from the image's /etc/passwd and /etc/group.

The files are parsed as text. The host's NSS (getpwnam and friends) is never asked: it
would answer about the host, and loading modules named by the container's nsswitch.conf
would run the container's code on the host.
"""

from __future__ import annotations

from minidock.errors import ContainerRuntimeError
from minidock.records import field, record


@record(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@record(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@record(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def parse_passwd(text: str) -> list[PasswdEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 7 or line.startswith("#"):
            continue
        try:
            entries.append(PasswdEntry(parts[0], int(parts[2]), int(parts[3]), parts[5]))
        except ValueError:
            continue
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        try:
            members = tuple(m for m in parts[3].split(",") if m)
            entries.append(GroupEntry(parts[0], int(parts[2]), members))
        except ValueError:
            continue
    return entries


def resolve_user(spec: str, passwd: str | None, group: str | None) -> ExecUser:
    """Docker's rules: a numeric uid needs no passwd entry; a name does. The primary gid
    comes from the entry unless a group is given; supplementary groups are the primary
    one (as Docker sets them since 20.10.18, its fix of CVE-2022-36109) and those of
    /etc/group that list the user as a member (not when a group was given explicitly)."""
    user_part, _, group_part = (spec or "0").partition(":")
    users = parse_passwd(passwd or "")
    groups = parse_group(group or "")
    entry: PasswdEntry | None = None
    if user_part.isdigit():
        uid = int(user_part)
        entry = next((u for u in users if u.uid == uid), None)
    else:
        entry = next((u for u in users if u.name == user_part), None)
        if entry is None:
            raise ContainerRuntimeError(
                f"unable to find user {user_part}: no matching entries in passwd file")
        uid = entry.uid
    gid = entry.gid if entry else 0
    home = entry.home if entry else "/"
    extra: list[int] = []
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((g for g in groups if g.name == group_part), None)
            if g is None:
                raise ContainerRuntimeError(
                    f"unable to find group {group_part}: no matching entries in group file")
            gid = g.gid
    elif entry is not None:
        extra = sorted({g.gid for g in groups if entry.name in g.members} - {gid})
    return ExecUser(uid, gid, [gid, *extra], home)
