"""The headless command's progress line: redrawn in place on a terminal, a line every
10 s in a log file."""
from __future__ import annotations

import time
from typing import TextIO


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """One status line on ``stream``, redrawn in place (``\\r``) at most 5 times a second;
    where the stream is not a terminal (a log file), a new line every 10 s instead."""

    def __init__(self, total: int, stream: TextIO, enabled: bool = True):
        self.total, self.stream, self.enabled = total, stream, enabled
        self.tty = enabled and stream.isatty()
        self.interval = 0.2 if self.tty else 10.0
        self.start = self._last = time.perf_counter()
        self._width = 0

    def update(self, done: int, loss: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < self.interval and done < self.total):
            return
        self._last = now
        rate = done / max(now - self.start, 1e-9)
        eta = clock((self.total - done) / rate) if rate > 0 else "?"
        line = (f"step {done}/{self.total}  {100 * done / self.total:3.0f}%  {rate:.1f} steps/s  "
                f"loss {loss:.4g}  ETA {eta}")
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own, above the status line (which the next update redraws)."""
        if not self.enabled:
            return
        self.close()
        self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Erase the status line, so what is printed next starts on a clean line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


__all__ = ["Progress", "clock"]
