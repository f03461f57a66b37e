"""minidock: a daemonless container engine, written to show what containers really are."""

__version__ = "0.1.0"
