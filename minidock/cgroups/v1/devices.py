"""v1 devices controller: an allow/deny list of device numbers the cgroup may open or mknod."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from minidock.cgroups import _fs
from minidock.cgroups.base import device_rule_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


def apply(cgroup_dir: str, rules: Sequence[Mapping[str, Any]]) -> None:
    """Write each rule, in order, to devices.allow or devices.deny.

    ``a`` written to devices.deny sets the default to deny and clears the exceptions, so a
    rule list that starts with "deny all" replaces whatever was there before.
    """
    for rule in rules:
        name, line = device_rule_line(rule)
        verb = "allow" if name == "devices.allow" else "deny"
        why = "deny every device by default" if line == "a" and verb == "deny" else f"{verb} {line}"
        _fs.write(os.path.join(cgroup_dir, name), line, why=why)


def current(cgroup_dir: str) -> list[str]:
    """devices.list: what the cgroup may access now (``a *:* rwm`` when everything)."""
    return _fs.read(os.path.join(cgroup_dir, "devices.list")).splitlines()
