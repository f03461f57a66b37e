"""Writing Docker's json-file log from Python: what the CLI of a foreground run does with
the output it relays (a detached container's monitor, native/monitor.c, writes the same
lines in C). Kept apart from :mod:`minidock.engine.stdio.logs` (the reader) so the run path
imports only os and time.
"""

from __future__ import annotations

import os
import time

LINE_MAX = 16384  # Docker's copier buffer: a longer line is split


def _escape(text: str) -> str:
    """moby's jsonlog escaping: control characters, <, > and & as \\u00XX (Go's
    encoding/json with HTML escaping), the rest as is (bad UTF-8 already became U+FFFD)."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or ch in "<>&" or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def rfc3339nano_now() -> str:
    """Go's RFC3339Nano in UTC: the fraction without trailing zeros."""
    ns = time.time_ns()
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (
        f".{frac}Z" if frac else "Z")


class JsonFileWriter:
    """Docker's json-file log driver, as native/monitor.c writes it for detached
    containers: one line per line of output (or per 16 KiB), appended with O_APPEND."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.pending[stream] + data
        lines = []
        while True:
            nl = buf.find(b"\n", 0, LINE_MAX)
            if nl >= 0:
                lines.append(buf[:nl + 1])
                buf = buf[nl + 1:]
            elif len(buf) >= LINE_MAX:
                lines.append(buf[:LINE_MAX])
                buf = buf[LINE_MAX:]
            else:
                break
        self.pending[stream] = buf
        self._emit(stream, lines)

    def _emit(self, stream: str, lines: list[bytes]) -> None:
        if not lines:
            return
        now = rfc3339nano_now()
        doc = "".join(
            f'{{"log":"{_escape(line.decode("utf-8", "replace"))}","stream":"{stream}",'
            f'"time":"{now}"}}\n' for line in lines)
        try:
            os.write(self.fd, doc.encode())
        except OSError:
            pass  # a full disk loses log lines, never the container

    def close(self) -> None:
        for stream, rest in self.pending.items():
            self._emit(stream, [rest] if rest else [])
        self.pending = {"stdout": b"", "stderr": b""}
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
