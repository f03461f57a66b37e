"""What a container is given: its OCI config.json and the /etc files minidock writes for it.

    generate.py    the runtime-spec document: Docker's defaults (mounts, devices, masked
                   paths, capabilities) edited by one ``with_*`` option per run flag
    seccomp.py     Docker's seccomp profile format (seccomp_default.json is moby's default
                   profile) resolved into the spec's linux.seccomp for this machine
    user.py        ``-u user[:group]`` read from the image's /etc/passwd and /etc/group
    hostfiles.py   the hostname, hosts and resolv.conf bind-mounted into the container

generate.py builds on user.py (the process's uid, gid and HOME) and seccomp.py (the profile,
resolved against the capabilities already in the spec); hostfiles.py stands alone. Nothing
here knows a container record: the caller (minidock.engine.containers) reads the image's
files, passes their text in and writes what comes out. ``from minidock.engine import spec`` gives
the names of generate.py, as callers have always used them (``spec.base_spec``, ...).
"""

from __future__ import annotations

from minidock.engine.spec.generate import (
    DEFAULT_DEVICES,
    DEFAULT_PATH,
    DEVICE_RULES,
    MASKED_PATHS,
    READONLY_PATHS,
    ProcessOptions,
    SpecOption,
    base_spec,
    build,
    command_line,
    merge_env,
    with_annotations,
    with_bind,
    with_cgroup_namespace,
    with_cgroups_path,
    with_console_size,
    with_host_network,
    with_init,
    with_mounts,
    with_network_namespace,
    with_no_new_privileges,
    with_readonly_rootfs,
    with_resources,
    with_root_propagation,
    with_seccomp,
    with_security_opts,
)
from minidock.engine.spec.user import ExecUser, resolve_user

__all__ = [
    "DEFAULT_DEVICES",
    "DEFAULT_PATH",
    "DEVICE_RULES",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "ExecUser",
    "ProcessOptions",
    "SpecOption",
    "base_spec",
    "build",
    "command_line",
    "merge_env",
    "resolve_user",
    "with_annotations",
    "with_bind",
    "with_cgroup_namespace",
    "with_cgroups_path",
    "with_console_size",
    "with_host_network",
    "with_init",
    "with_mounts",
    "with_network_namespace",
    "with_no_new_privileges",
    "with_readonly_rootfs",
    "with_resources",
    "with_root_propagation",
    "with_seccomp",
    "with_security_opts",
]
