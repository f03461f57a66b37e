"""Reading Docker's json-file logs, which the monitor (native/monitor.c) writes.

One JSON object per line, keys in this order, a line of output per object (split at
newlines, or every 16 KiB of a longer line; "log" keeps the newline when there was one):

    {"log":"hi\\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}

The writer appends whole lines with O_APPEND; a reader that meets a last line without its
newline has caught a write in progress and reads it again on its next round.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from minidock.errors import InvalidArgument
from minidock.records import record

FOLLOW_INTERVAL = 0.05


@record(frozen=True)
class Entry:
    stream: str  # "stdout" or "stderr"
    text: str
    time: str  # RFC3339Nano as written (UTC)

    @property
    def time_ns(self) -> int:
        return parse_rfc3339_ns(self.time)

    def fixed_time(self) -> str:
        """docker logs -t: RFC3339Nano with all nine digits (docker/cli RFC3339NanoFixed)."""
        base, _, frac = self.time.rstrip("Z").partition(".")
        return f"{base}.{frac.ljust(9, '0')[:9]}Z"


def parse_rfc3339_ns(value: str) -> int:
    """Nanoseconds since the epoch of a UTC ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", value)
    if not m:
        return 0
    secs = calendar.timegm((*(int(g) for g in m.groups()[:6]), 0, 0, 0))
    return secs * 1_000_000_000 + int((m.group(7) or "0").ljust(9, "0"))


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_since(value: str, now: float | None = None) -> int:
    """Docker's --since/--until: a Go duration before now (10m, 1h30m), a unix timestamp
    (1700000000 or 1700000000.5), or an RFC 3339 date or time. Nanoseconds since the epoch."""
    now = time.time() if now is None else now
    text = value.strip()
    if text and _DURATION.sub("", text) == "" and ":" not in text:
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(text))
        return int((now - seconds) * 1e9)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        whole, _, frac = text.partition(".")
        return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0")[:9] or 0)
    iso = text.replace("Z", "+00:00").replace("z", "+00:00")
    m = re.match(r"(.*?\.\d{6})\d*(.*)", iso)  # Python 3.10 takes at most 6 fraction digits
    if m:
        iso = m.group(1) + m.group(2)
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise InvalidArgument(f'invalid value for "since": failed to parse value as time or '
                              f'duration: "{value}"') from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time, as Docker reads a time without a zone
    ns = int(dt.astimezone(timezone.utc).timestamp()) * 1_000_000_000
    return ns + dt.microsecond * 1000


def _parse(line: bytes) -> Entry | None:
    try:
        doc = json.loads(line)
        return Entry(stream=doc.get("stream", "stdout"), text=doc.get("log", ""),
                     time=doc.get("time", ""))
    except (ValueError, AttributeError):
        return None  # a damaged line is skipped, as Docker's reader does


def _complete_lines(f: object, offset: int) -> tuple[list[bytes], int]:
    """The complete lines from ``offset``; the new offset (after the last newline)."""
    f.seek(offset)  # type: ignore[attr-defined]
    data: bytes = f.read()  # type: ignore[attr-defined]
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end


def read(path: str, tail: int | None = None, since_ns: int | None = None
         ) -> tuple[list[Entry], int]:
    """The entries so far (the last ``tail`` of them, none older than ``since_ns``) and the
    offset where following goes on."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return [], 0
    with f:
        lines, offset = _complete_lines(f, 0)
    keep: deque[Entry] = deque(maxlen=tail) if tail is not None and tail >= 0 else deque()
    for line in lines:
        entry = _parse(line)
        if entry is None or (since_ns is not None and entry.time_ns < since_ns):
            continue
        keep.append(entry)
    return list(keep), offset


def follow(path: str, offset: int, finished: Callable[[], bool]) -> Iterator[Entry]:
    """Entries written after ``offset`` until ``finished()`` says no more will come (the
    container has stopped), then whatever was still written before that."""
    while True:
        done = finished()  # asked first: a line written before it stopped is still read
        try:
            with open(path, "rb") as f:
                lines, offset = _complete_lines(f, offset)
        except FileNotFoundError:
            lines = []
        for line in lines:
            entry = _parse(line)
            if entry is not None:
                yield entry
        if done:
            return
        if not lines:
            time.sleep(FOLLOW_INTERVAL)


def end_offset(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
