"""Measure how late the event loop wakes up: the proof that no work blocks it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class LoopLag:
    """Worst and total lateness of a ticker that asks to wake every ``interval`` seconds."""

    interval: float = 0.01
    worst: float = 0.0
    ticks: int = 0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - expected)
            self.ticks += 1


@asynccontextmanager
async def measure_loop_lag(interval: float = 0.01) -> AsyncIterator[LoopLag]:
    """Measure the loop's lateness while the ``async with`` body runs."""
    lag = LoopLag(interval)
    watcher = asyncio.create_task(lag.watch(), name="loop-lag")
    try:
        yield lag
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
