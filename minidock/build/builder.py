"""``docker build`` with the classic builder's semantics: one image per step, cached by parent.

    context (a directory, or a tar / a Dockerfile on stdin)  -->  .dockerignore applied
    Dockerfile  --parse-->  meta ARGs + stages  (build.stages)
    each stage: FROM (a local image, pulled if missing, or an earlier stage; ONBUILD
                triggers of the base run first)
                each instruction, printed as "Step i/N : <instruction>":
                  probe the cache: a child of the current image whose container_config
                  (Cmd = the history line) is the same --> " ---> Using cache"
                  else do it:
                    RUN         a container of the current image runs the command with the
                                stage's env, user, workdir and build args; its changes
                                are committed (engine.images.commit_step) and it is removed
                    COPY/ADD    an rw layer of the current image gets the files
                                (build.copier), its upper dir is committed
                    WORKDIR     the same, with the directory made
                    the rest    the config changes (build.metadata): an image with
                                empty_layer and no layer
                " ---> <12 hex of the new image>"
    "Successfully built <id>", then "Successfully tagged <name>" per -t

Every image made is the child of the one before (its parent recorded), which is how a later
build finds it again: there is no cache database. A failed RUN leaves its stopped container
for inspection, as Docker's classic builder does, unless --force-rm; everything else a
build made that is not an image (rw layers, mounts, a running step's container) is removed
when it fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from contextlib import ExitStack

from minidock.build import cache, context, copier, metadata, stages
from minidock.build.metadata import StageState
from minidock.build.sources import sources_hash
from minidock.dockerfile.instructions import instruction_flags
from minidock.dockerfile.parser import Command, parse
from minidock.dockerfile.words import process_word
from minidock.engine import containers as ct
from minidock.engine import spec as specgen
from minidock.engine.images.commit import CONTAINER_CONFIG_ORDER, commit_step
from minidock.errors import BuildFailed, ImageNotFound, InvalidArgument, MinidockError
from minidock.image.reference import parse_tagged
from minidock.image.store import ImageStore
from minidock.linux import trace
from minidock.paths import Paths
from minidock.records import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the keys of a container config Go always writes (the others are omitempty)
_ALWAYS = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
           "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
           "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
           "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None}
_FORBIDDEN_TRIGGERS = ("onbuild", "from", "maintainer")


@record
class BuildOptions:
    context: str  # a directory, or "-": a tar (or a Dockerfile) on stdin
    dockerfile: str | None = None  # -f: a path (relative to the current dir) or "-"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    target: str | None = None
    quiet: bool = False
    network: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    remove: bool = True  # --rm
    force_remove: bool = False  # --force-rm


class Output:
    """The build's output stream: stdout, or (with -q) a file shown only if it fails."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.fd = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC,
                          0o600) if quiet else 1

    def line(self, text: str) -> None:
        data = (text + "\n").encode("utf-8", "surrogateescape")
        while data:
            data = data[os.write(self.fd, data):]

    def replay(self, fd: int) -> None:
        if not self.quiet:
            return
        os.lseek(self.fd, 0, os.SEEK_SET)
        while chunk := os.read(self.fd, 65536):
            os.write(fd, chunk)

    def close(self) -> None:
        if self.quiet:
            os.close(self.fd)


@record
class _Stage:
    """A stage while it runs: its state (build.metadata) and its image so far."""

    state: StageState
    image_id: str | None  # None: FROM scratch, nothing committed yet
    name: str = ""


def run_config(base: dict[str, Any] | None) -> dict[str, Any]:
    """A stage's starting config: the base image's, in Go's field order, PATH made sure
    of, stdin closed (Docker's dispatchState.beginStage)."""
    base = dict(base or {})
    cfg: dict[str, Any] = {}
    for key in CONTAINER_CONFIG_ORDER:
        if key in base:
            cfg[key] = base[key]
        elif key in _ALWAYS:
            cfg[key] = _ALWAYS[key]
    cfg.update({k: v for k, v in base.items() if k not in cfg})
    env = list(cfg.get("Env") or [])
    if not any(e.partition("=")[0] == "PATH" for e in env):
        env.append("PATH=" + DEFAULT_PATH)
    cfg["Env"] = env
    cfg["OpenStdin"] = False
    cfg["StdinOnce"] = False
    return cfg


def _copy(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(cfg))
    return out


class Builder:
    def __init__(self, paths: Paths, opts: BuildOptions, out: Output, workdir: str,
                 context_dir: str, dockerfile_text: str, dockerfile_name: str) -> None:
        self.paths = paths
        self.opts = opts
        self.out = out
        self.workdir = workdir  # a private temp dir for this build
        self.context = context_dir
        self.text = dockerfile_text
        self.dockerfile_name = dockerfile_name
        self.store = ImageStore(paths)
        self.cache = cache.Cache(self.store)
        self.cache_busted = opts.no_cache
        self.results: dict[str, str | None] = {}  # stage name or index -> image id
        self.step = 0
        self.total = 0
        self.allowed: frozenset[str] | None = None
        self.referenced: set[str] = set()

    # --- the whole build -------------------------------------------------------------

    def build(self) -> str:
        commands = parse(self.text)
        for cmd in commands:  # an unknown instruction fails the build before it starts
            if cmd.cmd.lower() not in metadata.METADATA | {"from", "run", "copy", "add"}:
                raise InvalidArgument(f"dockerfile parse error line {cmd.start_line}: "
                                      f"unknown instruction: {cmd.cmd.upper()}")
        plan = stages.plan(commands, self.opts.target, self.opts.labels)
        self.total = plan.total_steps
        ignore = context.ignore_patterns(self.context, self.dockerfile_name)
        self.allowed = frozenset(context.context_files(self.context, ignore))
        meta = StageState(options=dict(self.opts.build_args))
        for cmd in plan.meta_args:
            self._print_step(cmd)
            metadata.apply(meta, cmd)  # declares (and expands) the arg
        meta_values = dict(meta.args)
        current: _Stage | None = None
        for stage in plan.stages:
            self._print_step(stage.source)
            try:
                current = self._begin(stage, meta_values)
            except BuildFailed:
                raise
            except MinidockError as e:
                raise BuildFailed(e.message + _at(stage.source)) from None
            self._print_id(current.image_id)
            for cmd in stage.commands:
                self._print_step(cmd)
                self._dispatch(current, cmd)
                self._print_id(current.image_id)
            self.results[str(stage.index)] = current.image_id
            if stage.name:
                self.results[stage.name] = current.image_id
            self.referenced |= current.state.referenced
        assert current is not None
        unused = sorted(k for k in self.opts.build_args
                        if k not in self.referenced and k not in metadata.PROXY_ARGS)
        if unused:
            self.out.line(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                          "consumed")
        if current.image_id is None:
            raise BuildFailed("No image was generated. Is your Dockerfile empty?")
        return current.image_id

    def _print_step(self, cmd: Command) -> None:
        self.step += 1
        first = cmd.original.split("\n", 1)[0].strip()
        self.out.line(f"Step {self.step}/{self.total} : {first}")

    def _print_id(self, image_id: str | None) -> None:
        self.out.line(" ---> " + (image_id or "").removeprefix("sha256:")[:12])

    # --- FROM --------------------------------------------------------------------------

    def _begin(self, stage: stages.Stage, meta: dict[str, str | None]) -> _Stage:
        state = StageState(options=dict(self.opts.build_args), meta=dict(meta))
        base = process_word(stage.base, state.meta_args(), stage.source.escape)
        if not base:
            raise BuildFailed(f"base name ({stage.base}) should not be blank")
        image_id: str | None
        if base.lower() == "scratch":
            image_id, config = None, None
        elif base.lower() in self.results:
            image_id = self.results[base.lower()]
            config = self.store.get_image_config(image_id)["config"] if image_id else None
        else:
            platform = process_word(stage.platform, state.meta_args(), stage.source.escape)
            image_id = self._base_image(base, platform or None)
            config = self.store.get_image_config(image_id).get("config")
        state.config = run_config(config)
        if image_id is not None:
            state.config["Image"] = image_id
        current = _Stage(state, image_id, stage.name)
        triggers = list(state.config.get("OnBuild") or [])
        state.config["OnBuild"] = None
        if triggers:
            self.out.line(f"# Executing {len(triggers)} build trigger"
                          + ("s" if len(triggers) > 1 else ""))
            for trigger in triggers:
                cmds = parse(trigger)
                if not cmds:
                    continue
                if cmds[0].cmd.lower() in _FORBIDDEN_TRIGGERS:
                    raise BuildFailed(f"{cmds[0].cmd.upper()} isn't allowed as an ONBUILD "
                                      "trigger")
                self._dispatch(current, cmds[0])
        return current

    def _base_image(self, name: str, platform: str | None = None) -> str:
        """A FROM (or COPY --from) image: the local one, unless --pull or it is missing or
        (FROM --platform) of another platform; then pulled, its output in the build's."""
        from minidock.engine.distribution.pull import pull
        from minidock.image.platform import config_platform, parse_platform, platform_matches

        if not self.opts.pull:
            try:
                image_id = self.store.resolve(name)
                if platform is None or platform_matches(
                        parse_platform(platform),
                        config_platform(self.store.get_image_config(image_id))):
                    return image_id
            except ImageNotFound:
                pass
        out = os.fdopen(os.dup(self.out.fd), "w", encoding="utf-8")
        try:
            return pull(self.paths, name, platform=platform, out=out).image_id
        finally:
            out.close()

    # --- one instruction ---------------------------------------------------------------

    def _dispatch(self, current: _Stage, cmd: Command) -> None:
        name = cmd.cmd.lower()
        trace.note(f"build step, Dockerfile line {cmd.start_line}: "
                   f"{cmd.original.split(chr(10), 1)[0].strip()}")
        try:
            if name == "run":
                self._run(current, cmd)
            elif name in ("copy", "add"):
                self._copy(current, cmd)
            elif name == "workdir":
                self._workdir(current, cmd)
            elif name == "from":
                raise BuildFailed("FROM isn't allowed here")
            else:
                self._config_step(current, cmd)
        except copier.CopyError as e:
            raise BuildFailed(f"{cmd.cmd.upper()} failed: {e.message}{_at(cmd)}") from None
        except KeyboardInterrupt:
            raise
        except BuildFailed as e:
            if e.exit_code != 1:  # a RUN's own code: Docker's line, as it is
                raise
            raise BuildFailed(e.message + _at(cmd)) from None
        except MinidockError as e:
            raise BuildFailed(e.message + _at(cmd)) from None

    def _config_step(self, current: _Stage, cmd: Command) -> None:
        state = current.state
        if cmd.cmd.lower() == "healthcheck":
            old = (state.config.get("Healthcheck") or {}).get("Test") or []
            if old and old[0] != "NONE":
                self.out.line("Note: overriding previous HEALTHCHECK: [" + " ".join(old) + "]")
        self._commit_config(current, metadata.apply_words(state, cmd))

    def _container_config(self, current: _Stage, cmd: list[str],
                          entrypoint_none: bool = False) -> dict[str, Any]:
        cfg = _copy(current.state.config)
        cfg["Cmd"] = cmd
        if entrypoint_none:
            cfg["Entrypoint"] = None
        return cfg

    def _probe(self, current: _Stage, container_config: dict[str, Any]) -> bool:
        if self.cache_busted:
            return False
        hit = self.cache.probe(current.image_id, container_config)
        if hit is None:
            self.cache_busted = True
            return False
        trace.note(f"cache hit: {hit[7:19]}, a child of the current image with the same "
                   "container_config (its Cmd is this step's history line)")
        self.out.line(" ---> Using cache")
        self._advance(current, hit)
        return True

    def _advance(self, current: _Stage, image_id: str) -> None:
        current.image_id = image_id
        current.state.config["Image"] = image_id

    def _commit_config(self, current: _Stage, words: list[str]) -> None:
        """A step that changed only the config: an image with no new layer."""
        container_config = self._container_config(current, words)
        if self._probe(current, container_config):
            return
        image_id = commit_step(self.paths, parent_id=current.image_id, upper=None,
                               config=_copy(current.state.config),
                               container_config=container_config,
                               author=current.state.author)
        self._advance(current, image_id)

    # --- RUN ---------------------------------------------------------------------------

    def _run(self, current: _Stage, cmd: Command) -> None:
        state = current.state
        argv = self._run_argv(state, cmd)
        run_args = state.run_args()
        save = [*state.run_prefix(run_args), *argv] if run_args else argv
        container_config = self._container_config(current, save, entrypoint_none=True)
        if self._probe(current, container_config):
            return
        if current.image_id is None:
            raise BuildFailed(f"The command '{' '.join(argv)}' cannot run on an empty "
                              "image (FROM scratch has no shell or programs)")
        opts = ct.CreateOptions(
            image=current.image_id, network=self.opts.network,
            process=specgen.ProcessOptions(cmd=argv, entrypoint=[], env=run_args))
        c = ct.create(self.paths, opts)
        keep_on_failure = self.opts.remove and not self.opts.force_remove
        with ExitStack() as cleanup:
            cleanup.callback(self._remove_container, c.id)
            self.out.line(f" ---> Running in {c.short_id}")
            code = ct.start(self.paths, c.id, stdout=self.out.fd, stderr=self.out.fd,
                            kill_on_interrupt=True)
            if code != 0:
                if keep_on_failure:
                    cleanup.pop_all()
                raise BuildFailed(f"The command '{' '.join(argv)}' returned a non-zero code: "
                                  f"{code}", code)
            rw = self.store.get_rw_layer(c.id)
            image_id = commit_step(self.paths, parent_id=current.image_id,
                                   upper=self.store.driver.diff_path(rw.mount_id),
                                   config=_copy(state.config),
                                   container_config=container_config,
                                   author=state.author, container_id=c.id)
            if not self.opts.remove:
                cleanup.pop_all()
        self._advance(current, image_id)

    def _remove_container(self, cid: str) -> None:
        ct.remove(self.paths, cid, force=True, volumes=True)  # as Docker's RemoveVolume
        self.out.line(f"Removing intermediate container {cid[:12]}")

    def _run_argv(self, state: StageState, cmd: Command) -> list[str]:
        for flag in cmd.flags:  # RUN --mount, --network, --security: BuildKit's alone
            name = flag[2:].partition("=")[0]
            raise BuildFailed(f"the --{name} option requires BuildKit, which minidock's "
                              "classic builder is not")
        if cmd.json:
            if not cmd.value:
                raise BuildFailed("RUN requires at least one argument")
            return list(cmd.value)
        if cmd.heredocs:
            first, _, _ = cmd.original.partition("\n")
            rest = first.strip()[len(cmd.cmd):].strip()
            for flag in cmd.flags:
                rest = rest.removeprefix(flag).strip()
            if len(cmd.heredocs) == 1 and rest.lstrip("0123456789").startswith("<<") and \
                    " " not in rest.strip():
                return [*state.shell, cmd.heredocs[0].content]  # RUN <<EOF: a script
            body = cmd.original.split("\n", 1)[1] if "\n" in cmd.original else ""
            return [*state.shell, rest + "\n" + body]
        if not cmd.value or not cmd.value[0]:
            raise BuildFailed("RUN requires at least one argument")
        return [*state.shell, cmd.value[0]]

    # --- WORKDIR -------------------------------------------------------------------------

    def _workdir(self, current: _Stage, cmd: Command) -> None:
        state = current.state
        container_config = self._container_config(current, metadata.apply_words(state, cmd))
        if self._probe(current, container_config):
            return
        workdir = state.config["WorkingDir"]
        with self._rw_layer(current.image_id) as (root, upper):
            fs_make_dirs(root, workdir)
            image_id = commit_step(self.paths, parent_id=current.image_id, upper=upper,
                                   config=_copy(state.config),
                                   container_config=container_config, author=state.author)
        self._advance(current, image_id)

    @contextlib.contextmanager
    def _rw_layer(self, image_id: str | None) -> Any:
        """A scratch rw layer on ``image_id``, mounted: (merged root, upper dir). Its lock
        (named like a container's record lock) says it is in use: ``system check`` removes
        such a layer only when nobody holds it (a build that was killed)."""
        from minidock.linux import flock

        lid = os.urandom(32).hex()
        trace.note("a scratch rw layer on the current image, for this step's files (no "
                   "container: nothing runs)")
        with ExitStack() as undo:
            lock_path = ct.lock_path(self.paths, f"{lid}.lock")
            lock = flock.HeldLock(lock_path)
            undo.callback(lock.release)
            undo.callback(os.unlink, lock_path)
            self.store.create_rw_layer(lid, image_id)
            undo.callback(self.store.remove_rw_layer, lid)
            root = self.store.mount_rw_layer(lid)
            undo.callback(self.store.unmount_rw_layer, lid)
            rw = self.store.get_rw_layer(lid)
            yield root, self.store.driver.diff_path(rw.mount_id)

    # --- COPY / ADD ----------------------------------------------------------------------

    def _copy(self, current: _Stage, cmd: Command) -> None:
        state = current.state
        keyword = cmd.cmd.upper()
        is_add = keyword == "ADD"
        known: dict[str, str | None] = {"chown": "", "chmod": ""}
        if not is_add:
            known["from"] = ""
        flags = instruction_flags(cmd, known)
        env = state.env()
        words = [process_word(w, env, cmd.escape) for w in cmd.value]
        if len(words) < (1 if cmd.heredocs else 2):
            raise BuildFailed(f"{keyword} requires at least two arguments, but only one was "
                              "provided. Destination could not be determined.")
        dest_word = words[-1]
        src_words = [w for w in words[:-1]
                     if not (cmd.heredocs and w.lstrip("0123456789").startswith("<<"))]
        dest = copier.normalize_dest(str(state.config.get("WorkingDir") or ""), dest_word)
        with ExitStack() as hold:
            srcs = self._sources(cmd, flags.get("from", ""), src_words, is_add, hold, env)
            hashes = [copier.source_hash(s) for s in srcs]
            # as docker 20.10 writes it: --chown glued to the hash (its classic builder has
            # no --chmod: written the same way here, so that a new mode misses the cache)
            chown = "".join(f"--{k}={flags[k]}" for k in ("chown", "chmod") if flags.get(k))
            comment = f"{keyword} {chown}{sources_hash(hashes)} in {dest_word} "
            container_config = self._container_config(
                current, metadata.history_words(state.shell, comment, keyword.lower()))
            if self._probe(current, container_config):
                return
            with self._rw_layer(current.image_id) as (root, upper):
                owner = self._owner(root, flags.get("chown", ""), flags.get("from", ""))
                if flags.get("chmod"):
                    try:
                        owner.mode = int(flags["chmod"], 8)
                    except ValueError:
                        raise BuildFailed(f"invalid chmod parameter: {flags['chmod']}") \
                            from None
                copier.copy(root, dest, srcs, owner, extract=is_add)
                image_id = commit_step(self.paths, parent_id=current.image_id, upper=upper,
                                       config=_copy(state.config),
                                       container_config=container_config,
                                       author=state.author)
        self._advance(current, image_id)

    def _sources(self, cmd: Command, from_: str, words: list[str], is_add: bool,
                 hold: ExitStack, env: dict[str, str]) -> list[copier.Source]:
        out: list[copier.Source] = []
        for doc in cmd.heredocs:
            text = doc.content
            if doc.chomp:
                text = "".join(line.lstrip("\t") for line in text.splitlines(True))
            if doc.expand:
                text = process_word(text, env, cmd.escape, raw=True)
            out.append(copier.Source("", "", doc.name, content=text.encode()))
        if from_:
            root = self._stage_root(from_, hold)
            return out + copier.root_sources(root, words)
        local = []
        for word in words:
            if is_add and word.startswith(("http://", "https://")):
                out.append(self._download(word))
            else:
                local.append(word)
        if local:
            out += copier.context_sources(self.context, local, self.allowed, cmd.cmd.upper())
        return out

    def _stage_root(self, ref: str, hold: ExitStack) -> str:
        """The root filesystem of ``--from``'s stage (by name or index) or image, mounted
        read-only for the step (an rw layer of its own, dropped after)."""
        key = ref.lower()
        if key in self.results:
            image_id = self.results[key]
        else:
            try:
                image_id = self._base_image(ref)
            except MinidockError as e:
                raise BuildFailed(f"invalid from flag value {ref}: {e.message}") from None
        root, _ = hold.enter_context(self._rw_layer(image_id))
        return str(root)

    def _download(self, url: str) -> copier.Source:
        from minidock.build.remote import download

        path, name, mtime = download(url, self.workdir)
        return copier.Source(os.path.dirname(path), os.path.basename(path), name,
                             url_mtime=mtime)

    def _owner(self, root: str, chown: str, from_: str) -> copier.Ownership:
        """--chown as Docker reads it: ``user[:group]``, names looked up in the step's
        /etc/passwd and /etc/group, a lone user also naming the group."""
        if not chown:
            return copier.Ownership(keep=bool(from_))
        from minidock.engine.spec.user import parse_group, parse_passwd
        from minidock.linux import fs

        def read(path: str) -> str:
            data = fs.read_file_in_root(root, path, 1 << 22)
            return data.decode("utf-8", "replace") if data is not None else ""

        parts = chown.split(":")
        if len(parts) > 2:
            raise BuildFailed(f"invalid chown string format: {chown}")
        user, group = parts[0], parts[-1]
        prefix = "unable to convert uid/gid chown string to host mapping: "
        if user.isdigit():
            uid = int(user)
        else:
            entry = next((u for u in parse_passwd(read("/etc/passwd")) if u.name == user), None)
            if entry is None:
                raise BuildFailed(f"{prefix}can't find uid for user {user}: no such user: "
                                  f"{user}")
            uid = entry.uid
        if group.isdigit():
            gid = int(group)
        else:
            found = next((g for g in parse_group(read("/etc/group")) if g.name == group), None)
            if found is None:
                raise BuildFailed(f"{prefix}can't find gid for group {group}: no such group: "
                                  f"{group}")
            gid = found.gid
        return copier.Ownership(uid=uid, gid=gid)


def _at(cmd: Command) -> str:
    """Where a step's error comes from: Docker's classic builder does not say, BuildKit
    does; the line number is added after Docker's own words."""
    return f" (Dockerfile line {cmd.start_line})"


def fs_make_dirs(root: str, path: str) -> None:
    from minidock.linux import fs

    fs.make_dirs_in_root(root, path, 0o755, 0, 0)


# --- the entry point ---------------------------------------------------------------------


def _read_stdin(stdin: BinaryIO, into: str) -> tuple[str, str | None]:
    """``build -``: a tar (maybe compressed) to extract as the context, or a Dockerfile.
    Returns (context dir, the Dockerfile's text when stdin was one)."""
    data = stdin.read(512)
    ctx = os.path.join(into, "context")
    os.mkdir(ctx, 0o700)
    if copier.looks_like_archive(data):
        from minidock.image.layer import LayerError, Prefixed, apply_layer

        try:
            apply_layer(Prefixed(data, stdin), ctx)  # type: ignore[arg-type]
        except LayerError as e:
            raise InvalidArgument(f"read the build context from stdin: {e.message}") from None
        return ctx, None
    rest = stdin.read()
    return ctx, (data + rest).decode("utf-8", "surrogateescape")


def build(paths: Paths, opts: BuildOptions, stdin: BinaryIO | None = None) -> str:
    """Run a build; returns the image id. Output goes to stdout (with -q: only the id, and
    the output on stderr if it fails)."""
    import sys

    refs = [parse_tagged(t) for t in opts.tags]  # a bad -t before anything runs
    out = Output(opts.quiet)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    with ExitStack() as stack:
        stack.callback(out.close)
        from minidock.linux import flock

        os.makedirs(paths.builds, mode=0o700, exist_ok=True)
        work = tempfile.mkdtemp(dir=paths.builds)
        held = flock.HeldLock(work + ".lock")  # a live build's: system check leaves it be
        stack.callback(held.release)
        stack.callback(os.unlink, work + ".lock")
        stack.callback(shutil.rmtree, work, True)
        text: str | None = None
        if opts.context == "-":
            if opts.dockerfile == "-":
                raise InvalidArgument("invalid argument: can't use stdin for both build "
                                      "context and dockerfile")
            context_dir, text = _read_stdin(stdin, work)
        elif opts.context.startswith(("http://", "https://", "git@", "git://", "github.com/")):
            raise InvalidArgument(f"unable to prepare context: {opts.context}: a context "
                                  "from a URL or git is not supported; clone or download it "
                                  "and give its directory")
        else:
            context_dir = os.path.abspath(opts.context)
            if not os.path.isdir(context_dir):
                raise InvalidArgument(f"unable to prepare context: path \"{opts.context}\" "
                                      "not found")
        # -f is relative to the current directory, as Docker's CLI reads it; the default is
        # the context's Dockerfile; <Dockerfile>.dockerignore is looked for next to it
        path = os.path.abspath(opts.dockerfile) if opts.dockerfile not in (None, "-") else \
            os.path.join(context_dir, "Dockerfile")
        if text is None and opts.dockerfile == "-":
            text = stdin.read().decode("utf-8", "surrogateescape")
        elif text is None:
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    text = f.read()
            except FileNotFoundError:
                raise InvalidArgument(f"unable to prepare context: unable to evaluate symlinks "
                                      f"in Dockerfile path: lstat {path}: no such file or "
                                      "directory") from None
            except OSError as e:
                raise InvalidArgument(f"read {path}: {e.strerror}") from None
        builder = Builder(paths, opts, out, work, context_dir, text, path)
        try:
            image_id = builder.build()
        except BaseException:
            out.replay(2)
            raise
        store = ImageStore(paths)
        out.line(f"Successfully built {image_id.removeprefix('sha256:')[:12]}")
        for ref in refs:
            store.add_tag(ref, image_id)
            out.line(f"Successfully tagged {ref.familiar()}")
    return image_id

