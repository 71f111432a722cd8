"""Login throttling: slow password guessing down per account and per client address.

Per account: after ``ACCOUNT_FREE`` consecutive failures each further attempt waits
``ACCOUNT_BASE_DELAY`` seconds, doubling per failure up to ``ACCOUNT_MAX_DELAY``;
a success clears the count. A lock only delays the account's login, it never disables
it, so an attacker can slow a user down but not shut the user out for long.
Per client address: more than ``ADDRESS_LIMIT`` failures within ``ADDRESS_WINDOW``
seconds lock that address out for ``ADDRESS_LOCK`` seconds, whichever account it tries.

While a lock holds, the password is not even checked (no Argon2 work for the attacker
to cause). State lives in memory and is bounded (``MAX_KEYS`` per kind, oldest evicted),
so a flood of made-up names or addresses cannot exhaust it; a restart clears it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

ACCOUNT_FREE = 5
ACCOUNT_BASE_DELAY = 30.0
ACCOUNT_MAX_DELAY = 15 * 60.0
ACCOUNT_FORGET = 3600.0  # failures older than this no longer count
ADDRESS_LIMIT = 20
ADDRESS_WINDOW = 600.0
ADDRESS_LOCK = 600.0
MAX_KEYS = 10_000


@dataclass(slots=True)
class _Account:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


@dataclass(slots=True)
class _Address:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an attempt may proceed; if not, for how long (seconds) and why."""

    allowed: bool
    retry_after: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed attempt changed: ``locked`` is set when it started a lock (audit that once)."""

    locked: str | None  # "account" | "address" | None
    retry_after: float = 0.0
    failures: int = 0


class LoginThrottle:
    """In-memory counters of failed logins by account and by address."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    @staticmethod
    def _bounded(table: OrderedDict, key: str, make: Callable[[], object]) -> object:  # type: ignore[type-arg]
        entry = table.get(key)
        if entry is None:
            entry = make()
            table[key] = entry
            while len(table) > MAX_KEYS:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return entry

    def check(self, user: str, address: str | None) -> Verdict:
        """May an attempt for ``user`` from ``address`` be checked now?"""
        now = self._clock()
        addr = self._addresses.get(address or "")
        if addr is not None and addr.locked_until > now:
            return Verdict(False, addr.locked_until - now, "too many failed logins from this address")
        acct = self._accounts.get(user)
        if acct is not None and acct.locked_until > now:
            return Verdict(False, acct.locked_until - now, "too many failed logins for this account")
        return Verdict(True)

    def failed(self, user: str, address: str | None) -> Failure:
        now = self._clock()
        locked: str | None = None
        retry = 0.0
        acct: _Account = self._bounded(self._accounts, user, _Account)  # type: ignore[assignment]
        if now - acct.last_failure > ACCOUNT_FORGET:
            acct.failures = 0
        acct.failures += 1
        acct.last_failure = now
        if acct.failures >= ACCOUNT_FREE:
            delay = min(ACCOUNT_MAX_DELAY, ACCOUNT_BASE_DELAY * 2 ** (acct.failures - ACCOUNT_FREE))
            acct.locked_until = now + delay
            locked, retry = "account", delay
        addr: _Address = self._bounded(self._addresses, address or "", _Address)  # type: ignore[assignment]
        addr.failures.append(now)
        while addr.failures and addr.failures[0] <= now - ADDRESS_WINDOW:
            addr.failures.popleft()
        if len(addr.failures) >= ADDRESS_LIMIT and addr.locked_until <= now:
            addr.locked_until = now + ADDRESS_LOCK
            locked, retry = "address", max(retry, ADDRESS_LOCK)
        return Failure(locked, retry, acct.failures)

    def succeeded(self, user: str) -> None:
        self._accounts.pop(user, None)
