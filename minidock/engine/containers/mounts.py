"""A container's mounts: ``-v``, ``--mount``, ``--tmpfs``, ``--volumes-from`` and the image's
VOLUMEs, as Docker's mount points; the OCI mounts they become at start; a volume's first fill
from the image.

    parse_flags(...)        the CLI's part: --mount's key=value list, --tmpfs's map
    mount_points(...)       at create, the daemon's part: Docker's -v grammar and refusals
                            (recorded from docker 20.10 here), named volumes made on first
                            use, an anonymous volume for each VOLUME nothing else mounts;
                            Docker's MountPoints (config.v2.json), keyed by destination
    for_start(...)          at start: the OCI mounts, parents before children; an empty
                            volume is first filled with what the image has at its destination
                            (Docker's copy-up; not with ``nocopy``)

(inspect's "Mounts" is record.py's: the record shows them.)

The runtime resolves every destination inside the rootfs when it mounts (a symlink in the
image cannot point a mount at the host); the copy-up reads the image's directory the same
way (opened in the root with openat2's RESOLVE_IN_ROOT).
"""

from __future__ import annotations

import os

from minidock.errors import InvalidArgument
from minidock.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from minidock.volume import Volumes

PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
_MODES = {"ro", "rw", "z", "Z", "nocopy", "delegated", "cached", "consistent", *PROPAGATIONS}
TMPFS_DEFAULTS = ["nosuid", "nodev", "noexec"]  # what Docker adds to every tmpfs


def _valid_mode(mode: str) -> bool:
    words = mode.split(",")
    return all(w in _MODES for w in words) and sum(w in ("ro", "rw") for w in words) <= 1


def _config_error(kind: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {why}')


def _check_target(kind: str, target: str, raw: str | None = None) -> None:
    why = None
    if not target:
        why = "field Target must not be empty"
    elif not target.startswith("/"):
        why = f"invalid mount path: '{target}' mount path must be absolute"
    if why is not None:
        e = _config_error(kind, why)
        if raw is not None:
            raise InvalidArgument(f"invalid volume specification: '{raw}': {e.message}")
        raise e
    if os.path.normpath(target) == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")


# --- the CLI's part --------------------------------------------------------------------------


def parse_mount_flag(value: str) -> dict[str, Any]:
    """One ``--mount`` (``type=bind,source=/a,target=/b,readonly``) as HostConfig.Mounts
    keeps it (Docker's mount.Mount)."""
    m: dict[str, Any] = {"Type": "volume"}
    for field_ in value.split(","):
        key, eq, val = field_.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            if eq and val.lower() not in ("1", "true", "0", "false"):
                raise InvalidArgument(f"invalid value for {key}: {val}")
            m["ReadOnly"] = not eq or val.lower() in ("1", "true")
            continue
        if key == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = not eq or val.lower() in ("1", "true")
            continue
        if not eq:
            raise InvalidArgument(f"invalid field '{field_}' must be a key=value pair")
        if key == "type":
            if val not in ("bind", "volume", "tmpfs"):
                raise InvalidArgument(f"invalid mount type: {val!r} (bind, volume or tmpfs)")
            m["Type"] = val
        elif key in ("source", "src"):
            m["Source"] = val
        elif key in ("target", "destination", "dst"):
            m["Target"] = val
        elif key == "bind-propagation":
            if val not in PROPAGATIONS:
                raise InvalidArgument(f"invalid bind propagation: {val!r}")
            m.setdefault("BindOptions", {})["Propagation"] = val
        elif key == "volume-label":
            k, _, v = val.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[k] = v
        elif key == "tmpfs-size":
            from minidock.engine.containers.resources import ram_in_bytes

            try:
                m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(val)
            except ValueError as e:
                raise InvalidArgument(f"invalid value for tmpfs-size: {e}") from None
        elif key == "tmpfs-mode":
            try:
                m.setdefault("TmpfsOptions", {})["Mode"] = int(val, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for tmpfs-mode: {val}") from None
        elif key == "consistency":
            m["Consistency"] = val
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{field_}'")
    return m


def parse_tmpfs_flags(values: list[str]) -> dict[str, str]:
    """``--tmpfs /run:rw,size=64m`` -> HostConfig.Tmpfs {"/run": "rw,size=64m"}."""
    out = {}
    for value in values:
        target, _, options = value.partition(":")
        if not target.startswith("/"):
            raise InvalidArgument(f"invalid tmpfs mount path: '{target}' mount path must be "
                                  "absolute")
        out[target] = options
    return out


# --- the daemon's part, at create --------------------------------------------------------


def _point(kind: str, source: str, target: str, rw: bool, *, name: str = "",
           mode: str = "", propagation: str = "", spec: dict[str, Any]) -> dict[str, Any]:
    """A MountPoint as Docker's config.v2.json keeps it."""
    return {"Source": source, "Destination": target, "RW": rw, "Name": name,
            "Driver": "local" if kind == "volume" else "", "Type": kind, "Relabel": mode,
            "Propagation": propagation, "Spec": spec, "SkipMountpointCreation": False}


def _from_bind_flag(raw: str, volumes: Volumes) -> tuple[str, dict[str, Any] | None]:
    """One -v: (its target, its mount point), or (target, None) for a bare "/path" (an
    anonymous volume, which Docker's CLI puts in Config.Volumes)."""
    parts = raw.split(":")
    mode = ""
    if len(parts) == 1:
        _check_target("volume", parts[0], raw)
        return parts[0], None
    if len(parts) == 2:
        if _valid_mode(parts[1]):
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    if mode and not _valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    words = mode.split(",") if mode else []
    rw = "ro" not in words
    kind = "bind" if source.startswith("/") else "volume"
    _check_target(kind, target, raw)
    if kind == "bind":
        propagation = next((w for w in words if w in PROPAGATIONS), "rprivate")
        os.makedirs(source, 0o755, exist_ok=True)  # Docker makes a missing -v source
        spec = {"Type": "bind", "Source": source, "Target": target,
                **({"ReadOnly": True} if not rw else {})}
        return target, _point("bind", source, target, rw, mode=mode,
                               propagation=propagation, spec=spec)
    name = volumes.create(source)
    spec = {"Type": "volume", "Source": source, "Target": target,
            **({"ReadOnly": True} if not rw else {}),
            **({"VolumeOptions": {"NoCopy": True}} if "nocopy" in words else {})}
    return target, _point("volume", volumes.data(name), target, rw, name=name,
                          mode=mode or "z", spec=spec)


def _from_mount_flag(m: dict[str, Any], volumes: Volumes) -> dict[str, Any]:
    kind, source, target = m["Type"], m.get("Source", ""), m.get("Target", "")
    rw = not m.get("ReadOnly")
    if kind == "bind":
        if not source:
            raise _config_error("bind", "field Source must not be empty")
        _check_target("bind", target)
        if not os.path.exists(source):
            raise _config_error("bind", f"bind source path does not exist: {source}")
        propagation = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        return _point("bind", source, target, rw, propagation=propagation, spec=m)
    if kind == "tmpfs":
        if source:
            raise _config_error("tmpfs", "field Source must not be specified")
        _check_target("tmpfs", target)
        return _point("tmpfs", "", target, rw, spec=m)
    _check_target("volume", target)
    labels = (m.get("VolumeOptions") or {}).get("Labels")
    name = volumes.create(source or None, labels)
    return _point("volume", volumes.data(name), target, rw, name=name,
                  mode="z" if source else "", spec=m)


def mount_points(paths: Paths, binds: list[str], mounts: list[dict[str, Any]],
                 volumes_from: list[tuple[dict[str, Any], str]],
                 config_volumes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Docker's MountPoints for a new container, by destination. ``volumes_from``: (the
    other container's mount points, the mode asked: "", "ro" or "rw"); ``config_volumes``:
    Config.Volumes (the image's VOLUMEs and bare -v paths), each an anonymous volume unless
    something else is mounted there. Volumes are created as they are named."""
    from minidock.volume import Volumes

    volumes = Volumes(paths)
    points: dict[str, dict[str, Any]] = {}

    def add(point: dict[str, Any], replace: bool = False) -> None:
        target = os.path.normpath(point["Destination"])
        if target in points and not replace:
            raise InvalidArgument(f"Duplicate mount point: {target}")
        points[target] = {**point, "Destination": target}

    for others, mode in volumes_from:  # first: the container's own flags override them
        for point in others.values():
            if point["Type"] == "tmpfs":
                continue
            add({**point, "RW": point["RW"] if not mode else mode == "rw"}, replace=True)
    own: dict[str, dict[str, Any]] = {}
    for raw in binds:
        target, point = _from_bind_flag(raw, volumes)
        if point is not None:
            if os.path.normpath(target) in own:
                raise InvalidArgument(f"Duplicate mount point: {os.path.normpath(target)}")
            own[os.path.normpath(target)] = point
    for m in mounts:
        point = _from_mount_flag(m, volumes)
        if os.path.normpath(point["Destination"]) in own:
            raise InvalidArgument(f"Duplicate mount point: "
                                  f"{os.path.normpath(point['Destination'])}")
        own[os.path.normpath(point["Destination"])] = point
    for point in own.values():
        add(point, replace=True)
    for target in sorted(config_volumes or {}):
        if os.path.normpath(target) in points:
            continue
        name = volumes.create(None)
        add(_point("volume", volumes.data(name), target, True, name=name,
                   spec={"Type": "volume", "Target": target}))
    return dict(sorted(points.items()))


# --- at start -------------------------------------------------------------------------------


def _copy_up(rootfs: str, target: str, data: str) -> None:
    """Docker's copy-up: an empty volume first gets what the image has at ``target`` (files,
    owners, modes, and the directory's own owner and mode)."""
    if os.listdir(data):
        return
    import subprocess

    from minidock.linux import trace
    from minidock.linux.fs import open_in_root

    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root_fd, target, os.O_PATH | os.O_DIRECTORY)
        except OSError:
            return  # nothing (or no directory) there in the image
    finally:
        os.close(root_fd)
    try:
        trace.note(f"copy-up: the image's {target} into the empty volume {data}")
        r = subprocess.run(["cp", "-a", "--", f"/proc/self/fd/{fd}/.", data + "/"],
                           pass_fds=(fd,), capture_output=True, text=True)
    finally:
        os.close(fd)
    if r.returncode != 0:
        raise InvalidArgument(f"copy the image's {target} into volume {data}: "
                              f"{r.stderr.strip()}")


def for_start(points: dict[str, dict[str, Any]], tmpfs: dict[str, str] | None,
              rootfs: str, paths: Paths | None = None) -> list[dict[str, Any]]:
    """The OCI mounts of a container's mount points and --tmpfs, parents before children;
    a volume with the local driver's options gets its device mounted first."""
    volumes = None
    if paths is not None and any(p["Type"] == "volume" for p in points.values()):
        from minidock.volume import Volumes

        volumes = Volumes(paths)
    out = []
    for target, point in points.items():
        kind = point["Type"]
        rw = bool(point["RW"])
        if kind == "tmpfs":
            opts = dict(point.get("Spec", {}).get("TmpfsOptions") or {})
            extra = ([f"size={opts['SizeBytes']}"] if opts.get("SizeBytes") else []) + \
                ([f"mode={opts['Mode']:o}"] if opts.get("Mode") is not None else [])
            out.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                        "options": [*TMPFS_DEFAULTS, "rw" if rw else "ro", *extra]})
            continue
        if kind == "volume":
            if not os.path.isdir(point["Source"]):
                raise InvalidArgument(f"volume {point['Name']}: {point['Source']} is gone")
            if volumes is not None and point.get("Name"):
                volumes.mount(point["Name"])  # (type/device/o volumes: mounted at first use)
            nocopy = bool((point.get("Spec", {}).get("VolumeOptions") or {}).get("NoCopy")) \
                or "nocopy" in str(point.get("Relabel", "")).split(",")
            if not nocopy:
                _copy_up(rootfs, target, point["Source"])
        propagation = point.get("Propagation") or "rprivate"
        out.append({"destination": target, "type": "bind", "source": point["Source"],
                    "options": ["rbind", propagation, *([] if rw else ["ro"])]})
    for target, options in sorted((tmpfs or {}).items()):
        words = [w for w in options.split(",") if w]
        out.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                    "options": [*TMPFS_DEFAULTS, *words]})
    return sorted(out, key=lambda m: m["destination"].rstrip("/").count("/"))


def root_propagation(mounts: list[dict[str, Any]]) -> str:
    """linux.rootfsPropagation for these OCI mounts, and Docker's checks of their sources
    (daemon/oci_linux.go): a [r]shared bind needs a shared source mount and makes the root
    "shared"; a [r]slave one needs a shared or slave source and makes it "rslave" (unless
    already shared). "" when no bind asks for either (the runtime's default)."""
    wanted = ""
    for m in mounts:
        if m.get("type") != "bind":
            continue
        opts = set(m.get("options") or ())
        if opts & {"shared", "rshared"}:
            _source_propagation(str(m["source"]), ("shared:",), "a shared mount")
            wanted = "shared"
        elif opts & {"slave", "rslave"}:
            _source_propagation(str(m["source"]), ("shared:", "master:"),
                                "a shared or slave mount")
            wanted = wanted or "rslave"
    return wanted


def _source_propagation(source: str, tags: tuple[str, ...], what: str) -> None:
    from minidock.linux import mountinfo

    best = mountinfo.mount_of(os.path.realpath(source))
    if best is None or not any(o.startswith(tags) for o in best.optional):
        where = best.mount_point if best else "?"
        raise InvalidArgument(f"path {source} is mounted on {where} but it is not {what}")


def release_volumes(paths: Paths, cid: str) -> None:
    """A run ended: the devices of type/device/o volumes no other running container uses are
    unmounted (Docker's local driver counts its users the same way)."""
    from minidock.volume import Volumes

    volumes = Volumes(paths)
    mounted = volumes.mounted()
    if not mounted:
        return
    from minidock.engine.containers import store

    in_use = {p.get("Name") for c in store.readable_records(paths)
              if c.id != cid and c.state.running for p in c.mount_points.values()}
    for name in mounted:
        if name not in in_use:
            volumes.unmount(name)


def volume_names(points: dict[str, dict[str, Any]]) -> list[str]:
    return [p["Name"] for p in points.values() if p["Type"] == "volume" and p.get("Name")]
