"""Waiting for work: sleep until woken, stopped, or the time is up."""

from __future__ import annotations

import asyncio

FOLLOWER_GATHER = 0.05
"""How long a follower lets commits gather after it was woken, before it reads them. With one record
per push each commit woke it for a read round and a transaction of its own, per record; 50 ms folds
what arrives meanwhile in one step, and links and alerts come that much later."""


async def sleep_or(stopping: asyncio.Event, wake: asyncio.Event, seconds: float, gather: float = 0.0) -> None:
    """Sleep up to ``seconds``; return early when woken or stopping. Woken, wait ``gather`` seconds
    more (unless stopping) so that what is committed meanwhile is read in the same step."""
    if not wake.is_set():
        waiters = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
    if wake.is_set() and gather > 0 and not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), gather)
        except TimeoutError:
            pass
    wake.clear()
