"""Pull and push progress, drawn as docker/cli's jsonmessage draws it."""

from __future__ import annotations

import threading
import time
from typing import TextIO


def _size(n: float) -> str:
    """go-units HumanSize: decimal units, 4 significant digits (``2.34MB``, ``32.77kB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


def progress_bar(current: int, total: int, width: int = 50) -> str:
    """``[=====>      ]  1.2MB/3.4MB``, as docker/cli's JSONProgress draws it.

    The bar is ``width`` cells of "=" for every 2 %, then ">" (always there, even at 0 % and
    100 %), and the sizes right-aligned in 8 columns.
    """
    if total <= 0:
        return f"{_size(current):>8}"
    done = min(width, int(current * 100 / total) // 2)
    return f"[{'=' * done}>{' ' * (width - done)}] {_size(current):>8}/{_size(total)}"


class PullOutput:
    """Docker's pull output: header lines, a line per layer, then Digest and Status.

    On a terminal each layer's line is redrawn in place (cursor up, clear line, write,
    cursor down), at most every 100 ms per layer unless its status changes; otherwise only
    a layer's final status is printed, one plain line each. Threads call :meth:`layer`.
    """

    _INTERVAL = 0.1

    def __init__(self, out: TextIO | None, quiet: bool = False, tty: bool | None = None) -> None:
        self.out = out
        self.quiet = quiet or out is None
        self.tty = bool(tty if tty is not None else (out is not None and out.isatty()))
        self._ids: list[str] = []
        self._state: dict[str, tuple[str, float]] = {}
        self._downloaded: set[str] = set()
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        if self.quiet or self.out is None:
            return
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def layers(self, ids: list[str], initial: dict[str, str]) -> None:
        """Announce the layers (Docker: 12 hex digits of the blob digest)."""
        self._ids = ids
        for i in ids:
            self._state[i] = (initial[i], 0.0)
        if self.quiet or self.out is None:
            return
        with self._lock:
            for i in ids:
                if self.tty or initial[i] == "Already exists":
                    self.out.write(f"{i}: {initial[i]}\n")
            self.out.flush()

    def layer(self, layer_id: str, status: str, current: int = 0, total: int = 0,
              final: bool = False) -> None:
        if self.quiet or self.out is None:
            return
        text = f"{status} {progress_bar(current, total)}" if total else status
        now = time.monotonic()
        with self._lock:
            if status == "Download complete":
                self._downloaded.add(layer_id)
            elif status == "Extracting" and layer_id not in self._downloaded:
                return  # one bar per line: the download's, until it is complete
            old_status, last = self._state.get(layer_id, ("", 0.0))
            same_kind = old_status.split(" ", 1)[0] == status.split(" ", 1)[0]
            if same_kind and not final and now - last < self._INTERVAL:
                return
            self._state[layer_id] = (text, now)
            if self.tty:
                up = len(self._ids) - self._ids.index(layer_id)
                self.out.write(f"\x1b[{up}A\r\x1b[2K{layer_id}: {text}\x1b[{up}B\r")
            elif final:
                self.out.write(f"{layer_id}: {status}\n")
            else:
                return
            self.out.flush()
