"""``system check [--repair]``: what a crash, a kill -9 or a reboot left inconsistent.

A daemon can tidy up when it starts; minidock has no daemon, so every command makes the
state it touches true on the way (``reconcile``), and this command looks at everything at
once. A container is *live* while a process holds its monitor lock (its foreground CLI or
its monitor: the kernel drops the lock when that process dies) or its record lock (a
command is changing it). What a live container holds is never touched. The rest is
compared with what should exist:

    what                                 should exist only while          repair
    containers/<id> without its record   create runs (containers.lock)    remove it and its layers
    a record that says running/paused    its monitor lives                record the exit (255)
    a record in removing/dead            rm runs                          remove it
    overlay2/<id>/merged mounted         its container is live            unmount
    containers/<id>/mounts/shm mounted   its container is live            unmount
    cgroup /minidock/<id>                its container is live            kill what is left, rmdir
    <run-root>/runtime*/<id>             its container is live            kill the init, delete
      (runtime/ is minidock's; runtime-<name>/ each other runtime's, asked through it)
    <run-root>/bundles/<id>              its container is live            remove
    <run-root>/attach/<id>.sock          its container is live            remove
    locks/<id>.lock, .monitor            the container exists            remove
    layer debris, unused layers          a pull/load/commit runs          remove (ImageStore.stale)
    a bridge lease, /run/netns/md-<id>,  its container is live            give back, unmount,
      a veth md<10 hex>                                                   delete the link
    nft table ip minidock as it should   containers use the bridge        apply it again

A cgroup under /minidock whose id this root does not know may belong to another ``--root``:
it is reported, and removed only when empty (and not brand new). The same goes for the
bridge's leases, netns entries and veths: the host's, reported, never repaired.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial

from minidock import cgroups
from minidock.engine import containers as ct
from minidock.engine.containers.record import Status
from minidock.engine.runtime import BUILTIN, OCIRuntime, open_runtime
from minidock.errors import ContainerNotFound, CorruptRecord, MinidockError
from minidock.linux import flock, mountinfo, trace
from minidock.paths import Paths
from minidock.records import record

#: An unknown empty cgroup younger than this may be another root's container being created.
FRESH_CGROUP_SECONDS = 30.0


@record
class Finding:
    kind: str  # CONTAINER, MOUNT, CGROUP, STATE, BUNDLE, SOCKET, LOCK, LAYER, LEASE, NETNS,
    #            LINK, FIREWALL
    path: str
    problem: str
    fix: Callable[[], object] | None = None  # None: reported, not repaired
    container: str = ""  # the container the fix must find idle


# --- who is live --------------------------------------------------------------------


def _watched(paths: Paths, cid: str) -> bool:
    return flock.is_held(ct.lock_path(paths, f"{cid}.monitor"))


def _busy(paths: Paths, cid: str) -> bool:
    return flock.is_held(ct.lock_path(paths, f"{cid}.lock"))


def _live(paths: Paths, cid: str) -> bool:
    return _watched(paths, cid) or _busy(paths, cid)


@contextlib.contextmanager
def _idle(paths: Paths, cid: str) -> Iterator[bool]:
    """Hold the container's record lock if nobody else does and nothing watches it."""
    path = ct.lock_path(paths, f"{cid}.lock")
    try:
        held = flock.HeldLock(path, blocking=False)
    except BlockingIOError:
        yield False
        return
    try:
        yield not _watched(paths, cid)
    finally:
        held.release()
        if not os.path.isdir(os.path.join(paths.containers, cid)):
            _unlink(path)  # taking the lock made the file: leave none for a gone container


# --- looking ------------------------------------------------------------------------


def _records(paths: Paths) -> dict[str, ct.Container | None]:
    """Every container directory of this root: its record, or None when it has none (or
    one that cannot be read: see _unreadable)."""
    out: dict[str, ct.Container | None] = {}
    for cid in ct.all_ids(paths):
        try:
            out[cid] = ct.load_record(paths, cid)
        except (ContainerNotFound, CorruptRecord, OSError):
            out[cid] = None
    return out


def _unreadable(paths: Paths, cid: str) -> str | None:
    """Why a container's record cannot be read, when it exists but is corrupt."""
    try:
        ct.load_record(paths, cid)
    except CorruptRecord as e:
        return e.message
    except (ContainerNotFound, OSError):
        return None
    return None


def _check_records(paths: Paths, records: dict[str, ct.Container | None],
                   creating: bool) -> list[Finding]:
    found = []
    for cid, c in records.items():
        d = os.path.join(paths.containers, cid)
        if c is None:
            if creating or _live(paths, cid):
                continue  # a create in progress has no record yet
            why = _unreadable(paths, cid)
            if why is not None:  # not repaired: what it held is for the user to look at
                found.append(Finding("CONTAINER", d, f"unreadable record: {why}"))
                continue
            found.append(Finding("CONTAINER", d, "container directory without a record "
                                 "(create was killed half-way)",
                                 partial(_remove_unrecorded, paths, cid), cid))
        elif c.state.running and not _watched(paths, cid):
            found.append(Finding("CONTAINER", d, f"{c.short_id} ({c.name}) is recorded as "
                                 f"{c.state.status.value}, but no monitor watches it "
                                 "(killed, or the host rebooted)",
                                 partial(ct.reconcile, paths, cid)))
        elif c.state.status in (Status.REMOVING, Status.DEAD) and not _live(paths, cid):
            found.append(Finding("CONTAINER", d, f"{c.short_id} ({c.name}) is "
                                 f"{c.state.status.value}: a removal did not finish",
                                 partial(_remove_dead, paths, cid)))
    return found


def _remove_unrecorded(paths: Paths, cid: str) -> None:
    with flock.locked(ct.lock_path(paths, "containers.lock")):
        if os.path.exists(os.path.join(paths.containers, cid, "config.v2.json")):
            return  # it got its record meanwhile: not ours to remove
        store = ct.image_store(paths)
        if _has_rw_layer(paths, cid):
            store.unmount_rw_layer(cid)
            store.remove_rw_layer(cid)
        shutil.rmtree(os.path.join(paths.containers, cid), ignore_errors=True)


def _remove_dead(paths: Paths, cid: str) -> None:
    ct.remove(paths, cid, force=True)


def _has_rw_layer(paths: Paths, cid: str) -> bool:
    try:
        ct.image_store(paths).get_rw_layer(cid)
    except MinidockError:
        return False
    return True


def _layer_owners(paths: Paths) -> dict[str, str]:
    """overlay2 id (mount-id and -init) -> container id."""
    store = ct.image_store(paths)
    owners = {}
    for cid in store.list_rw_layers():
        with contextlib.suppress(MinidockError):
            rw = store.get_rw_layer(cid)
            owners[rw.mount_id] = owners[rw.init_id] = cid
    return owners


def mount_points(under: str) -> list[str]:
    """Mount points at or below ``under`` in this mount namespace (/proc/self/mountinfo)."""
    prefix = under.rstrip("/") + "/"
    return [m.mount_point for m in mountinfo.read() if m.mount_point.startswith(prefix)]


def _check_mounts(paths: Paths, creating: bool) -> list[Finding]:
    owners = _layer_owners(paths)
    store = ct.image_store(paths)
    found = []
    home = paths.overlay2.rstrip("/") + "/"
    containers = paths.containers.rstrip("/") + "/"
    for point in mount_points(paths.root):
        if point.startswith(containers) and point.endswith("/mounts/shm"):
            cid = point[len(containers):].split("/", 1)[0]  # an --ipc shareable /dev/shm
            if not _live(paths, cid):
                found.append(Finding("MOUNT", point, f"mounted, but container {cid[:12]} is "
                                     "not running",
                                     partial(ct.unmount_shm, paths, cid), cid))
            continue
        rel = point[len(home):] if point.startswith(home) else ""
        layer_id, _, rest = rel.partition("/")
        cid = owners.get(layer_id, "")
        if cid and _live(paths, cid):
            continue
        if layer_id.endswith("-init") and creating:
            continue  # create fills the -init layer through a mount
        if rest == "merged":
            why = (f"mounted, but container {cid[:12]} is not running" if cid
                   else "mounted, but no container owns this layer")
            found.append(Finding("MOUNT", point, why,
                                 partial(store.driver.put, layer_id), cid))
        else:
            found.append(Finding("MOUNT", point, "a mount minidock does not make",
                                 partial(_detach, point)))
    return found


def _detach(point: str) -> None:
    from minidock import linux

    linux.umount2(point, linux.MNT_DETACH, why="system check --repair: stale mount")


def _cgroup_dirs() -> dict[str, list[str]]:
    """Container cgroups under /minidock in every hierarchy: name -> directories."""
    try:
        layout = cgroups.read_layout()
    except MinidockError:
        return {}
    roots = [m.mount_point for m in layout.hierarchies]
    if layout.unified:
        roots.append(layout.unified)
    out: dict[str, list[str]] = {}
    for root in roots:
        parent = os.path.join(root, cgroups.PARENT.lstrip("/"))
        with contextlib.suppress(OSError):
            for name in os.listdir(parent):
                d = os.path.join(parent, name)
                if os.path.isdir(d):
                    out.setdefault(name, []).append(d)
    return out


def _procs(dirs: list[str]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def _check_cgroups(paths: Paths, records: dict[str, ct.Container | None]) -> list[Finding]:
    found = []
    now = time.time()
    with_state = {cid for _, cid in _runtime_ids(paths, records)}
    for name, dirs in sorted(_cgroup_dirs().items()):
        if name in records and _live(paths, name):
            continue
        if name in with_state:
            continue  # the runtime state finding below covers it (delete removes both)
        pids = _procs(dirs)
        destroy = partial(_destroy_cgroup, name)
        if name in records:
            what = f"container {name[:12]} is not running"
            if pids:
                what += f", yet {len(pids)} of its processes are still there"
            found.append(Finding("CGROUP", dirs[0], what, destroy, name))
        elif pids:
            found.append(Finding("CGROUP", dirs[0], f"no container of this root; "
                                 f"{len(pids)} processes in it (another --root?)"))
        elif all(now - os.stat(d).st_mtime > FRESH_CGROUP_SECONDS for d in dirs):
            found.append(Finding("CGROUP", dirs[0], "empty, and no container of this root",
                                 destroy))
    return found


def _destroy_cgroup(name: str) -> None:
    """Kill what is left in /minidock/<name>, then remove it in every hierarchy."""
    cgroups.new_manager(f"{cgroups.PARENT}/{name}").destroy()


def _check_run_root(paths: Paths, records: dict[str, ct.Container | None]) -> list[Finding]:
    found = []
    for rt, cid in _runtime_ids(paths, records):
        if cid in records and _live(paths, cid):
            continue
        d = os.path.join(rt.root, cid)
        try:
            st = rt.state(cid)
            status = st.status if st is not None else "gone"
        except (MinidockError, OSError, ValueError, TypeError):
            status, st = "unreadable", None
        if st is not None and st.alive:
            why = f"the init (host pid {st.pid}) runs, but nothing watches it"
        else:
            why = f"runtime state of a container that is not running ({status})"
        if rt.name != BUILTIN:
            why += f"; runtime {rt.name}"
        found.append(Finding("STATE", d, why, partial(_runtime_delete, rt, cid), cid))
    for cid in _listdir(paths.bundles):
        if cid in records and _live(paths, cid):
            continue
        found.append(Finding("BUNDLE", os.path.join(paths.bundles, cid),
                             "OCI bundle of a container that is not running",
                             partial(shutil.rmtree, os.path.join(paths.bundles, cid), True),
                             cid))
    attach = os.path.join(paths.run_root, "attach")
    for name in _listdir(attach):
        cid = name.removesuffix(".sock")
        if cid in records and _live(paths, cid):
            continue
        found.append(Finding("SOCKET", os.path.join(attach, name),
                             "attach socket without a monitor",
                             partial(_unlink, os.path.join(attach, name)), cid))
    for name in _listdir(paths.builds):
        path = os.path.join(paths.builds, name)
        if name.endswith(".lock") or flock.is_held(path + ".lock"):
            continue
        found.append(Finding("BUILD", path, "the files of a build that was killed",
                             partial(_remove_build_dir, path)))
    for name in _listdir(paths.locks):
        cid, _, kind = name.partition(".")
        if not ct.ID_RE.match(cid) or kind not in ("lock", "monitor") or cid in records:
            continue
        path = os.path.join(paths.locks, name)
        if flock.is_held(path):
            continue
        found.append(Finding("LOCK", path, "lock file of a container that does not exist",
                             partial(_unlink, path)))
    return found


def _remove_build_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _unlink(path + ".lock")


def _runtimes(paths: Paths, records: dict[str, ct.Container | None]) -> list[OCIRuntime]:
    """minidock's runtime, the ones records name and every one with a state root here
    (a runtime given by path and named by no record any more cannot be asked: skipped)."""
    names = {BUILTIN}
    names.update(str(c.host_config.get("Runtime") or BUILTIN) for c in records.values() if c)
    for entry in _listdir(paths.run_root):
        if entry.startswith("runtime-") and not entry.startswith("runtime-path-"):
            names.add(entry.removeprefix("runtime-"))
    found = []
    for name in sorted(names):
        try:
            found.append(open_runtime(paths, name))
        except MinidockError:
            continue  # uninstalled, or no longer configured
    return found


def _runtime_ids(paths: Paths, records: dict[str, ct.Container | None]
                 ) -> list[tuple[OCIRuntime, str]]:
    out: list[tuple[OCIRuntime, str]] = []
    for rt in _runtimes(paths, records):
        try:
            out.extend((rt, cid) for cid in rt.list())
        except MinidockError:
            continue
    return out


def _runtime_delete(rt: OCIRuntime, cid: str) -> None:
    with contextlib.suppress(ContainerNotFound):
        rt.delete(cid, force=True)
    d = os.path.join(rt.root, cid)
    if os.path.isdir(d) and not os.path.exists(os.path.join(d, "state.json")):
        shutil.rmtree(d, ignore_errors=True)  # create was killed before it wrote its state


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _check_rw_layers(paths: Paths, records: dict[str, ct.Container | None],
                     creating: bool) -> list[Finding]:
    """rw layers no container directory goes with: a build step's, left by a build that was
    killed (a live build holds the layer's lock)."""
    if creating:
        return []
    store = ct.image_store(paths)
    found = []
    for lid in store.list_rw_layers():
        if lid in records or _busy(paths, lid):
            continue
        found.append(Finding("LAYER", os.path.join(store.layerdb, "mounts", lid),
                             "an rw layer no container owns (a killed build's step)",
                             partial(store.remove_rw_layer, lid), lid))
    return found


def _check_network(paths: Paths, records: dict[str, ct.Container | None]) -> list[Finding]:
    """What the bridge holds for containers that do not run (a run killed during its
    network setup or before its release), and minidock's nft table if a firewall reload
    removed it while containers use the bridge. The bridge is the host's: what belongs to a
    container this root does not know (another --root's) is reported, never repaired."""
    from minidock import net  # no netlink unless a link has to go
    from minidock.net import firewall, ipam, links, netns

    def running(cid_or_prefix: str) -> str | None:
        """The id this root knows for it, if that container does not run ("" if it does)."""
        for cid, c in records.items():
            if cid.startswith(cid_or_prefix):
                live = (c is not None and c.state.running) or _live(paths, cid)
                return "" if live else cid
        return None

    found = []
    with ipam.Leases() as default:
        states = [default, *default.others()]
        bridges, forwards = firewall.of(states)
    leases = {cid: (st.path, ip) for st in states for cid, ip in st.leases.items()}
    # (kind, the container's id or prefix, path, what it is, the fix)
    held: list[tuple[str, str, str, str, Callable[[], object]]] = [
        ("LEASE", cid, f"{path}: {ip}", "address lease", partial(net.release, cid))
        for cid, (path, ip) in sorted(leases.items())]
    held += [("NETNS", short, netns.path_of(short), "network namespace entry",
              partial(netns.unpublish, short)) for short in netns.entries()]
    held += [("LINK", name[2:], f"/sys/class/net/{name}", "veth",
              partial(links.remove_link, name)) for name in links.container_links()]
    for kind, ref, path, what, fix in held:
        mine = running(ref)
        if mine == "":
            continue
        found.append(Finding(
            kind, path, f"{what} of container {ref[:12]}, which does not run"
            + ("" if mine else " (not a container of this root: left alone)"),
            fix if mine else None, mine or ""))
    live = [cid for cid in leases if running(cid) == ""]
    if live and bridges and not firewall.present(bridges, forwards):
        found.append(Finding(
            "FIREWALL", firewall.describe(),
            f"missing or changed (a firewall reload, `nft flush ruleset`?) while {len(live)} "
            "container(s) use the bridge: no NAT, no published ports",
            net.restore_firewall))
    return found


def _check_layers(paths: Paths) -> list[Finding]:
    store = ct.image_store(paths)
    fix = partial(store.cleanup_stale, unused=True)  # one run removes them all
    return [Finding("LAYER", path, why, fix) for path, why in store.stale(unused=True)]


def check(paths: Paths) -> list[Finding]:
    """Everything inconsistent or left over, nothing changed."""
    try:
        creating_lock = flock.HeldLock(ct.lock_path(paths, "containers.lock"), blocking=False)
        creating = False
    except BlockingIOError:
        creating_lock, creating = None, True  # a create (or rm) runs: judge no records now
    try:
        records = _records(paths)
        found = _check_records(paths, records, creating)
        found += _check_mounts(paths, creating)
        found += _check_cgroups(paths, records)
        found += _check_run_root(paths, records)
        found += _check_rw_layers(paths, records, creating)
        found += _check_network(paths, records)
        found += _check_layers(paths)
    finally:
        if creating_lock is not None:
            creating_lock.release()
    return found


def repair(paths: Paths, findings: list[Finding]) -> list[tuple[Finding, str]]:
    """Apply the fixes; returns (finding, error) for each one that failed or was skipped.

    Record fixes go first (recording an exit also releases the container's mount, cgroup
    and bundle), so what is left afterwards is looked at again before it is repaired.
    """
    failures: list[tuple[Finding, str]] = []
    done: set[int] = set()

    def apply(f: Finding) -> None:
        if f.fix is None:
            failures.append((f, "not repaired: it may not be this root's"))
            return
        key = id(f.fix)
        if key in done:
            return
        done.add(key)
        try:
            if f.container:
                with _idle(paths, f.container) as idle:
                    if not idle:
                        failures.append((f, "skipped: the container is in use now"))
                        return
                    f.fix()
            else:
                f.fix()
            trace.note(f"repaired {f.kind.lower()} {f.path}")
        except (MinidockError, OSError) as e:
            failures.append((f, str(getattr(e, "message", e))))

    for f in findings:
        if f.kind == "CONTAINER":
            apply(f)
    for f in check(paths):
        if f.kind != "CONTAINER":
            apply(f)
    return failures
