"""Waiting for work: sleep until woken, stopped, or the time is up."""

from __future__ import annotations

import asyncio


async def sleep_or(stopping: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``; return early when woken or stopping."""
    if wake.is_set():
        wake.clear()
        return
    waiters = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    wake.clear()
