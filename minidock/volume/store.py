"""The volume store: create, look up, list and remove local volumes (see the package)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

from minidock.errors import InvalidArgument, NotFound
from minidock.linux import flock
from minidock.paths import Paths
from minidock.storage.atomic import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any

#: Docker's local volume names (volume/local: validName)
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


_OPTIONS = ("type", "device", "o")
_REQUIRES = {"device": "type", "type": "device", "o": "type"}


def check_options(options: dict[str, str]) -> None:
    """The local driver's options (Docker's validateOpts): type, device and o, each with the
    ones it needs."""
    for key in options:
        if key not in _OPTIONS:
            raise InvalidArgument(f'invalid option key: "{key}"')
    for key, needed in _REQUIRES.items():
        if key in options and needed not in options:
            raise InvalidArgument(f'missing required option: "{needed}"')


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Volumes:
    def __init__(self, paths: Paths) -> None:
        self.top = os.path.join(paths.root, "volumes")
        self._meta = os.path.join(self.top, "metadata.json")

    # --- reading ---

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self._meta, "rb") as f:
                doc = json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise InvalidArgument(f"read {self._meta}: {e}") from None
        return doc if isinstance(doc, dict) else {}

    def names(self) -> list[str]:
        """Every volume, by name (a directory with _data, as Docker's driver lists them)."""
        try:
            entries = os.listdir(self.top)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if not n.startswith(".")
                      and os.path.isdir(os.path.join(self.top, n, "_data")))

    def exists(self, name: str) -> bool:
        return os.path.isdir(self.data(name))

    def data(self, name: str) -> str:
        """The directory a container mounts: <root>/volumes/<name>/_data."""
        return os.path.join(self.top, name, "_data")

    def is_anonymous(self, name: str) -> bool:
        return bool(self._read().get(name, {}).get("Anonymous"))

    def inspect(self, name: str) -> dict[str, Any]:
        """``volume inspect``'s object; NotFound as Docker says it."""
        if not self.exists(name):
            raise NotFound(f"get {name}: no such volume")
        meta = self._read().get(name, {})
        return {"CreatedAt": meta.get("CreatedAt") or _now(), "Driver": "local",
                "Labels": meta.get("Labels") or None,
                "Mountpoint": self.data(name), "Name": name,
                "Options": meta.get("Options") or None, "Scope": "local"}

    def size(self, name: str) -> int:
        """Bytes of the files in the volume (what prune reports as reclaimed)."""
        total = 0
        for dirpath, _, files in os.walk(self.data(name)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total

    # --- the local driver's mount options ---

    def options(self, name: str) -> dict[str, str]:
        return dict(self._read().get(name, {}).get("Options") or {})

    def mounted(self) -> list[str]:
        """The volumes whose type/device is mounted on their _data now."""
        if not os.path.exists(self._meta):
            return []
        return [n for n, meta in self._read().items()
                if meta.get("Options") and os.path.ismount(self.data(n))]

    def mount(self, name: str) -> None:
        """Mount a volume's device on its _data (``mount -t TYPE -o O DEVICE``), unless it
        has no options or is mounted already: what Docker's local driver does at first use."""
        opts = self.options(name)
        if not opts or os.path.ismount(self.data(name)):
            return
        import subprocess

        from minidock.linux import trace

        argv = ["mount", "-t", opts["type"], *(["-o", opts["o"]] if opts.get("o") else []),
                opts["device"], self.data(name)]
        trace.note(f"volume {name}: {' '.join(argv)}")
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise InvalidArgument(f"error while mounting volume '{self.data(name)}': "
                                  f"{r.stderr.strip() or 'mount failed'}")

    def unmount(self, name: str) -> None:
        if os.path.ismount(self.data(name)):
            import subprocess

            subprocess.run(["umount", self.data(name)], capture_output=True)

    # --- changing ---

    def _locked(self) -> AbstractContextManager[None]:
        os.makedirs(self.top, 0o701, exist_ok=True)
        return flock.locked(os.path.join(self.top, ".lock"))

    def create(self, name: str | None = None, labels: dict[str, str] | None = None,
               anonymous: bool = False, options: dict[str, str] | None = None) -> str:
        """A volume named ``name`` (a new 64-hex name when None); an existing one is kept as
        it is, as Docker's ``volume create`` of a name that exists. ``options``: the local
        driver's type/device/o, mounted on _data while a container uses the volume."""
        options = dict(options or {})
        check_options(options)
        if name is None:
            name, anonymous = os.urandom(32).hex(), True
        elif not NAME_RE.match(name):
            raise InvalidArgument(
                f'create {name}: "{name}" includes invalid characters for a local volume '
                'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass '
                "a host directory, use absolute path")
        with self._locked():
            if self.exists(name):
                return name
            os.makedirs(os.path.join(self.top, name), 0o701, exist_ok=True)
            os.mkdir(self.data(name), 0o755)
            meta = self._read()
            meta[name] = {"CreatedAt": _now(), "Labels": labels or {}, "Options": options,
                          **({"Anonymous": True} if anonymous else {})}
            atomic_write(self._meta, json.dumps(meta, sort_keys=True).encode(), 0o600)
        return name

    def remove(self, name: str) -> None:
        """The volume and its data go (the caller has checked nobody uses it)."""
        if not self.exists(name):
            raise NotFound(f"get {name}: no such volume")
        self.unmount(name)
        with self._locked():
            meta = self._read()
            if meta.pop(name, None) is not None:
                atomic_write(self._meta, json.dumps(meta, sort_keys=True).encode(), 0o600)
            # the name first, so a remove killed half-way leaves no half volume listed
            trash = os.path.join(self.top, f".removing-{name}")
            os.rename(os.path.join(self.top, name), trash)
            shutil.rmtree(trash)
