"""Queries of local clones (copies between two of our own stores). Callers own the transaction.

Writes are batched: one statement per kind of change for a whole page of clones (executemany
or multi-row INSERT ... RETURNING), so the cost per file does not grow with the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import insert, literal, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from librarian_async.db.models import CloneTransfer, CorruptFile, File, Instance, Store
from librarian_async.db.rows import per_row, table_of
from librarian_async.db.types import UTCDateTime
from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.errors import ConflictError

UNFINISHED = (TransferStatus.INITIATED, TransferStatus.ONGOING)


class PlannedClone(NamedTuple):
    """A copy about to start: which instance goes to which store."""

    file_name: str
    source_instance_id: int
    destination_store_id: int


class VerifiedCopy(NamedTuple):
    """A copy that is at its final path and matches the catalogue's checksum."""

    transfer_id: int
    file_name: str
    store_id: int
    path: str
    deletion_policy: DeletionPolicy
    checksum: str
    size: int


class EndedClone(NamedTuple):
    """A clone transfer that ended without a copy, and why."""

    transfer_id: int
    reason: str


async def clone_candidates(
    session: AsyncSession,
    *,
    source_store_id: int,
    clone_to_ids: Sequence[int],
    created_after: datetime,
    after: tuple[datetime, int],
    limit: int,
) -> Sequence[tuple[Instance, File]]:
    """A page of available source instances created since ``created_after`` whose file has
    no instance on any of the ``clone_to_ids`` stores and that are not known to be corrupt
    (a bad copy must not spread; the corruption fixer replaces it).

    Oldest first, keyset on ``(created_time, id)``: ``after`` is that pair of the previous
    page's last row (``(created_after, 0)`` for the first page). The index on ``instances
    (store_id, created_time)`` serves the window in that order, so a page costs what it
    scans of the window, not of the table; files are cloned before they age out of it.
    Each anti-join is one unique-index lookup per scanned row (see ``rows.per_row``).
    """
    copy = aliased(Instance)
    has_copy = select(copy.id).where(
        copy.file_name == Instance.file_name, copy.store_id.in_(clone_to_ids)
    )
    is_corrupt = select(CorruptFile.id).where(CorruptFile.instance_id == Instance.id)
    position = tuple_(Instance.created_time, Instance.id)
    query = (
        select(Instance, File)
        .join(File, File.name == Instance.file_name)
        .where(
            Instance.store_id == source_store_id,
            Instance.created_time >= created_after,
            position > tuple_(literal(after[0], UTCDateTime()), literal(after[1])),
            Instance.available.is_(True),
            ~per_row(has_copy).exists(),
            ~per_row(is_corrupt).exists(),
        )
        .order_by(Instance.created_time, Instance.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


def _unfinished(source_store_id: int, destination_store_ids: Sequence[int]) -> list[Any]:
    return [
        CloneTransfer.source_store_id == source_store_id,
        CloneTransfer.destination_store_id.in_(destination_store_ids),
        CloneTransfer.status.in_(UNFINISHED),
    ]


async def unfinished_clone_destinations(
    session: AsyncSession, *, source_store_id: int, destination_store_ids: Sequence[int]
) -> set[int]:
    """The destination stores of clone transfers between these stores not finished yet.

    Only a run that died leaves such rows (runs of one task entry never overlap).
    """
    query = select(CloneTransfer.destination_store_id).distinct()
    found = await session.scalars(query.where(*_unfinished(source_store_id, destination_store_ids)))
    return {store_id for store_id in found if store_id is not None}


async def fail_unfinished_clones(
    session: AsyncSession,
    *,
    source_store_id: int,
    destination_store_ids: Sequence[int],
    reason: str,
    ended_at: datetime,
) -> int:
    """Mark FAILED the clone transfers between these stores still INITIATED or ONGOING;
    return how many."""
    statement = (
        update(CloneTransfer)
        .where(*_unfinished(source_store_id, destination_store_ids))
        .values(status=TransferStatus.FAILED, end_time=ended_at, failure_reason=reason)
        .returning(CloneTransfer.id)
        .execution_options(synchronize_session=False)
    )
    return len((await session.scalars(statement)).all())


async def start_clones(
    session: AsyncSession,
    planned: Sequence[PlannedClone],
    *,
    source_store_id: int,
    started_at: datetime,
) -> dict[int, int]:
    """Insert one ONGOING clone transfer per planned copy; return their ids by source
    instance id (unique within a page; ``sort_by_parameter_order`` costs 10x on SQLite)."""
    if not planned:
        return {}
    rows = [
        plan._asdict()
        | {
            "status": TransferStatus.ONGOING,
            "source_store_id": source_store_id,
            "start_time": started_at,
        }
        for plan in planned
    ]
    table = table_of(CloneTransfer)
    statement = insert(table).returning(table.c.source_instance_id, table.c.id)
    found = (await session.execute(statement, rows)).all()
    return {source: id for source, id in found if source is not None}


async def complete_clones(
    session: AsyncSession, copies: Sequence[VerifiedCopy], *, finished_at: datetime
) -> None:
    """Catalogue each verified copy as an instance and mark its transfer COMPLETED.

    Two statements for the whole page, in Core (the ORM's bulk paths cost a few times more
    per row): a multi-row insert of the instances, then one UPDATE of the transfers that
    finds each new instance by its unique (store, file name). A second instance of a file
    on one store is refused by that constraint; that can only happen when two processes
    clone the same files at once (ConflictError).
    """
    if not copies:
        return
    await _add_instances(session, copies, finished_at)
    transfers = table_of(CloneTransfer)
    instances = table_of(Instance)
    new_instance = (
        select(instances.c.id)
        .where(
            instances.c.store_id == transfers.c.destination_store_id,
            instances.c.file_name == transfers.c.file_name,
        )
        .scalar_subquery()
    )
    statement = (
        update(transfers)
        .where(
            transfers.c.id.in_([copy.transfer_id for copy in copies]),
            transfers.c.status.in_(UNFINISHED),
        )
        .values(
            status=TransferStatus.COMPLETED,
            end_time=finished_at,
            destination_instance_id=new_instance,
        )
    )
    await session.execute(statement)


async def _add_instances(
    session: AsyncSession, copies: Sequence[VerifiedCopy], created_at: datetime
) -> None:
    rows = [
        {
            "path": copy.path,
            "file_name": copy.file_name,
            "store_id": copy.store_id,
            "deletion_policy": copy.deletion_policy,
            "created_time": created_at,
            "available": True,
            "calculated_checksum": copy.checksum,
            "calculated_size": copy.size,
            "checksum_time": created_at,
        }
        for copy in copies
    ]
    try:
        await session.execute(insert(table_of(Instance)), rows)
    except IntegrityError as error:
        raise ConflictError("a cloned file already has an instance on its store") from error


async def fail_clones(
    session: AsyncSession, failures: Sequence[EndedClone], *, finished_at: datetime
) -> None:
    """Mark these clone transfers FAILED with their reasons (final rows stay as they are)."""
    changes = [
        {
            "id": failure.transfer_id,
            "status": TransferStatus.FAILED,
            "failure_reason": failure.reason,
            "end_time": finished_at,
        }
        for failure in failures
    ]
    await _finish(session, changes)


async def _finish(session: AsyncSession, changes: list[dict[str, object]]) -> None:
    """Bulk update by primary key, only of rows not final yet: a final row never changes.

    (``or_`` rather than ``in_``: an expanding IN cannot be used with executemany.)
    """
    if changes:
        statement = (
            update(CloneTransfer)
            .where(or_(*(CloneTransfer.status == status for status in UNFINISHED)))
            .execution_options(synchronize_session=False)
        )
        await session.execute(statement, changes)


async def disable_store(session: AsyncSession, store_id: int) -> None:
    """Switch a store off (``enabled = False``); an operator switches it on again."""
    await session.execute(update(Store).where(Store.id == store_id).values(enabled=False))
