from __future__ import annotations

import pytest

from minidock.engine.spec.user import resolve_user
from minidock.errors import ContainerRuntimeError

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
user:x:1000:1000:User:/home/user:/bin/sh
broken line
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
wheel:x:10:user,daemon
audio:x:29:user
user:x:1000:
nogroup:x:65534:
"""


def test_default_is_root():
    u = resolve_user("", PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids, u.home) == (0, 0, [0], "/root")


def test_name_gives_uid_gid_home_and_supplementary_groups():
    u = resolve_user("user", PASSWD, GROUP)
    assert (u.uid, u.gid, u.home) == (1000, 1000, "/home/user")
    assert u.additional_gids == [1000, 10, 29]  # the primary group first, as Docker's


def test_uid_without_entry_is_allowed():
    u = resolve_user("4242", PASSWD, GROUP)
    assert (u.uid, u.gid, u.home) == (4242, 0, "/")


def test_uid_with_entry_uses_it():
    assert resolve_user("1000", PASSWD, GROUP).gid == 1000


def test_explicit_group_by_name_and_id_and_only_it_as_supplementary():
    u = resolve_user("user:audio", PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids) == (1000, 29, [29])
    assert resolve_user("1000:7", PASSWD, GROUP).gid == 7


def test_unknown_user_and_group():
    with pytest.raises(ContainerRuntimeError, match="unable to find user ghost"):
        resolve_user("ghost", PASSWD, GROUP)
    with pytest.raises(ContainerRuntimeError, match="unable to find group ghosts"):
        resolve_user("user:ghosts", PASSWD, GROUP)


def test_missing_files():
    assert resolve_user("0", None, None).uid == 0
    with pytest.raises(ContainerRuntimeError):
        resolve_user("user", None, None)
