"""Image operations of the engine: import, list, tag, remove, inspect.

Orchestration over :class:`minidock.image.store.ImageStore`, no click and no printing:
functions take Paths and plain values and return data; the CLI formats it. The
``--change`` parser (:func:`apply_changes`) is pure and unit-tested.

``docker import`` in one picture::

    source (file | - | URL) --> register_layer (decompress, verify, extract, ChainID)
                            --> config {architecture, os, created, config <- --change,
                                        rootfs.diff_ids, history}
                            --> create_image (id = sha256(config bytes)) --> add_tag
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from minidock.errors import Conflict, ImageNotFound, InvalidArgument, MinidockError
from minidock.image.reference import (
    Reference,
    is_digest,
    is_identifier,
    parse_reference,
    parse_tagged,
    short_id,
)
from minidock.image.store import ImageStore, rfc3339nano
from minidock.paths import Paths

# --- platform ------------------------------------------------------------------------------

_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "loongarch64": ("loong64", None),
}


def host_platform() -> tuple[str, str | None]:
    """GOARCH-style architecture and variant of this machine (containerd's DefaultSpec)."""
    machine = os.uname().machine
    return _ARCH.get(machine, (machine.lower(), None))


# --- --change: Dockerfile instructions applied to an image config ---------------------------

# What docker commit / import accept (moby builder/dockerfile: validCommitCommands).
_CHANGE_COMMANDS = {
    "cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild", "stopsignal",
    "user", "volume", "workdir",
}
_OTHER_INSTRUCTIONS = {"add", "arg", "copy", "from", "maintainer", "run", "shell"}
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONFIG_ORDER = (
    "User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes", "WorkingDir",
    "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell",
)


def _split_raw_words(s: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for :func:`_process_word`."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    in_word = False
    while i < len(s):
        c = s[i]
        if quote:
            cur.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            in_word = True
            cur.append(c)
            if c in "'\"":
                quote = c
            elif c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    if in_word:
        words.append("".join(cur))
    return words


def _process_word(word: str, env: dict[str, str]) -> str:
    """Remove quotes, apply escapes and expand ``$v ${v} ${v:-w} ${v:+w} ${v-w} ${v+w}``."""
    out: list[str] = []
    i = 0
    quote = ""
    while i < len(word):
        c = word[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                out.append(c)
            i += 1
            continue
        if c == "\\" and i + 1 < len(word):
            nxt = word[i + 1]
            # inside double quotes only \ " $ are escapable; elsewhere any character
            if quote == '"' and nxt not in '\\"$':
                out.append(c)
            out.append(nxt)
            i += 2
            continue
        if c == '"' and quote == '"':
            quote = ""
            i += 1
            continue
        if c in "'\"" and not quote:
            quote = c
            i += 1
            continue
        if c == "$":
            value, i = _expand_at(word, i, env)
            out.append(value)
            continue
        out.append(c)
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    return "".join(out)


def _expand_at(word: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    """Expand the variable at ``word[i] == "$"``; return (value, index after it)."""
    if i + 1 < len(word) and word[i + 1] == "{":
        end = word.find("}", i + 2)
        if end < 0:
            raise InvalidArgument(f"missing '}}' in {word!r}")
        body = word[i + 2:end]
        m = _VAR.match(body)
        if not m:
            raise InvalidArgument(f"bad substitution in {word!r}")
        name, rest = m.group(0), body[m.end():]
        value = env.get(name)
        if rest == "":
            return value or "", end + 1
        for op in (":-", ":+", "-", "+"):
            if rest.startswith(op):
                alt = _process_word(rest[len(op):], env)
                if op == ":-":
                    return (value if value else alt), end + 1
                if op == "-":
                    return (value if value is not None else alt), end + 1
                if op == ":+":
                    return (alt if value else ""), end + 1
                return (alt if value is not None else ""), end + 1
        raise InvalidArgument(f"unsupported modifier ({rest[:1]}) in substitution {word!r}")
    m = _VAR.match(word, i + 1)
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), m.end()


def _env_map(config: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def _parse_json_or_none(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _exec_or_shell(rest: str) -> list[str]:
    exec_form = _parse_json_or_none(rest)
    if exec_form is not None:
        return exec_form
    # Shell form runs under the default SHELL; the string is kept verbatim (no expansion).
    return ["/bin/sh", "-c", rest]


def _name_values(instr: str, rest: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """ENV / LABEL arguments: ``k=v k2="v 2"`` or the legacy ``k value with spaces``."""
    words = _split_raw_words(rest)
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        key, value = ([*re.split(r"\s+", rest.strip(), maxsplit=1), ""])[:2]
        if not value:
            raise InvalidArgument(f"{instr} must have two arguments")
        return [(_process_word(key, env), _process_word(value, env))]
    pairs = []
    for word in words:
        if "=" not in word:
            raise InvalidArgument(f"Syntax error - can't find = in {word!r}. Must be of the "
                                  "form: name=value")
        key, _, value = word.partition("=")
        key = _process_word(key, env)
        if not key:
            raise InvalidArgument(f"{instr} names can not be blank")
        pairs.append((key, _process_word(value, env)))
    return pairs


def _parse_port(spec: str) -> list[str]:
    port, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    lo, sep, hi = port.partition("-")
    try:
        start = int(lo)
        end = int(hi) if sep else start
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not (0 < start <= end <= 65535):
        raise InvalidArgument(f"invalid port range: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _valid_signal(value: str) -> bool:
    if value.isdigit():
        return 0 < int(value) < 65
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return isinstance(getattr(signal, name, None), signal.Signals)


def apply_changes(changes: list[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply ``--change`` Dockerfile instructions to a container config (Docker's keys).

    Returns a new dict (keys in Docker's order) holding only what is set.
    """
    cfg: dict[str, Any] = json.loads(json.dumps(config or {}))
    for change in changes:
        line = change.strip()
        if not line or line.startswith("#"):
            continue
        instr_word, _, rest = line.partition(" ")
        instr = instr_word.lower()
        rest = rest.strip()
        if instr not in _CHANGE_COMMANDS:
            if instr in _OTHER_INSTRUCTIONS:
                raise InvalidArgument(f"{instr} is not a valid change command")
            raise InvalidArgument(f"dockerfile parse error on line 1: unknown instruction: "
                                  f"{instr_word.upper()}")
        upper = instr.upper()
        env = _env_map(cfg)  # every instruction sees the environment from before it
        if instr in ("cmd", "entrypoint"):
            if not rest:
                raise InvalidArgument(f"{upper} requires at least one argument")
            cfg["Cmd" if instr == "cmd" else "Entrypoint"] = _exec_or_shell(rest)
        elif instr == "env":
            current = list(cfg.get("Env") or [])
            for key, value in _name_values(upper, rest, env):
                entry = f"{key}={value}"
                for idx, old in enumerate(current):
                    if old.partition("=")[0] == key:
                        current[idx] = entry
                        break
                else:
                    current.append(entry)
            cfg["Env"] = current
        elif instr == "label":
            labels = dict(cfg.get("Labels") or {})
            for key, value in _name_values(upper, rest, env):
                labels[key] = value
            cfg["Labels"] = labels
        elif instr == "expose":
            words = [_process_word(w, env) for w in _split_raw_words(rest)]
            if not words:
                raise InvalidArgument("EXPOSE requires at least one argument")
            ports = dict(cfg.get("ExposedPorts") or {})
            for word in words:
                for port in _parse_port(word):
                    ports[port] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "workdir":
            if not rest:
                raise InvalidArgument("WORKDIR requires exactly one argument")
            path = _process_word(rest, env)
            if not path.startswith("/"):
                path = posixpath.join(cfg.get("WorkingDir") or "/", path)
            # normpath keeps a leading "//" (POSIX allows it to mean something); we do not.
            cfg["WorkingDir"] = "/" + posixpath.normpath(path).lstrip("/")
        elif instr == "user":
            if not rest:
                raise InvalidArgument("USER requires exactly one argument")
            cfg["User"] = _process_word(rest, env)
        elif instr == "stopsignal":
            sig = _process_word(rest, env)
            if not sig or not _valid_signal(sig):
                raise InvalidArgument(f"Invalid signal: {sig}")
            cfg["StopSignal"] = sig
        elif instr == "volume":
            vols = _parse_json_or_none(rest)
            if vols is None:
                vols = [_process_word(w, env) for w in _split_raw_words(rest)]
            if not vols:
                raise InvalidArgument("VOLUME requires at least one argument")
            volumes = dict(cfg.get("Volumes") or {})
            for v in vols:
                if not v.strip():
                    raise InvalidArgument("VOLUME specified can not be an empty string")
                volumes[v.strip()] = {}
            cfg["Volumes"] = volumes
        elif instr == "onbuild":
            trigger = rest.partition(" ")[0].lower()
            if not trigger:
                raise InvalidArgument("ONBUILD requires at least one argument")
            if trigger in ("onbuild", "from", "maintainer"):
                raise InvalidArgument(f"{trigger.upper()} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
        else:  # healthcheck
            raise InvalidArgument("HEALTHCHECK in --change is not supported yet")
    ordered = {k: cfg[k] for k in _CONFIG_ORDER if k in cfg}
    ordered.update({k: v for k, v in cfg.items() if k not in ordered})
    return ordered


# --- import --------------------------------------------------------------------------------


def _open_source(source: str, stdin: BinaryIO | None) -> tuple[BinaryIO, str]:
    """The stream to import and the name Docker records ("-" for stdin and local files)."""
    if source == "-":
        return (stdin if stdin is not None else sys.stdin.buffer), "-"
    if source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            resp = urllib.request.urlopen(source, timeout=60)
        except (urllib.error.URLError, OSError) as e:
            raise InvalidArgument(f"import from {source}: {e}") from e
        return resp, source
    try:
        return open(source, "rb"), "-"  # docker/cli uploads a local file as "-"
    except FileNotFoundError:
        raise InvalidArgument(f"open {source}: no such file or directory") from None
    except OSError as e:
        raise InvalidArgument(f"open {source}: {os.strerror(e.errno or 0).lower()}") from e


def build_import_config(
    diff_id: str,
    container_config: dict[str, Any],
    comment: str,
    created: str,
) -> bytes:
    """The config bytes of an imported image, keys in Docker's (Go struct) order."""
    arch, variant = host_platform()
    cfg: dict[str, Any] = {"comment": comment, "created": created, "config": container_config,
                           "architecture": arch}
    if variant:
        cfg["variant"] = variant
    cfg["os"] = "linux"
    cfg["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    cfg["history"] = [{"created": created, "comment": comment}]
    return json.dumps(cfg, separators=(",", ":"), ensure_ascii=False).encode()


def import_image(
    paths: Paths,
    source: str,
    reference: str | None = None,
    changes: list[str] | None = None,
    message: str | None = None,
    *,
    stdin: BinaryIO | None = None,
) -> str:
    """``docker import``: one layer from a tarball (any compression); returns the image id."""
    ref = parse_tagged(reference) if reference else None  # refuse bad input before reading
    container_config = apply_changes(changes or [])
    stream, source_name = _open_source(source, stdin)
    store = ImageStore(paths)
    try:
        # One lock around layer, image and tag: a concurrent rmi cannot collect the new
        # layer before the image that holds it exists.
        with store.locked():
            layer = store.register_layer(stream)
            comment = message or f"Imported from {source_name}"
            config = build_import_config(layer.diff_id, container_config, comment, rfc3339nano())
            try:
                image_id = store.create_image(config)
                if ref is not None:
                    store.add_tag(ref, image_id)
            except BaseException:
                store.release_layer(layer.chain_id)
                raise
    finally:
        if stream is not stdin and stream is not sys.stdin.buffer:
            stream.close()
    return image_id


# --- list ----------------------------------------------------------------------------------


@dataclass
class ImageSummary:
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: str
    size: int
    parent: str = ""
    containers: list[str] = field(default_factory=list)


def list_images(paths: Paths, all_images: bool = False) -> list[ImageSummary]:
    """Images newest first; without ``all_images``, untagged images with children are hidden."""
    store = ImageStore(paths)
    out: list[ImageSummary] = []
    ids = store.list_images()
    parents = {i: store.get_parent(i) for i in ids}
    has_children = {p for p in parents.values() if p}
    for image_id in ids:
        refs = store.references(image_id)
        if not refs and not all_images and image_id in has_children:
            continue  # an intermediate image of a build
        try:
            config = store.get_image_config(image_id)
            size = store.image_size(image_id)
        except MinidockError:
            continue  # removed meanwhile (or corrupt): skip, do not fail the listing
        out.append(ImageSummary(
            id=image_id,
            repo_tags=[r for r in refs if "@" not in r],
            repo_digests=[r for r in refs if "@" in r],
            created=str(config.get("created") or ""),
            size=size,
            parent=parents.get(image_id) or "",
        ))
    out.sort(key=lambda s: (s.created, s.id), reverse=True)
    return out


# --- tag / remove --------------------------------------------------------------------------


def tag(paths: Paths, source: str, target: str) -> str:
    """``docker tag SOURCE TARGET``; returns the familiar target reference stored."""
    target_ref = parse_tagged(target)
    store = ImageStore(paths)
    with store.locked():
        image_id = store.resolve(source)
        return store.add_tag(target_ref, image_id).familiar()


def _is_id_reference(image_id: str, value: str) -> bool:
    """Docker's isImageIDPrefix: was the image named by (a prefix of) its id?"""
    return image_id.startswith(value) or image_id[len("sha256:"):].startswith(value)


def _single_reference(refs: list[str]) -> bool:
    """At most one tag, and digests only of that tag's repository (Docker's isSingleReference)."""
    if len(refs) <= 1:
        return len(refs) == 1
    parsed = [parse_reference(r) for r in refs]
    tags = [r for r in parsed if r.digest is None]
    if len(tags) > 1:
        return False
    single: Reference = tags[0] if tags else parsed[0]
    digest_repos = {r.name for r in parsed if r.digest is not None}
    return digest_repos == {single.name}


def remove_image(
    paths: Paths,
    ref: str,
    force: bool,
    in_use: Callable[[str], list[str]],
) -> list[str]:
    """``docker rmi``: the lines Docker prints (``Untagged: x:y``, ``Deleted: sha256:...``).

    An image a container uses is never deleted: without ``force`` the last reference is
    kept too (Conflict); with ``force`` the reference goes and the image stays (untag only).
    """
    store = ImageStore(paths)
    lines: list[str] = []
    with store.locked():
        image_id = store.resolve(ref)
        refs = store.references(image_id)
        users = in_use(image_id)
        if not _is_id_reference(image_id, ref):
            # A name was given: that reference goes first.
            if users and not force and _single_reference(refs):
                raise Conflict(
                    f'conflict: unable to remove repository reference "{ref}" (must force) '
                    f"- container {short_id(users[0])} is using its referenced image "
                    f"{short_id(image_id)}"
                )
            named = parse_reference(ref).with_default_tag()
            store.remove_tag(named)
            lines.append(f"Untagged: {named.familiar()}")
            remaining = store.references(image_id)
            if named.digest is None and not any(
                parse_reference(r).name == named.name and "@" not in r for r in remaining
            ):
                # The last tag of a repository takes that repository's digests with it.
                for r in remaining:
                    if "@" in r and parse_reference(r).name == named.name:
                        store.remove_tag(r)
                        lines.append(f"Untagged: {r}")
            if store.references(image_id) or users or store.children(image_id):
                # Still referenced, used by a container or the base of another image:
                # Docker deletes "quietly" here, i.e. it stops after the untag.
                return lines
        else:
            if users:
                raise Conflict(
                    f"conflict: unable to delete {short_id(image_id)} (cannot be forced) - "
                    f"image is being used by container {short_id(users[0])}"
                )
            if refs and not force and not _single_reference(refs):
                raise Conflict(
                    f"conflict: unable to delete {short_id(image_id)} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
        if store.children(image_id):
            raise Conflict(
                f"conflict: unable to delete {short_id(image_id)} (cannot be forced) - "
                "image has dependent child images"
            )
        for r in store.references(image_id):
            store.remove_tag(r)
            lines.append(f"Untagged: {r}")
        removed_layers = store.delete_image(image_id)
        lines.append(f"Deleted: {image_id}")
        lines.extend(f"Deleted: {chain}" for chain in removed_layers)
    return lines


# --- inspect -------------------------------------------------------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"


def inspect_image(paths: Paths, ref: str) -> dict[str, Any]:
    """``docker image inspect`` for one image, in Docker's field order."""
    store = ImageStore(paths)
    image_id = store.resolve(ref)
    config = store.get_image_config(image_id)
    layers = store.image_layers(image_id)
    graph_data: dict[str, str] | None = None
    if layers:
        graph_data = store.driver.metadata(layers[-1].cache_id)
    out: dict[str, Any] = {
        "Id": image_id,
        "RepoTags": store.tags_of(image_id),
        "RepoDigests": store.digests_of(image_id),
        "Parent": store.get_parent(image_id) or "",
        "Comment": config.get("comment") or "",
        "Created": config.get("created") or "",
        "Author": config.get("author") or "",
        "Config": config.get("config"),
        "Architecture": config.get("architecture") or "",
    }
    if config.get("variant"):
        out["Variant"] = config["variant"]
    out["Os"] = config.get("os") or ""
    if config.get("os.version"):
        out["OsVersion"] = config["os.version"]
    out["Size"] = sum(layer.size for layer in layers)
    out["GraphDriver"] = {"Data": graph_data, "Name": store.driver.name}
    out["RootFS"] = {"Type": "layers", "Layers": [layer.diff_id for layer in layers]}
    out["Metadata"] = {"LastTagTime": store.get_last_updated(image_id) or ZERO_TIME}
    return out


def image_for_container(
    paths: Paths, ref: str, pull_missing: bool = True
) -> tuple[str, dict[str, Any]]:
    """Resolve ``ref`` for ``run``/``create``: (image id, the whole parsed image config).

    An image that is not here is pulled first (Docker's ``--pull missing``), unless
    ``ref`` looks like an image id or ``pull_missing`` is False.

    The container defaults (Cmd, Entrypoint, Env, WorkingDir, User, ...) are under
    ``config["config"]`` (may be missing or null: treat as empty).
    """
    store = ImageStore(paths)
    try:
        image_id = store.resolve(ref)
    except ImageNotFound:
        if not pull_missing or is_identifier(ref) or ref.startswith("sha256:"):
            raise
        # Docker pulls what it cannot find. Imported here so that `run` of a local image
        # never loads the registry client.
        from minidock.engine.pull import pull_missing as pull

        image_id = pull(paths, ref)
    return image_id, store.get_image_config(image_id)


def resolve_image(paths: Paths, ref: str) -> str:
    """The image id ``ref`` names (tag, digest reference, id or unique id prefix)."""
    return ImageStore(paths).resolve(ref)


def is_image_id(value: str) -> bool:
    return is_digest(value)


# --- list filters --------------------------------------------------------------------------

IMAGE_FILTERS = ("dangling", "reference", "before", "since", "label")


def parse_filters(values: list[str] | tuple[str, ...], allowed: tuple[str, ...]) -> dict[
        str, list[str]]:
    """``--filter key=value`` flags -> {key: [values]} (Docker's filters.Args), checked."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


def _bool_filter(values: list[str], key: str) -> bool:
    wanted = {v.lower() for v in values}
    if not wanted <= {"true", "false", "1", "0"} or len({v in ("true", "1") for v in wanted}) > 1:
        raise InvalidArgument(f"invalid filter '{key}={values[0]}'")
    return next(iter(wanted)) in ("true", "1")


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` never match ``/``, ``[...]`` classes, ``\\`` escapes.

    Docker's ``reference=`` filter uses it, so ``busy*`` matches ``busybox`` but not
    ``library/busybox``; fnmatch would let ``*`` cross the slash.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise InvalidArgument(f"invalid reference filter {pattern!r}: syntax error in "
                                      "pattern")
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(out), name) is not None


def _reference_matches(pattern: str, ref: str) -> bool:
    """reference.FamiliarMatch: the familiar string (``busybox:latest``), then the name."""
    if path_match(pattern, ref):
        return True
    name = ref.partition("@")[0]
    if ":" in name.rpartition("/")[2]:
        name = name.rpartition(":")[0]
    return path_match(pattern, name)


def label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key.endswith("!") and sep:  # label!=value is not Docker's syntax for images; keep simple
        raise InvalidArgument(f"invalid filter 'label={wanted}'")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def filter_images(paths: Paths, images: list[ImageSummary],
                  filters: dict[str, list[str]]) -> list[ImageSummary]:
    """Docker's image list filters; ``reference`` also narrows each image's tags to the
    matching ones (as the daemon does), so only those get a row."""
    if not filters:
        return images
    store = ImageStore(paths)
    dangling = _bool_filter(filters["dangling"], "dangling") if "dangling" in filters else None
    before = min((_created_of(store, r) for r in filters.get("before", [])), default=None)
    since = max((_created_of(store, r) for r in filters.get("since", [])), default=None)
    out: list[ImageSummary] = []
    for s in images:
        if dangling is not None and dangling != (not s.repo_tags):
            continue
        created = parse_time(s.created) or 0.0
        if before is not None and not created < before:
            continue
        if since is not None and not created > since:
            continue
        if "label" in filters:
            try:
                cfg = store.get_image_config(s.id).get("config") or {}
            except MinidockError:
                continue
            labels = cfg.get("Labels") or {}
            if not all(label_matches(labels, w) for w in filters["label"]):
                continue
        if "reference" in filters:
            patterns = filters["reference"]
            tags = [t for t in s.repo_tags if any(_reference_matches(p, t) for p in patterns)]
            digests = [d for d in s.repo_digests
                       if any(_reference_matches(p, d) for p in patterns)]
            if not tags and not digests:
                continue
            s = ImageSummary(s.id, tags, digests, s.created, s.size, s.parent, s.containers)
        out.append(s)
    return out


def _created_of(store: ImageStore, ref: str) -> float:
    # compared as times: RFC 3339 strings with trimmed fractions do not sort as text
    return parse_time(str(store.get_image_config(store.resolve(ref)).get("created") or "")) or 0.0


# --- history -------------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    """One line of ``docker history`` (moby's image.HistoryResponseItem)."""

    id: str  # the image id for entries that are images themselves, else "<missing>"
    created: str
    created_by: str
    size: int
    comment: str
    tags: list[str] = field(default_factory=list)


def image_history(paths: Paths, ref: str) -> list[HistoryEntry]:
    """The config's ``history`` matched to layers, newest first (moby daemon ImageHistory).

    A history entry without ``empty_layer`` produced the next layer in rootfs.diff_ids (in
    order) and takes its size; an ``empty_layer`` entry (ENV, CMD...) is 0 bytes. The newest
    entry is the image itself; an entry is also named by id when a parent image (a build's
    intermediate image) ends there; every other entry is "<missing>" like Docker's.
    """
    store = ImageStore(paths)
    image_id = store.resolve(ref)
    config = store.get_image_config(image_id)
    layers = store.image_layers(image_id)
    entries: list[HistoryEntry] = []
    layer_index = 0
    for h in config.get("history") or []:
        size = 0
        if not h.get("empty_layer"):
            if layer_index < len(layers):
                size = layers[layer_index].size
            layer_index += 1
        entries.append(HistoryEntry("<missing>", str(h.get("created") or ""),
                                    str(h.get("created_by") or ""), size,
                                    str(h.get("comment") or "")))
    # Images in the parent chain own the entry at the end of their own history.
    current: str | None = image_id
    while current:
        try:
            count = len(store.get_image_config(current).get("history") or [])
        except MinidockError:
            break
        if 0 < count <= len(entries) and entries[count - 1].id == "<missing>":
            entries[count - 1].id = current
            entries[count - 1].tags = store.tags_of(current)
        current = store.get_parent(current)
    if not entries:
        # no history at all (a hand-made config): one line for the image, as Docker shows
        entries.append(HistoryEntry(image_id, str(config.get("created") or ""), "",
                                    sum(layer.size for layer in layers), "",
                                    store.tags_of(image_id)))
    entries.reverse()
    return entries


# --- prune ---------------------------------------------------------------------------------

PRUNE_FILTERS = ("label", "until")


def prune_images(
    paths: Paths,
    all_images: bool,
    in_use: Callable[[str], list[str]],
    filters: dict[str, list[str]] | None = None,
    now: float | None = None,
) -> tuple[list[str], int]:
    """``docker image prune [-a]``: (Docker's report lines, bytes reclaimed).

    Dangling images (no tag) go; with ``all_images`` every image no container uses. Images
    that are the parent of another image are kept (deleting them is refused anyway), as the
    daemon only considers "top" images. Lines are ``untagged: REF`` / ``deleted: ID``.
    """
    import time as _time

    filters = filters or {}
    until: float | None = None
    if "until" in filters:
        until = until_timestamp(filters["until"][-1], _time.time() if now is None else now)
    store = ImageStore(paths)
    lines: list[str] = []
    reclaimed = 0
    with store.locked():
        ids = store.list_images()
        parents = {store.get_parent(i) for i in ids}
        for image_id in ids:
            if image_id in parents or store.children(image_id):
                continue
            refs = store.references(image_id)
            tags = [r for r in refs if "@" not in r]
            if tags and not all_images:
                continue
            if in_use(image_id):
                continue
            try:
                config = store.get_image_config(image_id)
            except MinidockError:
                continue
            if until is not None:
                created = parse_time(str(config.get("created") or ""))
                if created is None or created >= until:
                    continue
            if "label" in filters:
                labels = (config.get("config") or {}).get("Labels") or {}
                if not all(label_matches(labels, w) for w in filters["label"]):
                    continue
            sizes = {layer.chain_id: layer.size for layer in store.image_layers(image_id)}
            for r in refs:
                store.remove_tag(r)
                lines.append(f"untagged: {r}")
            removed = store.delete_image(image_id)
            lines.append(f"deleted: {image_id}")
            for chain in removed:
                lines.append(f"deleted: {chain}")
                reclaimed += sizes.get(chain, 0)
    return lines, reclaimed


def until_timestamp(value: str, now: float) -> float:
    """``until=`` as Docker reads it: a Go duration (``24h``, ``90m``) ago, a Unix timestamp
    or an RFC 3339 time."""
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms))+)", value)
    if m:
        seconds = 0.0
        for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", value):
            seconds += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return now - seconds
    try:
        return float(value)
    except ValueError:
        pass
    t = parse_time(value)
    if t is None:
        raise InvalidArgument(f"invalid filter 'until={value}'")
    return t


def parse_time(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (Go writes nanoseconds; Python's parser
    takes at most microseconds, so the extra digits are cut); None if it is not one."""
    import datetime

    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)?", value)
    if not m:
        return None
    zone = m.group(3) or "Z"
    text = m.group(1) + (m.group(2) or "")[:7] + ("+00:00" if zone in "Zz" else zone)
    try:
        return datetime.datetime.fromisoformat(text.replace("t", "T")).timestamp()
    except ValueError:
        return None
