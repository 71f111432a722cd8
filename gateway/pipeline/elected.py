"""Work that must run in one process at a time (the sealer, the supervision and exchange followers).

With several gateway processes on one store each one starts them all, but only the process
that leads a role (``Store.lead``: a PostgreSQL advisory lock held by its session) runs that
role's loop; the others ask again every few seconds and take over when the leader's session
ends — when it stops, or dies. On a store that one process uses, every role leads at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.pipeline._waiting import sleep_or

log = logging.getLogger("gateway")
CHECK_EVERY = 5.0  # seconds between checks that the lead is still held, and between tries to take it


async def while_leading(store: Any, role: str, run: Callable[[asyncio.Event], Awaitable[None]],
                        stopping: asyncio.Event, *, check_every: float = CHECK_EVERY) -> None:
    """Run ``run(until)`` whenever this process leads ``role``, until ``stopping`` is set."""
    never = asyncio.Event()
    announced = False
    try:
        while not stopping.is_set():
            try:
                leading = await store.lead(role)
            except Exception as exc:  # the store is away: try again, run nothing meanwhile
                log.warning("cannot ask who leads %s: %s", role, exc)
                leading = False
            if not leading:
                if not announced:
                    log.info("%s runs in another gateway process; this one takes over if that one stops", role)
                    announced = True
                await sleep_or(stopping, never, check_every)
                continue
            log.info("this gateway process leads %s", role)
            announced = False
            until = asyncio.Event()
            task = asyncio.create_task(run(until), name=f"{role}:lead")
            while not stopping.is_set() and not task.done():
                await sleep_or(stopping, never, check_every)
                if stopping.is_set() or task.done():
                    break
                try:
                    still = await store.lead(role)
                except Exception:
                    still = True  # a store hiccup is not a lost lead: the session check decides next time
                if not still:
                    log.warning("this gateway process lost the lead of %s (its database session ended)", role)
                    break
            until.set()
            await task  # a graceful end: the sealer seals what is left, a follower finishes its batch
            if stopping.is_set():
                return
    finally:
        try:
            await store.resign(role)
        except Exception:
            log.debug("resigning %s failed", role, exc_info=True)
