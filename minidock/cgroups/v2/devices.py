"""v2 device access control: NOT ENFORCED yet.

cgroup v2 has no devices.allow/devices.deny files. The kernel asks an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE, attached to the cgroup, whether an open or mknod of a device node
may proceed; runc and crun compile the OCI rules into such a program. minidock does not (yet):
rules are validated and otherwise ignored, so on v2 a container can open any device node that
exists in its /dev. The mount namespace and the short /dev the runtime creates are what limit
device access there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from minidock.cgroups.base import device_rule_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any


def apply(cgroup_dir: str, rules: Sequence[Mapping[str, Any]]) -> None:
    for rule in rules:
        device_rule_line(rule)  # validate only; see the module docstring
