"""``pull`` and ``push``: images between the store and a registry.

The wire (HTTP API v2, auth, TLS, manifests) is :mod:`minidock.image.distribution`; this
package is the engine's side of it: what goes into or out of the store, and what is printed::

    pull.py       pull, pull_missing   manifest -> platform -> config -> layers downloaded 3 at
                                       a time while applied in order -> image, tag, digest
    push.py       push                 layers (reused, mounted or rebuilt and uploaded) ->
                                       config -> schema2 manifest -> repo@digest
    metadata.py   DistributionMetadata which blob is which DiffID, from which repository:
                                       pull writes it, push reads it to skip and mount blobs
    progress.py   PullOutput           the per-layer lines and bars both print
    client.py     registry_client      a registry client with this engine's settings and logins
"""

from __future__ import annotations

from minidock.engine.distribution.metadata import DistributionMetadata
from minidock.engine.distribution.progress import PullOutput, progress_bar
from minidock.engine.distribution.pull import PullResult, pull, pull_missing
from minidock.engine.distribution.push import PushResult, push

__all__ = [
    "DistributionMetadata",
    "PullOutput",
    "PullResult",
    "PushResult",
    "progress_bar",
    "pull",
    "pull_missing",
    "push",
]
