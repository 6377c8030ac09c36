"""Queries of send_clone: which files a peer still needs, and the outgoing rows for them.

Callers own the transaction. Candidate files come in keyset pages on ``(create_time,
name)`` (the ``files.create_time`` index serves the window); each anti-join (a remote copy
at the peer, a live transfer to it) is a per-row index lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import (
    File,
    Instance,
    OutgoingTransfer,
    RemoteInstance,
    SendQueueItem,
    Store,
)
from librarian_async.db.rows import insert_with_ids, per_row
from librarian_async.db.types import UTCDateTime
from librarian_async.enums import TransferStatus
from librarian_async.transfer_states import LIVE

S = TransferStatus


class SendCandidate(NamedTuple):
    """A file the peer needs and the instance it will be read from."""

    file_name: str
    create_time: datetime
    size: int
    checksum: str
    uploader: str
    instance_id: int
    path: str


async def send_candidates(
    session: AsyncSession,
    *,
    destination: str,
    librarian_id: int,
    created_after: datetime,
    after: tuple[datetime, str],
    preferred_store_id: int | None,
    limit: int,
) -> list[SendCandidate]:
    """Up to ``limit`` files created since ``created_after``, after the keyset ``after``,
    that have an available instance on an enabled store, no remote copy at the peer and no
    live outgoing transfer to it; each with one instance (on the preferred store if any)."""
    has_copy = select(RemoteInstance.id).where(
        RemoteInstance.file_name == File.name, RemoteInstance.librarian_id == librarian_id
    )
    in_flight = select(OutgoingTransfer.id).where(
        OutgoingTransfer.destination == destination,
        OutgoingTransfer.file_name == File.name,
        OutgoingTransfer.status.in_(LIVE),
    )
    readable = (
        select(Instance.id)
        .join(Store, Store.id == Instance.store_id)
        .where(Instance.file_name == File.name, Instance.available.is_(True), Store.enabled)
    )
    position = tuple_(File.create_time, File.name)
    query = (
        select(File)
        .where(
            File.create_time >= created_after,
            position > tuple_(literal(after[0], UTCDateTime()), literal(after[1])),
            ~per_row(has_copy).exists(),
            ~per_row(in_flight).exists(),
            per_row(readable).exists(),
        )
        .order_by(File.create_time, File.name)
        .limit(limit)
    )
    files = (await session.scalars(query)).all()
    sources = await _source_instances(session, [f.name for f in files], preferred_store_id)
    return [_candidate(file, sources[file.name]) for file in files if file.name in sources]


async def _source_instances(
    session: AsyncSession, names: Sequence[str], preferred_store_id: int | None
) -> dict[str, Instance]:
    """One available instance on an enabled store per file (a disabled store may be a
    drive in transit): on the preferred store, else the lowest store id."""
    if not names:
        return {}
    query = (
        select(Instance)
        .join(Store, Store.id == Instance.store_id)
        .where(Instance.file_name.in_(names), Instance.available.is_(True), Store.enabled)
        .order_by(Instance.store_id)
    )
    chosen: dict[str, Instance] = {}
    for instance in (await session.scalars(query)).all():
        current = chosen.get(instance.file_name)
        if current is None or (
            instance.store_id == preferred_store_id and current.store_id != preferred_store_id
        ):
            chosen[instance.file_name] = instance
    return chosen


def _candidate(file: File, instance: Instance) -> SendCandidate:
    return SendCandidate(
        file.name, file.create_time, file.size, file.checksum, file.uploader, instance.id,
        instance.path,
    )  # fmt: skip


async def add_outgoing(
    session: AsyncSession, candidates: Sequence[SendCandidate], destination: str, now: datetime
) -> list[OutgoingTransfer]:
    """INITIATED outgoing transfers for these files, in order, with their ids."""
    values = [
        {
            "status": S.INITIATED,
            "destination": destination,
            "file_name": candidate.file_name,
            "instance_id": candidate.instance_id,
            "transfer_size": candidate.size,
            "transfer_checksum": candidate.checksum,
            "start_time": now,
        }
        for candidate in candidates  # distinct files: the file name tells the rows apart
    ]
    return await insert_with_ids(session, OutgoingTransfer, values, "file_name")


async def queue_batch(
    session: AsyncSession,
    item: SendQueueItem,
    remote_ids: Mapping[int, int],
) -> SendQueueItem:
    """Add the queue item and link the outgoing transfers (our id -> the peer's) to it."""
    session.add(item)
    await session.flush()
    if remote_ids:  # one executemany UPDATE by primary key, not a statement per row
        await session.execute(
            update(OutgoingTransfer).execution_options(synchronize_session=False),
            [
                {"id": transfer_id, "remote_transfer_id": remote_id, "send_queue_id": item.id}
                for transfer_id, remote_id in remote_ids.items()
            ],
        )
    return item


async def complete_already_there(
    session: AsyncSession, transfer_id: int, *, now: datetime, reason: str
) -> bool:
    """Mark an INITIATED transfer COMPLETED because the peer proved it holds the file."""
    statement = (
        update(OutgoingTransfer)
        .where(OutgoingTransfer.id == transfer_id, OutgoingTransfer.status == S.INITIATED)
        .values(status=S.COMPLETED, end_time=now, failure_reason=reason)
        .returning(OutgoingTransfer.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalar(statement)) is not None


async def abandoned_before_staging(
    session: AsyncSession, *, destination: str, started_before: datetime
) -> list[int]:
    """INITIATED transfers to ``destination`` never queued, started before a time: a run
    died between creating them and staging them on the peer."""
    query = select(OutgoingTransfer.id).where(
        OutgoingTransfer.destination == destination,
        OutgoingTransfer.status == S.INITIATED,
        OutgoingTransfer.send_queue_id.is_(None),
        OutgoingTransfer.start_time < started_before,
    )
    return list((await session.scalars(query)).all())
