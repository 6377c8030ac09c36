"""Early runs: a task that leaves work for another entry of its scheduler wakes that entry.

``send_clone`` queues batches for ``consume_queue``; with both on hourly schedules, a batch
would otherwise wait up to an hour before its bytes move. A woken entry starts its next run
at once, or as soon as its current run ends (runs of one entry still never overlap); its
``every`` remains the longest wait between runs. Only entries of the same process listen;
under ``serve`` the API shares the runner's wakeups, so that a ``checkin/update`` to STAGED
wakes ``receive_clone``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class Wakeups:
    """The wake-up events of the entries that listen, per task type."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def listening(self, task_type: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``task_type`` is woken, for as long as the block lasts."""
        event = asyncio.Event()
        listeners = self._listeners.setdefault(task_type, set())
        listeners.add(event)
        try:
            yield event
        finally:
            listeners.discard(event)

    def wake(self, task_type: str) -> None:
        """Ask every listening entry of ``task_type`` to run now (a no-op if none listens)."""
        for event in self._listeners.get(task_type, ()):
            event.set()


async def wait_first(
    events: Iterable[asyncio.Event],
    tasks: Iterable[asyncio.Future[Any]] = (),
    at_most: float | None = None,
) -> None:
    """Return once one of ``events`` is set or one of ``tasks`` has ended, or after
    ``at_most`` seconds; the tasks are left as they are."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait({*waits, *tasks}, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
