"""consume_queue: hand queued batches to their transfer method and move their bytes.

For each due batch (highest priority, then oldest; peers with transfers disabled are left
alone), at most ``peer_inflight_limit`` batches at a time per peer; a batch that becomes due
during the run (send_clone wakes the run when it queues one) starts beside those in flight:

1. claim it (counts the attempt and leases the batch, see :mod:`librarian_async.db.queue`);
2. ``checkin/update`` ONGOING on the peer, our rows ONGOING (rows the peer refuses fail);
3. the transfer method moves the bytes (local copy, rsync or http upload);
4. the batch is consumed; then at once ``checkin/update`` STAGED and the batch completed.

Our methods finish during the hand-off, so step 4 needs no later status poll; when the peer
cannot be told (step 4 fails), the batch's lease is released and check_consumed_queue
finishes it on a later run (never before: the lease keeps the two apart, see
:mod:`librarian_async.db.queue`).
A failed attempt (any exception, a refusal, an unreachable peer) is retried after an
exponential backoff; after ``max_queue_retries`` retries the batch fails on both sides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from librarian_async.config import ConsumeQueueConfig
from librarian_async.db import queue, transfers
from librarian_async.db.models import SendQueueItem
from librarian_async.enums import TransferStatus
from librarian_async.errors import PeerError, TransferError
from librarian_async.remote import schemas as wire
from librarian_async.remote.client import PeerClient
from librarian_async.tasks.base import Report, TaskContext
from librarian_async.tasks.queued_batches import PeerClients, fail_batch, finish_batch
from librarian_async.transfer import METHODS
from librarian_async.transfer.base import FileMove, VerifiedStats
from librarian_async.wakeups import wait_first

log = logging.getLogger(__name__)
S = TransferStatus

PAGE = 64
LEASE = timedelta(hours=1)
"""A claimed batch is due again after this long if its hand-off never finished (a crash)."""
BACKOFF_BASE = timedelta(seconds=60)
BACKOFF_MAX = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: 1, 2, 4 ... minutes."""
    wait: timedelta = BACKOFF_BASE * 2 ** max(0, attempts - 1)
    return min(wait, BACKOFF_MAX)


async def run(task: TaskContext, params: ConsumeQueueConfig) -> Report:
    """Move the bytes of due send-queue batches to their peers.

    Reads: due ``send_queue`` items to enabled peers, their outgoing transfers.
    Writes: the items (attempts, backoff, consumed, completed or failed), the transfers
    (ONGOING, STAGED or FAILED), ``completed_transfers``.
    A rerun is safe: a batch is claimed before any byte moves, a repeated hand-off
    overwrites what a failed one left in staging, and state moves are conditional.
    """
    async with PeerClients(task.app) as clients:
        consumer = Consumer(task, clients)
        await consumer.consume_all()
    return task.report


class Consumer:
    def __init__(self, task: TaskContext, clients: PeerClients) -> None:
        self.task, self.app, self.clients = task, task.app, clients
        self.report = task.report
        self.limits: dict[str, asyncio.Semaphore] = {}
        self.started: set[int] = set()  # never twice in one run, even if still due

    async def consume_all(self) -> None:
        """Keep up to :data:`PAGE` due batches started (each waits for its peer's in-flight
        limit); look for more whenever one ends or send_clone queues one, until none is left.
        """
        running: dict[asyncio.Task[None], int] = {}  # -> the id of the task's batch
        with self.app.wakeups.listening("consume_queue") as queued:
            async with asyncio.TaskGroup() as group:
                while not self.task.budget.spent():
                    queued.clear()
                    for item in await self._new_due(PAGE - len(running), [*running.values()]):
                        running[group.create_task(self._consume_limited(item))] = item.id
                    running = {task: i for task, i in running.items() if not task.done()}
                    if not running:
                        return
                    await wait_first([queued], running)

    async def _new_due(self, room: int, in_flight: list[int]) -> list[SendQueueItem]:
        """At most ``room`` due batches this run has not started. A batch it ended is no
        longer due (consumed, failed or waiting for its retry), so the query leaves out only
        those in flight: a list of at most :data:`PAGE` ids, whatever the run's length."""
        if room <= 0:
            return []
        async with self.app.sessions() as session:
            page = await queue.due_items(
                session, now=self.app.now(), after_ids=in_flight, limit=room
            )
        fresh = [item for item in page if item.id not in self.started]
        self.started.update(item.id for item in fresh)
        return fresh

    async def _consume_limited(self, item: SendQueueItem) -> None:
        limit = self.limits.setdefault(
            item.destination, asyncio.Semaphore(self.app.settings.peer_inflight_limit)
        )
        async with limit:
            if not self.task.budget.spent():
                await self.consume(item)

    async def consume(self, item: SendQueueItem) -> None:
        if not await self._claim(item):
            return
        attempts = item.retries + 1
        try:
            client = await self.clients.client_for(item.destination)
            seconds, verified = await self._hand_off(item, client)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # every failure counts as an attempt; none blocks the queue
            await self._attempt_failed(item, attempts, error)
            return
        await self._consumed(item, seconds)
        await self._finish(item, client, verified)

    async def _claim(self, item: SendQueueItem) -> bool:
        now = self.app.now()
        async with self.app.sessions.begin() as session:
            return await queue.claim(session, item.id, now=now, lease_until=now + LEASE)

    async def _hand_off(
        self, item: SendQueueItem, client: PeerClient
    ) -> tuple[float, VerifiedStats]:
        """Tell the peer ONGOING and move the bytes of the batch's live transfers; the
        seconds it took, and the files the method verified itself."""
        method = METHODS.get(item.transfer_method)
        if method is None:
            raise TransferError(f"unknown transfer method {item.transfer_method!r}")
        live = await self._mark_ongoing(item, client)
        moves = [
            move
            for move in map(FileMove.from_json, item.transfer_data.get("files", []))
            if move.source_transfer_id in live
        ]
        started = time.monotonic()
        verified = await method.send(item.transfer_data.get("fields", {}), moves, client)
        return time.monotonic() - started, verified

    async def _mark_ongoing(self, item: SendQueueItem, client: PeerClient) -> set[int]:
        """Our ids of the batch's transfers that both sides now hold ONGOING."""
        async with self.app.sessions() as session:
            rows = await queue.live_transfers_of(session, item.id, (S.INITIATED, S.ONGOING))
        remote = {row.remote_transfer_id: row.id for row in rows}
        request = wire.CheckinUpdateRequest(
            destination_transfer_ids=[i for i in remote if i is not None], new_status=S.ONGOING
        )
        answer = await client.checkin_update(request) if remote else None
        confirmed = set(answer.modified_destination_transfer_ids) if answer else set()
        ongoing = [ours for theirs, ours in remote.items() if theirs in confirmed]
        refused = [ours for theirs, ours in remote.items() if theirs not in confirmed]
        reason = "the peer refused ONGOING: " + "; ".join(answer.reasons if answer else [])[:500]
        async with self.app.sessions.begin() as session:
            await transfers.move_outgoing(session, ongoing, S.ONGOING, at=self.app.now())
            await transfers.move_outgoing(
                session, refused, S.FAILED, at=self.app.now(), reason=reason
            )
        if refused:
            self.report.add("failed", len(refused))
        return set(ongoing)

    async def _attempt_failed(self, item: SendQueueItem, attempts: int, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        log.warning(
            "batch %d to %s: attempt %d failed: %s", item.id, item.destination, attempts, message
        )
        if attempts > self.app.settings.max_queue_retries:
            await self._give_up(item, attempts, message)
            return
        async with self.app.sessions.begin() as session:
            await queue.retry_later(
                session, item.id, error=message, at=self.app.now() + backoff(attempts)
            )
        self.report.add("retry_later")

    async def _give_up(self, item: SendQueueItem, attempts: int, message: str) -> None:
        reason = f"batch {item.id} failed after {attempts} attempts: {message}"
        client = await self._client_or_none(item.destination)
        failed = await fail_batch(self.app, item.id, reason, client)
        self.report.add("batches_failed")
        self.report.add("failed", failed)
        self.report.problem(f"consume_queue: {reason}")

    async def _client_or_none(self, name: str) -> PeerClient | None:
        try:
            return await self.clients.client_for(name)
        except Exception:  # the peer is gone from our table: nobody to tell
            return None

    async def _consumed(self, item: SendQueueItem, seconds: float) -> None:
        async with self.app.sessions.begin() as session:
            fresh = await session.get(SendQueueItem, item.id, populate_existing=True)
            if fresh is not None:
                await queue.mark_consumed(session, fresh, now=self.app.now(), seconds=seconds)
        files = item.transfer_data.get("files", [])
        self.report.add("batches_sent")
        self.report.add("bytes", sum(int(f.get("size", 0)) for f in files))

    async def _finish(
        self, item: SendQueueItem, client: PeerClient, verified: VerifiedStats
    ) -> None:
        try:
            staged = await finish_batch(self.app, item.id, client, verified)
        except PeerError as error:
            log.warning("batch %d: %s not told STAGED yet: %s", item.id, item.destination, error)
            async with self.app.sessions.begin() as session:
                await queue.release(session, item.id, error=f"STAGED not confirmed: {error}")
            self.report.add("awaiting_check")
            return
        self.report.add("staged", staged)
