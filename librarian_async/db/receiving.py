"""Queries of ``receive_clone``: staged incoming transfers and the callbacks owed to their
sources. Named by intent; callers own the transaction.

Every status change is a conditional UPDATE that only moves a row still in the state the
task selected it in (STAGED), and says which rows it really moved: a rerun, or a run
overlapping this one, never completes or fails a transfer twice. Files and instances are
inserted with ON CONFLICT DO NOTHING, so a catalogue entry made meanwhile is kept, never
duplicated.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import File, IncomingTransfer, Instance, Store
from librarian_async.db.rows import insert_ignoring_duplicates
from librarian_async.db.types import UTCDateTime
from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.transfer_states import can_complete

STAGED = TransferStatus.STAGED
COMPLETABLE = [status for status in TransferStatus if can_complete("incoming", status)]
_OWES_CALLBACK = IncomingTransfer.source_transfer_id.is_not(None)


@dataclass(frozen=True, slots=True)
class StagedTransfer:
    """What ingesting one staged transfer needs: plain values, no ORM object.

    ``catalogued_checksum`` is the checksum of a file already catalogued under
    ``store_path`` (None when there is none).
    """

    id: int
    store_id: int | None
    staging_path: str | None
    upload_name: str
    store_path: str | None
    size: int
    checksum: str
    uploader: str
    source: str
    start_time: datetime
    verified_stat: str | None
    catalogued_checksum: str | None


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A verified file now at ``path`` in store ``store_id``, ready to be catalogued."""

    transfer_id: int
    name: str
    size: int
    checksum: str
    uploader: str
    source: str
    store_id: int
    path: str


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """An incoming transfer whose source must still be told how it ended."""

    transfer_id: int
    status: TransferStatus
    source: str
    source_transfer_id: int | None
    store_id: int | None
    attempts: int


# --- staged transfers -----------------------------------------------------------------------


async def staged_transfers(
    session: AsyncSession,
    *,
    store_ids: Collection[int],
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[StagedTransfer]:
    """A page of STAGED transfers into these stores (or into no store at all), oldest first.

    Keyset on ``(start_time, id)``: ``after`` is that pair of the previous page's last row.
    The index on ``(status, start_time)`` serves the order, so a page costs its own rows.
    """
    query = (
        select(*_STAGED_COLUMNS, File.checksum)
        .outerjoin(File, File.name == IncomingTransfer.store_path)
        .where(
            IncomingTransfer.status == STAGED,
            or_(
                IncomingTransfer.store_id.in_(list(store_ids)), IncomingTransfer.store_id.is_(None)
            ),
        )
        .order_by(IncomingTransfer.start_time, IncomingTransfer.id)
        .limit(limit)
    )
    if after is not None:
        position = tuple_(IncomingTransfer.start_time, IncomingTransfer.id)
        query = query.where(position > tuple_(literal(after[0], UTCDateTime()), literal(after[1])))
    rows: Sequence[Any] = (await session.execute(query)).all()
    return [StagedTransfer(*row) for row in rows]


_STAGED_COLUMNS = (
    IncomingTransfer.id,
    IncomingTransfer.store_id,
    IncomingTransfer.staging_path,
    IncomingTransfer.upload_name,
    IncomingTransfer.store_path,
    IncomingTransfer.transfer_size,
    IncomingTransfer.transfer_checksum,
    IncomingTransfer.uploader,
    IncomingTransfer.source,
    IncomingTransfer.start_time,
    IncomingTransfer.verified_stat,
)


async def staged_counts_by_store(session: AsyncSession) -> dict[str, int]:
    """How many STAGED transfers wait on each store, by store name."""
    query = (
        select(Store.name, func.count())
        .join(IncomingTransfer, IncomingTransfer.store_id == Store.id)
        .where(IncomingTransfer.status == STAGED)
        .group_by(Store.name)
    )
    return {name: int(count) for name, count in (await session.execute(query)).all()}


async def catalogued_checksums(session: AsyncSession, names: Collection[str]) -> dict[str, str]:
    """The checksums of the catalogued files among ``names``."""
    if not names:
        return {}
    query = select(File.name, File.checksum).where(File.name.in_(list(names)))
    return {name: checksum for name, checksum in (await session.execute(query)).all()}


async def complete_received(
    session: AsyncSession,
    received: Sequence[ReceivedFile],
    *,
    deletion_policy: DeletionPolicy,
    at: datetime,
) -> set[int]:
    """Move these transfers STAGED -> COMPLETED and catalogue their files; return the ids
    moved. Only moved transfers get a file (unless one exists) and an instance (unless
    their store has one); each owes its source a callback if it has a source transfer."""
    if not received:
        return set()
    moved = await _complete_transfers(session, [item.transfer_id for item in received], at)
    done = [item for item in received if item.transfer_id in moved]
    if done:
        files = [_file_values(item, at) for item in done]
        instances = [_instance_values(item, deletion_policy, at) for item in done]
        await insert_ignoring_duplicates(session, File, files)
        await insert_ignoring_duplicates(session, Instance, instances)
    return moved


async def _complete_transfers(session: AsyncSession, ids: list[int], at: datetime) -> set[int]:
    statement = (
        update(IncomingTransfer)
        .where(IncomingTransfer.id.in_(ids), IncomingTransfer.status.in_(COMPLETABLE))
        .values(status=TransferStatus.COMPLETED, end_time=at, **_callback_owed())
        .returning(IncomingTransfer.id)
        .execution_options(synchronize_session=False)
    )
    return set((await session.scalars(statement)).all())


def _callback_owed() -> dict[str, Any]:
    return {"callback_pending": _OWES_CALLBACK, "callback_attempts": 0, "next_callback_at": None}


def _file_values(item: ReceivedFile, at: datetime) -> dict[str, Any]:
    return {
        "name": item.name,
        "create_time": at,
        "size": item.size,
        "checksum": item.checksum,
        "uploader": item.uploader,
        "source": item.source,
    }


def _instance_values(item: ReceivedFile, policy: DeletionPolicy, at: datetime) -> dict[str, Any]:
    return {
        "path": item.path,
        "file_name": item.name,
        "store_id": item.store_id,
        "deletion_policy": policy,
        "created_time": at,
        "available": True,
        "calculated_checksum": item.checksum,
        "calculated_size": item.size,
        "checksum_time": at,
    }


async def fail_received(
    session: AsyncSession, failures: Sequence[tuple[int, str]], *, at: datetime
) -> set[int]:
    """Move these (transfer id, reason) STAGED -> FAILED; return the ids moved. Each owes
    its source a callback if it has a source transfer. Failures are rare: one statement
    per row keeps each its own reason and tells which were moved."""
    moved: set[int] = set()
    for transfer_id, reason in failures:
        statement = (
            update(IncomingTransfer)
            .where(IncomingTransfer.id == transfer_id, IncomingTransfer.status == STAGED)
            .values(
                status=TransferStatus.FAILED, end_time=at, failure_reason=reason, **_callback_owed()
            )
            .returning(IncomingTransfer.id)
            .execution_options(synchronize_session=False)
        )
        moved.update((await session.scalars(statement)).all())
    return moved


# --- callbacks --------------------------------------------------------------------------------


def _is_due(now: datetime) -> Any:
    return and_(
        IncomingTransfer.callback_pending.is_(True),
        or_(IncomingTransfer.next_callback_at.is_(None), IncomingTransfer.next_callback_at <= now),
    )


async def due_callbacks(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[PendingCallback]:
    """Up to ``limit`` pending callbacks whose retry time has come, grouped by source."""
    query = (
        select(
            IncomingTransfer.id,
            IncomingTransfer.status,
            IncomingTransfer.source,
            IncomingTransfer.source_transfer_id,
            IncomingTransfer.store_id,
            IncomingTransfer.callback_attempts,
        )
        .where(_is_due(now))
        .order_by(IncomingTransfer.source, IncomingTransfer.id)
        .limit(limit)
    )
    return [PendingCallback(*row) for row in (await session.execute(query)).all()]


async def acknowledge_callbacks(session: AsyncSession, transfer_ids: Collection[int]) -> None:
    """The sources know: these transfers owe no callback any more."""
    if transfer_ids:
        statement = (
            update(IncomingTransfer)
            .where(IncomingTransfer.id.in_(list(transfer_ids)))
            .values(callback_pending=False, next_callback_at=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(statement)


async def defer_callbacks(
    session: AsyncSession, transfer_ids: Collection[int], *, retry_at: datetime
) -> None:
    """Count a failed attempt for these pending callbacks and retry them at ``retry_at``."""
    if transfer_ids:
        statement = (
            update(IncomingTransfer)
            .where(IncomingTransfer.id.in_(list(transfer_ids)), IncomingTransfer.callback_pending)
            .values(
                callback_attempts=IncomingTransfer.callback_attempts + 1, next_callback_at=retry_at
            )
            .execution_options(synchronize_session=False)
        )
        await session.execute(statement)


async def count_pending_callbacks(session: AsyncSession) -> int:
    """Callbacks still owed, due or not."""
    query = select(func.count()).where(IncomingTransfer.callback_pending.is_(True))
    return int(await session.scalar(query) or 0)
