"""A per-destination circuit breaker: stop sending to a counterpart that keeps failing, probe it, resume at once.

closed     every delivery is sent; ``failure_threshold`` retryable failures in a row open it.
open       nothing is sent; when the probe interval has passed the breaker turns half-open.
half_open  exactly one probe goes out (a delivery, or the sink's health request). Success
           closes the breaker — the worker then makes every waiting delivery due and drains at
           full speed; failure opens it again with the interval doubled, up to ``probe_max``.

Only failures that say the counterpart is unwell count (timeouts, refused connections, 5xx,
429): a record the counterpart refuses as it is (a permanent error) proves it is up. The
breaker is plain state with an injectable clock; the worker (``gateway.pipeline.delivery``)
owns it, logs and counts its transitions and writes its state to the store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
"""The value of the circuit-state gauge for each state."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of state, for the worker to log, count and store."""

    destination: str
    before: str
    after: str
    reason: str
    failures: int  # consecutive failures when it happened
    next_probe_at: float | None  # when the breaker will probe next (open only)
    open_for: float | None = None  # seconds it had been open (closing only)
    probes: int = 0  # probes made while it was open (closing only)


class CircuitBreaker:
    """The breaker of one destination."""

    def __init__(self, destination: str, *, failure_threshold: int = 5, probe_initial: float = 2.0,
                 probe_max: float = 10.0, clock: Callable[[], float] = time.time,
                 jitter: Callable[[float], float] | None = None) -> None:
        if failure_threshold < 1 or probe_initial <= 0 or probe_max < probe_initial:
            raise ValueError("circuit breaker needs failure_threshold >= 1 and 0 < probe_initial <= probe_max")
        self.destination = destination
        self.failure_threshold = failure_threshold
        self.probe_initial = probe_initial
        self.probe_max = probe_max
        self._clock = clock
        # Several gateway processes probing one counterpart should not probe in step.
        self._jitter = jitter or (lambda seconds: random.uniform(0.8, 1.0) * seconds)
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.interval = probe_initial
        self.next_probe_at: float | None = None
        self.opened_at: float | None = None
        self.probes = 0

    @property
    def sending(self) -> bool:
        """Whether ordinary deliveries may go out now."""
        return self.state == CLOSED

    def until_probe(self) -> float:
        """Seconds until the next probe is due (0 when due now, or when not open)."""
        if self.state != OPEN or self.next_probe_at is None:
            return 0.0
        return max(0.0, self.next_probe_at - self._clock())

    def begin_probe(self) -> Transition | None:
        """Open and its interval passed: go half-open (the caller sends one probe)."""
        if self.state != OPEN or self.until_probe() > 0:
            return None
        self.probes += 1
        return self._move(HALF_OPEN, f"probe {self.probes} after {self.interval:g}s")

    def success(self) -> Transition | None:
        """The counterpart answered; closes the breaker when it was not closed."""
        self.failures = 0
        if self.state == CLOSED:
            return None
        now = self._clock()
        open_for = now - self.opened_at if self.opened_at is not None else None
        probes = self.probes
        self.interval = self.probe_initial
        self.next_probe_at = None
        self.opened_at = None
        self.probes = 0
        t = self._move(CLOSED, "the counterpart answered" + (" the probe" if probes else ""))
        return Transition(t.destination, t.before, t.after, t.reason, t.failures, None, open_for, probes)

    def failure(self, error: str) -> Transition | None:
        """A failure that says the counterpart is unwell; opens the breaker at the threshold or on a failed probe."""
        self.failures += 1
        now = self._clock()
        if self.state == CLOSED:
            if self.failures < self.failure_threshold:
                return None
            self.opened_at = now
            self.interval = self.probe_initial
            self.next_probe_at = now + self._jitter(self.interval)
            return self._move(OPEN, f"{self.failures} failures in a row, the last: {error}")
        if self.state == HALF_OPEN:
            self.interval = min(self.probe_max, self.interval * 2)
            self.next_probe_at = now + self._jitter(self.interval)
            return self._move(OPEN, f"probe {self.probes} failed: {error}")
        return None  # already open: a send that started before it opened

    def _move(self, after: str, reason: str) -> Transition:
        before, self.state = self.state, after
        return Transition(self.destination, before, after, reason, self.failures,
                          self.next_probe_at if after == OPEN else None)
