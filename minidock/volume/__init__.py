"""Volumes: Docker's ``local`` driver, named and anonymous volumes under ``<root>/volumes``.

    <root>/volumes/<name>/_data      the directory a container sees at the mount point
    <root>/volumes/metadata.json     every volume's CreatedAt, Labels, Options and whether it
                                     is anonymous (Docker keeps the same in metadata.db, a
                                     BoltDB file, beside the same <name>/_data directories)
    <root>/volumes/.lock             flock around changes to metadata.json

A volume created with the local driver's options (``-o type=tmpfs -o device=tmpfs -o
o=size=10m``, an NFS export, a disk) has that device mounted on its _data while a container
uses it (``mount``/``unmount``; the engine counts the users).

This package knows volumes only; which containers use one is the engine's question
(``engine/volumes.py`` reads the containers' mount points).
"""

from __future__ import annotations

from minidock.volume.store import NAME_RE, Volumes

__all__ = ["NAME_RE", "Volumes"]
