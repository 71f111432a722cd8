"""Progress of `gateway ingest`: a tqdm bar on a terminal, plain periodic lines in a log or a pipe.

Both show the share of the file's bytes read, the rate and the time left, and how many
items were quarantined so far; the lines are for people reading a cron mail or a CI log,
where a redrawn bar would be noise.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm import tqdm


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000
    return f"{n:,.1f} GB"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class FileProgress:
    """Reports ``update(items, bytes read, outcomes)`` calls for one file of ``total`` bytes."""

    def __init__(self, name: str, total: int, *, stream: IO[str] | None = None, every: float = 10.0,
                 start_at: int = 0) -> None:
        self.name = name
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self._last_line = self.started
        self._start_at = start_at
        self._position = start_at
        self._items = 0
        self._outcomes: dict[str, int] = {}
        isatty = getattr(self.stream, "isatty", None)
        self._bar: Any = None
        if isatty is not None and isatty():
            self._bar = tqdm(total=total, initial=start_at, unit="B", unit_scale=True, unit_divisor=1000,
                             desc=name, file=self.stream, dynamic_ncols=True, leave=True, smoothing=0.1)

    def update(self, items: int, position: int, outcomes: dict[str, int]) -> None:
        position = min(max(position, self._position), self.total)
        self._items, self._outcomes = items, dict(outcomes)
        if self._bar is not None:
            self._bar.set_postfix(items=f"{items:,}", quarantined=f"{outcomes.get('quarantined', 0):,}",
                                  refresh=False)
            self._bar.update(position - self._position)
            self._position = position
            return
        self._position = position
        now = time.monotonic()
        if now - self._last_line >= self.every:
            self._last_line = now
            self._line(now)

    def _line(self, now: float, done: bool = False) -> None:
        elapsed = max(now - self.started, 1e-6)
        read = self._position - self._start_at
        rate = read / elapsed
        share = 100.0 if done else min(99.9, 100.0 * self._position / self.total)
        left = "" if done or rate <= 0 else f", about {_duration((self.total - self._position) / rate)} left"
        quarantined = self._outcomes.get("quarantined", 0)
        print(f"{self.name}: {share:.1f}% of {_size(self.total)}, {self._items:,} items, "
              f"{self._items / elapsed:,.0f} items/s ({_size(rate)}/s), {quarantined:,} quarantined"
              f"{left}" + (f", done in {_duration(elapsed)}" if done else ""), file=self.stream, flush=True)

    def close(self, *, complete: bool) -> None:
        if self._bar is not None:
            if complete:
                self._bar.update(self.total - self._position)
            self._bar.close()
            return
        if complete:
            self._position = self.total
        self._line(time.monotonic(), done=complete)
