"""The daemonless engine: images and containers, as Docker's daemon would manage them.

Each CLI call loads what it needs from disk, does its work under the right locks and
exits; there is no long-lived process. Containers reach the runtime only through an OCI
bundle (see minidock.runtime).
"""
