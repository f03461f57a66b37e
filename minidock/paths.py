"""Where minidock keeps things. Nothing here touches the filesystem.

The defaults mirror Docker's: persistent data under /var/lib/minidock (Docker: /var/lib/docker),
per-boot state (bundles, runtime state, locks that must not survive a reboot) under
/run/minidock (Docker: /run/docker and /run/containerd). Both can be overridden with the
global ``--root`` / ``--run-root`` flags or MINIDOCK_ROOT / MINIDOCK_RUN_ROOT, which is how
the tests keep every run in a throwaway directory.
"""

from __future__ import annotations

import os

from minidock.records import record

DEFAULT_ROOT = "/var/lib/minidock"
DEFAULT_RUN_ROOT = "/run/minidock"


@record(frozen=True)
class Paths:
    root: str = DEFAULT_ROOT
    run_root: str = DEFAULT_RUN_ROOT

    @classmethod
    def from_env(cls, root: str | None = None, run_root: str | None = None) -> Paths:
        return cls(
            root=os.path.abspath(root or os.environ.get("MINIDOCK_ROOT") or DEFAULT_ROOT),
            run_root=os.path.abspath(
                run_root or os.environ.get("MINIDOCK_RUN_ROOT") or DEFAULT_RUN_ROOT
            ),
        )

    # overlay2 graph driver (Docker: <root>/overlay2)
    @property
    def overlay2(self) -> str:
        return os.path.join(self.root, "overlay2")

    # image and layer metadata (Docker: <root>/image/overlay2)
    @property
    def image_store(self) -> str:
        return os.path.join(self.root, "image", "overlay2")

    @property
    def containers(self) -> str:
        return os.path.join(self.root, "containers")

    @property
    def tmp(self) -> str:
        return os.path.join(self.root, "tmp")

    # OCI bundles the engine writes for the runtime (Docker/containerd: /run/containerd/...)
    @property
    def bundles(self) -> str:
        return os.path.join(self.run_root, "bundles")

    # runtime state, one directory per container (runc: /run/runc/<id>)
    @property
    def runtime_state(self) -> str:
        return os.path.join(self.run_root, "runtime")

    @property
    def locks(self) -> str:
        return os.path.join(self.run_root, "locks")

    # a build's private files (a context from stdin, ADD downloads), one directory per build
    @property
    def builds(self) -> str:
        return os.path.join(self.run_root, "builds")
