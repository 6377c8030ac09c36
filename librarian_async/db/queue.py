"""The send queue, named by intent: claim a due batch, record its hand-off, finish or fail it.

Callers own the transaction. A batch is *due* when it is neither consumed nor failed and its
``next_attempt_at`` is unset or past. Claiming is a conditional UPDATE that counts the
attempt (``retries``) and pushes ``next_attempt_at`` out by a lease *before* any byte moves:
an exception, a cancellation or a crash during the hand-off has already been counted, and
the batch becomes due again when the lease ends; no batch can block the queue.

The lease also covers the step after the hand-off: a consumed batch stays the consumer's
until it has tried to tell the peer STAGED (it then completes the batch, or releases the
lease at once when the peer could not be told); only then, or once the lease ends after a
crash, does check_consumed_queue take it. Without this, check_consumed_queue, which runs
concurrently, could ask STAGED a second time after the receiver had already ingested the
files, read the refusal as a failure and fail transfers that had arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import CompletedTransfer, Librarian, OutgoingTransfer, SendQueueItem
from librarian_async.enums import TransferStatus

S = TransferStatus
HANDED_OFF = (S.INITIATED, S.ONGOING)


def _due(now: datetime) -> list[Any]:
    return [
        SendQueueItem.consumed.is_(False),
        SendQueueItem.failed.is_(False),
        or_(SendQueueItem.next_attempt_at.is_(None), SendQueueItem.next_attempt_at <= now),
    ]


def _to_enabled_peer() -> Any:
    enabled = select(Librarian.name).where(Librarian.transfers_enabled.is_(True))
    return SendQueueItem.destination.in_(enabled.scalar_subquery())


async def due_items(
    session: AsyncSession, *, now: datetime, after_ids: Sequence[int], limit: int
) -> Sequence[SendQueueItem]:
    """Due batches to enabled peers, highest priority then oldest first."""
    query = (
        select(SendQueueItem)
        .where(*_due(now), _to_enabled_peer())
        .order_by(SendQueueItem.priority.desc(), SendQueueItem.created_time, SendQueueItem.id)
        .limit(limit)
    )
    if after_ids:
        query = query.where(SendQueueItem.id.not_in(list(after_ids)))
    return (await session.scalars(query)).all()


async def claim(
    session: AsyncSession, item_id: int, *, now: datetime, lease_until: datetime
) -> bool:
    """Count an attempt on a due batch and lease it; False if someone else took it."""
    statement = (
        update(SendQueueItem)
        .where(SendQueueItem.id == item_id, *_due(now))
        .values(retries=SendQueueItem.retries + 1, next_attempt_at=lease_until)
        .returning(SendQueueItem.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalar(statement)) is not None


async def live_transfers_of(
    session: AsyncSession, item_id: int, statuses: Sequence[TransferStatus]
) -> Sequence[OutgoingTransfer]:
    """The outgoing transfers of a batch that are in one of ``statuses``."""
    query = select(OutgoingTransfer).where(
        OutgoingTransfer.send_queue_id == item_id, OutgoingTransfer.status.in_(list(statuses))
    )
    return (await session.scalars(query.order_by(OutgoingTransfer.id))).all()


async def _set(session: AsyncSession, item_id: int, **values: Any) -> None:
    await session.execute(
        update(SendQueueItem)
        .where(SendQueueItem.id == item_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def mark_consumed(
    session: AsyncSession, item: SendQueueItem, *, now: datetime, seconds: float
) -> None:
    """The method moved every byte of the batch (in ``seconds``, kept for the throughput);
    the consumer's lease stays until :func:`release` or the batch is completed."""
    data = {**item.transfer_data, "hand_off_seconds": seconds}
    await _set(
        session, item.id, consumed=True, consumed_time=now, last_error=None, transfer_data=data
    )


async def release(session: AsyncSession, item_id: int, *, error: str) -> None:
    """End the lease of a consumed batch that the peer could not be told about:
    check_consumed_queue takes it on its next run."""
    await _set(session, item_id, next_attempt_at=None, last_error=error)


async def retry_later(session: AsyncSession, item_id: int, *, error: str, at: datetime) -> None:
    await _set(session, item_id, next_attempt_at=at, last_error=error)


async def mark_failed(session: AsyncSession, item_id: int, *, error: str, now: datetime) -> None:
    await _set(
        session, item_id, failed=True, completed_time=now, next_attempt_at=None, last_error=error
    )


async def mark_completed(session: AsyncSession, item: SendQueueItem, *, now: datetime) -> None:
    """The peer has every file of the batch staged: done, with a throughput record."""
    await _set(session, item.id, completed=True, completed_time=now, last_error=None)
    files = item.transfer_data.get("files", [])
    seconds = float(item.transfer_data.get("hand_off_seconds", 0.0))
    end = item.consumed_time or now
    session.add(
        CompletedTransfer(
            send_queue_id=item.id,
            destination=item.destination,
            transfer_method=item.transfer_method,
            file_count=len(files),
            bytes=sum(int(f.get("size", 0)) for f in files),
            start_time=end - timedelta(seconds=seconds),
            end_time=end,
        )
    )


async def consumed_items(
    session: AsyncSession, *, now: datetime, after_id: int, limit: int
) -> Sequence[SendQueueItem]:
    """Handed-off batches not finished yet and no longer leased by their consumer, to
    enabled peers, in id order (keyset)."""
    query = (
        select(SendQueueItem)
        .where(
            SendQueueItem.consumed.is_(True),
            SendQueueItem.completed.is_(False),
            SendQueueItem.failed.is_(False),
            or_(SendQueueItem.next_attempt_at.is_(None), SendQueueItem.next_attempt_at <= now),
            SendQueueItem.id > after_id,
            _to_enabled_peer(),
        )
        .order_by(SendQueueItem.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()
