"""check_consumed_queue: finish batches whose bytes were handed off but not confirmed.

Our transfer methods (local, rsync, http) finish during the hand-off, so a consumed batch
has all its bytes in the peer's staging area: what can remain is telling the peer STAGED,
when consume_queue could not (the peer went away right after the bytes arrived, or the
process stopped in between). This task does that, batch by batch, for enabled peers; a
peer that still cannot be reached keeps its batches for the next run, which is not a
problem of the run; a peer that refuses is one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from librarian_async.config import CheckConsumedQueueConfig
from librarian_async.db import queue
from librarian_async.db.models import SendQueueItem
from librarian_async.errors import NotFoundError, PeerError, PeerUnreachableError
from librarian_async.tasks.base import Report, TaskContext
from librarian_async.tasks.queued_batches import PeerClients, finish_batch

log = logging.getLogger(__name__)
PAGE = 64


async def run(task: TaskContext, params: CheckConsumedQueueConfig) -> Report:
    """Tell peers STAGED for consumed, unfinished batches and complete them.

    Reads: consumed, not completed, not failed ``send_queue`` items whose consumer's lease
    has ended (keyset on id).
    Writes: their transfers (STAGED, or FAILED where the peer refuses one), the items
    (completed) and ``completed_transfers``. Safe to rerun: a peer answers a repeated
    STAGED for a transfer already STAGED as modified, and our moves are conditional.
    """
    unreachable: set[str] = set()
    async with PeerClients(task.app) as clients:
        after_id = 0
        while not task.budget.spent():
            page = await _page(task, after_id)
            if not page:
                break
            after_id = page[-1].id
            for item in page:
                if item.destination not in unreachable and not task.budget.spent():
                    await _check(task, clients, item, unreachable)
    return task.report


async def _page(task: TaskContext, after_id: int) -> Sequence[SendQueueItem]:
    async with task.app.sessions() as session:
        return await queue.consumed_items(
            session, now=task.app.now(), after_id=after_id, limit=PAGE
        )


async def _check(
    task: TaskContext, clients: PeerClients, item: SendQueueItem, unreachable: set[str]
) -> None:
    try:
        client = await clients.client_for(item.destination)
        staged = await finish_batch(task.app, item.id, client)
    except PeerUnreachableError as error:
        log.warning("check_consumed_queue: %s unreachable: %s", item.destination, error)
        unreachable.add(item.destination)
        task.report.add("peer_unreachable")
    except (PeerError, NotFoundError) as error:
        task.report.problem(f"check_consumed_queue: batch {item.id} to {item.destination}: {error}")
    else:
        task.report.add("batches_completed")
        task.report.add("staged", staged)
