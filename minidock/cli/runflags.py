"""``run`` and ``create`` flags without click: the table of ``minidock run``'s flags, a small
parser for the plain forms of ``run`` (the console script's fast path), and what both paths do
with the flags (:func:`create_options`, :func:`run_command`).

The parser knows exactly the flags ``minidock run`` declares with click (the same names, the
same rules: short flags combine, ``-eX``/``--env=X`` forms, options end at the image); anything
it is not certain of (``--help``, an unknown flag, a missing value) it leaves to the click
command, which gives the full behaviour and error messages. tests/unit/test_entry.py checks both
parsers give the same values on a corpus of command lines, so the shortcut cannot drift.
"""

from __future__ import annotations

import os
import sys

from minidock.errors import ClientRefused, InvalidArgument
from minidock.paths import Paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

def flag_table(rows: tuple[tuple[tuple[str, ...], str, bool, bool], ...]
               ) -> dict[str, tuple[str, bool, bool]]:
    """(names, parameter, takes a value, multiple) rows -> name -> (parameter, value, multi)."""
    return {name: (param, value, multi) for names, param, value, multi in rows
            for name in names}


# the resource flags of run, create and update: (names, parameter, takes a value, multiple,
# help); cli/containers.py makes click options of the same rows
RESOURCE_FLAGS: tuple[tuple[tuple[str, ...], str, bool, bool, str], ...] = (
    (("-m", "--memory"), "memory", True, False, "Memory limit (e.g. 512m, 1g)."),
    (("--memory-swap",), "memory_swap", True, False,
     "Swap limit equal to memory plus swap: -1 to enable unlimited swap."),
    (("--memory-reservation",), "memory_reservation", True, False, "Memory soft limit."),
    (("--memory-swappiness",), "memory_swappiness", True, False,
     "Tune container memory swappiness (0 to 100) (cgroup v1)."),
    (("--oom-kill-disable",), "oom_kill_disable", False, False,
     "Disable OOM Killer (cgroup v1)."),
    (("--cpus",), "cpus", True, False, "Number of CPUs (e.g. 1.5)."),
    (("-c", "--cpu-shares"), "cpu_shares", True, False, "CPU shares (relative weight)."),
    (("--cpu-period",), "cpu_period", True, False,
     "Limit CPU CFS (Completely Fair Scheduler) period."),
    (("--cpu-quota",), "cpu_quota", True, False,
     "Limit CPU CFS (Completely Fair Scheduler) quota."),
    (("--cpuset-cpus",), "cpuset_cpus", True, False,
     "CPUs in which to allow execution (0-3, 0,1)."),
    (("--cpuset-mems",), "cpuset_mems", True, False,
     "MEMs in which to allow execution (0-3, 0,1)."),
    (("--pids-limit",), "pids_limit", True, False,
     "Tune container pids limit (set -1 for unlimited)."),
    (("--blkio-weight",), "blkio_weight", True, False,
     "Block IO (relative weight), between 10 and 1000, or 0 to disable."),
    (("--device-read-bps",), "device_read_bps", True, True,
     "Limit read rate (bytes per second) from a device (e.g. /dev/vda:10mb)."),
    (("--device-write-bps",), "device_write_bps", True, True,
     "Limit write rate (bytes per second) to a device (e.g. /dev/vda:10mb)."),
)
RESOURCE_PARAMS = tuple(row[1] for row in RESOURCE_FLAGS)

# what `minidock run` declares with click
_RUN_FLAGS = flag_table((
    *(row[:4] for row in RESOURCE_FLAGS),
    (("-i", "--interactive"), "interactive", False, False),
    (("-t", "--tty"), "tty", False, False),
    (("--name",), "name", True, False),
    (("-e", "--env"), "env", True, True),
    (("--env-file",), "env_file", True, True),
    (("-w", "--workdir"), "workdir", True, False),
    (("-u", "--user"), "user", True, False),
    (("--entrypoint",), "entrypoint", True, False),
    (("-h", "--hostname"), "hostname", True, False),
    (("--network", "--net"), "network", True, False),
    (("--ip",), "ip", True, False),
    (("--network-alias",), "network_alias", True, True),
    (("--add-host",), "add_host", True, True),
    (("--dns",), "dns", True, True),
    (("--dns-search",), "dns_search", True, True),
    (("--dns-option",), "dns_option", True, True),
    (("--rm",), "rm", False, False),
    (("-p", "--publish"), "publish", True, True),
    (("-P", "--publish-all"), "publish_all", False, False),
    (("--expose",), "expose", True, True),
    (("--security-opt",), "security_opt", True, True),
    (("-v", "--volume"), "volume", True, True),
    (("--mount",), "mount", True, True),
    (("--tmpfs",), "tmpfs", True, True),
    (("--read-only",), "read_only", False, False),
    (("--volumes-from",), "volumes_from", True, True),
    (("--cap-add",), "cap_add", True, True),
    (("--cap-drop",), "cap_drop", True, True),
    (("--privileged",), "privileged", False, False),
    (("--device",), "device", True, True),
    (("--pid",), "pid", True, False),
    (("--ipc",), "ipc", True, False),
    (("--uts",), "uts", True, False),
    (("--cgroupns",), "cgroupns", True, False),
    (("--userns",), "userns", True, False),
    (("--shm-size",), "shm_size", True, False),
    (("--ulimit",), "ulimit", True, True),
    (("--sysctl",), "sysctl", True, True),
    (("--group-add",), "group_add", True, True),
    (("--init",), "init", False, False),
    (("--device-cgroup-rule",), "device_cgroup_rule", True, True),
    (("-l", "--label"), "label", True, True),
    (("--runtime",), "runtime", True, False),
    (("-d", "--detach"), "detach", False, False),
    (("--trace",), "trace_", False, False),
    (("--timings",), "timings", False, False),
))

RUN_DEFAULTS: dict[str, Any] = {
    "interactive": False, "tty": False, "name": None, "env": (), "env_file": (),
    "workdir": None, "user": None, "entrypoint": None, "hostname": None, "network": "default",
    "rm": False, "publish": (), "publish_all": False, "expose": (), "security_opt": (),
    "ip": None, "network_alias": (), "add_host": (), "dns": (), "dns_search": (),
    "dns_option": (), "cap_add": (), "cap_drop": (), "privileged": False, "volume": (),
    "mount": (), "tmpfs": (), "read_only": False, "volumes_from": (), "device": (),
    "device_cgroup_rule": (), "pid": None, "ipc": None, "uts": None, "cgroupns": None,
    "userns": None,
    "shm_size": None, "ulimit": (), "sysctl": (), "group_add": (), "init": False,
    "label": (), "runtime": None, "detach": False, "trace_": False, "timings": False,
    **{row[1]: (() if row[3] else False if not row[2] else None) for row in RESOURCE_FLAGS},
}
_GLOBAL_VALUE = {"--root": "root", "--run-root": "run_root"}


def split_globals(argv: list[str], command: str
                  ) -> tuple[dict[str, Any], list[str]] | None:
    """``[GLOBAL...] COMMAND ARGS...`` -> (the global options, ARGS), or None when the line
    holds a global option this parser does not know or is not that command."""
    glob: dict[str, Any] = {"root": None, "run_root": None, "debug": False}
    i = 0
    while i < len(argv) and argv[i] != command:
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg == "--debug":
            glob["debug"] = True
        elif name in _GLOBAL_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                value = argv[i]
            glob[_GLOBAL_VALUE[name]] = value
        else:
            return None
        i += 1
    if i >= len(argv):
        return None
    return glob, argv[i + 1:]


def parse_run(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``[GLOBAL...] run [OPTIONS] IMAGE [COMMAND...]`` -> (globals, run parameters), or
    None when this is not such a command line or anything in it is not certain."""
    split = split_globals(argv, "run")
    if split is None:
        return None
    glob, args = split
    params: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v
                              for k, v in RUN_DEFAULTS.items()}
    j = 0
    while j < len(args):
        arg = args[j]
        if arg == "--":
            j += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        # one word -> (flag, the value attached to it or None): --name=x, --rm, -it, -eA=1
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            words = [(name, value if eq else None)]
        else:
            words = []
            for k in range(1, len(arg)):
                flag = "-" + arg[k]
                spec = _RUN_FLAGS.get(flag)
                if spec is not None and spec[1]:  # takes a value: the rest of the word is it
                    words.append((flag, arg[k + 1:] or None))
                    break
                words.append((flag, None))
        for flag, attached in words:
            spec = _RUN_FLAGS.get(flag)
            if spec is None:
                return None
            param, takes, multi = spec
            if not takes:
                if attached is not None:
                    return None  # --rm=x: let click say what is wrong
                params[param] = True
                continue
            if attached is None:
                j += 1
                if j >= len(args):
                    return None
                attached = args[j]
            _set(params, param, attached, multi)
        j += 1
    if j >= len(args):
        return None  # no IMAGE: click's usage error
    params["image"] = args[j]
    params["command"] = list(args[j + 1:])
    for k2, v in list(params.items()):
        if isinstance(v, list):
            params[k2] = tuple(v)
    return glob, params


def _set(params: dict[str, Any], param: str, value: str, multi: bool) -> None:
    if multi:
        params[param].append(value)
    else:
        params[param] = value


def env_from_flags(env: tuple[str, ...], env_files: tuple[str, ...]) -> list[str]:
    """-e KEY=VALUE, -e KEY (value from our environment, dropped if unset) and
    --env-file lines in the same two forms; # comments and blank lines ignored."""
    items: list[str] = []
    for path in env_files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise InvalidArgument(f"open env file {path}: {(e.strerror or '').lower()}") from None
        items += [ln.lstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    items += list(env)
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"invalid environment variable: {item}")
        if sep:
            out.append(item)
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def create_options(image: str, command: tuple[str, ...], interactive: bool, tty: bool,
                   name: str | None, env: tuple[str, ...], env_file: tuple[str, ...],
                   workdir: str | None, user: str | None, entrypoint: str | None,
                   hostname: str | None, network: str, rm: bool,
                   security_opt: tuple[str, ...], label: tuple[str, ...] = (),
                   runtime: str | None = None, publish: tuple[str, ...] = (),
                   publish_all: bool = False, expose: tuple[str, ...] = (),
                   ip: str | None = None, network_alias: tuple[str, ...] = (),
                   add_host: tuple[str, ...] = (), dns: tuple[str, ...] = (),
                   dns_search: tuple[str, ...] = (), dns_option: tuple[str, ...] = (),
                   cap_add: tuple[str, ...] = (), cap_drop: tuple[str, ...] = (),
                   privileged: bool = False, volume: tuple[str, ...] = (),
                   mount: tuple[str, ...] = (), tmpfs: tuple[str, ...] = (),
                   read_only: bool = False, volumes_from: tuple[str, ...] = (),
                   device: tuple[str, ...] = (), device_cgroup_rule: tuple[str, ...] = (),
                   pid: str | None = None, ipc: str | None = None, uts: str | None = None,
                   cgroupns: str | None = None, userns: str | None = None,
                   shm_size: str | None = None,
                   ulimit: tuple[str, ...] = (), sysctl: tuple[str, ...] = (),
                   group_add: tuple[str, ...] = (), init: bool = False,
                   **limits: Any) -> Any:
    """The engine's CreateOptions from run/create flags (``limits``: RESOURCE_FLAGS')."""
    from minidock.engine import containers as engine
    from minidock.engine.spec import ProcessOptions, seccomp

    # as Docker's CLI does: a profile file is read now and stored inline in the container
    opts = [seccomp.inline_profile_option(o) for o in security_opt]
    seccomp.parse_security_opts(opts)  # reject a bad option at create, not at every start
    return engine.CreateOptions(
        image=image,
        process=ProcessOptions(
            cmd=list(command) or None,
            entrypoint=None if entrypoint is None else ([entrypoint] if entrypoint else []),
            env=env_from_flags(env, env_file), workdir=workdir, user=user, tty=tty,
            stdin_open=interactive, security_opt=opts),
        name=name, hostname=hostname, network=network, auto_remove=rm,
        labels=dict(item.partition("=")[::2] for item in label), runtime=runtime,
        publish=list(publish), publish_all=publish_all, expose=list(expose), ip=ip,
        aliases=list(network_alias), add_hosts=list(add_host), dns=list(dns),
        dns_search=list(dns_search), dns_options=list(dns_option), cap_add=list(cap_add),
        cap_drop=list(cap_drop), privileged=privileged, binds=list(volume),
        mounts=_parse_mounts(mount), tmpfs=_parse_tmpfs(tmpfs), read_only=read_only,
        volumes_from=list(volumes_from), devices=list(device),
        device_cgroup_rules=list(device_cgroup_rule), resources=_parse_limits(limits),
        pid=pid or "", ipc=ipc or "", uts=uts or "", cgroupns=cgroupns or "",
        userns=userns or "",
        shm_size=_shm_size(shm_size), group_add=list(group_add), init=init,
        **_process_limits(ulimit, sysctl))


def _shm_size(value: str | None) -> int | None:
    if value is None:
        return None
    from minidock.engine.containers import resources

    try:
        size = resources.ram_in_bytes(value)
    except ValueError as e:
        raise InvalidArgument(f'invalid argument "{value}" for "--shm-size" flag: {e}') \
            from None
    return size or None


def _process_limits(ulimit: tuple[str, ...], sysctl: tuple[str, ...]) -> dict[str, Any]:
    if not ulimit and not sysctl:
        return {}
    from minidock.engine.spec import sharing

    return {"ulimits": [sharing.parse_ulimit(u) for u in ulimit],
            "sysctls": dict(sharing.parse_sysctl(s) for s in sysctl)}


def _parse_mounts(values: tuple[str, ...]) -> list[dict[str, Any]]:
    if not values:
        return []
    from minidock.engine.containers import mounts

    return [mounts.parse_mount_flag(v) for v in values]


def _parse_tmpfs(values: tuple[str, ...]) -> dict[str, str]:
    if not values:
        return {}
    from minidock.engine.containers import mounts

    return mounts.parse_tmpfs_flags(list(values))


def _parse_limits(limits: dict[str, Any]) -> dict[str, Any]:
    if not any(limits.values()):
        return {}
    from minidock.engine.containers import resources

    return resources.parse_flags(**limits)


def check_tty(attach_stdin: bool, tty: bool) -> None:
    """Docker's CLI rule for `run -it` and `exec -it`: a terminal inside needs one outside;
    piped or redirected input would hang the session (its end never reaches the pty)."""
    if attach_stdin and tty and not os.isatty(0):
        raise ClientRefused("the input device is not a TTY")


def run_command(paths: Paths, image: str, command: tuple[str, ...], trace_: bool,
                detach: bool, timings: bool = False, **flags: Any) -> int:
    """`run`: the container's exit code, or 0 once a detached one runs (its id printed)."""
    if trace_:
        from minidock.linux import trace

        trace.enable(os.dup(2), "minidock")
    if timings:
        from minidock.linux import timing

        timing.enable()
    check_tty(flags["interactive"] and not detach, flags["tty"])
    opts = create_options(image, command, **flags)
    if detach:
        from minidock.engine.containers import monitor

        c = monitor.run_detached(paths, opts)
        print(c.id, flush=True)
        if timings:
            from minidock.engine import containers as engine

            print_timings(engine.get(paths, c.id).state.timings)
        return 0
    from minidock.engine import containers as engine

    if not timings:
        return engine.run(paths, opts)
    try:
        return engine.run(paths, opts)
    finally:
        from minidock.linux import timing

        print_timings(dict(timing.entries()))


def print_timings(entries: dict[str, float]) -> None:
    """--timings: each phase of the start and its wall-clock time, on stderr (the phases
    a phase ran, indented under it; the total is the outer ones')."""
    from minidock.linux.timing import SEP

    rows = [("  " * name.count(SEP) + name.rsplit(SEP, 1)[-1], ms)
            for name, ms in entries.items()]
    total = sum(ms for name, ms in entries.items() if SEP not in name)
    width = max([len(label) for label, _ in rows] + [5])
    lines = ["timings (ms):"] + [f"  {label:<{width}}  {ms:8.1f}" for label, ms in rows]
    lines.append(f"  {'total':<{width}}  {total:8.1f}")
    print("\n".join(lines), file=sys.stderr, flush=True)
