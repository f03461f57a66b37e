"""A container's standard streams, as bytes: relayed to ours, and kept in its json-file log.

    io.py        a foreground container wired to our terminal (-t: its pty, raw mode,
                 SIGWINCH) or to our pipes (stdin with -i, signals passed on to its init)
    jsonlog.py   the json-file log writer of a foreground run (a detached container's
                 monitor, native/monitor.c, writes the same lines)
    logs.py      the json-file log reader: ``logs`` (--tail, --since, -f)

Nothing here knows a container record: callers pass file descriptors and log paths. The
commands that find a container first and then use these (``start -a``, ``attach``,
``exec``) live in minidock.engine.containers. Each module is imported by the command that
needs it, never from here: a foreground run loads io.py and jsonlog.py alone.
"""
