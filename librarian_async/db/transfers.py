"""Queries on incoming and outgoing transfers, named by intent. Callers own the transaction.

Status changes are conditional UPDATEs (``WHERE status IN (allowed sources)``) so that a row
changed meanwhile by someone else is simply not changed again: what an UPDATE returns is
what was really moved. The allowed sources come from :mod:`librarian_async.transfer_states`.

Staging layout of an incoming transfer: ``staging_path`` is a directory under the store's
staging area shared by the transfers of one staging request (a directory per transfer cost
more file-system work than the rest of staging), the bytes go to ``staging_path/upload_name``
(see :func:`staged_file`), and ``store_path`` is the name the file gets in the store. Ending
a transfer removes its own staged file and then whatever directories that leaves empty.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import File, IncomingTransfer, OutgoingTransfer, RemoteInstance
from librarian_async.db.rows import insert_ignoring_duplicates, insert_with_ids
from librarian_async.enums import TransferStatus
from librarian_async.transfer_states import COMPLETE_FROM, FINAL, LIVE, sources_of

TAKING_BYTES = (TransferStatus.INITIATED, TransferStatus.ONGOING)
"""Incoming transfers in these states may receive bytes (the http upload endpoint)."""
COMPLETE_CHUNK = 500
"""Transfers completed per UPDATE (three bound parameters each, well below SQLite's limit)."""


@dataclass(frozen=True)
class NewIncoming:
    """An incoming transfer about to be created, with its staging directory already made."""

    source: str
    uploader: str
    upload_name: str
    store_path: str
    transfer_size: int
    transfer_checksum: str
    source_transfer_id: int
    store_id: int
    staging_path: str


@dataclass(frozen=True)
class RemoteCopy:
    """A copy of ``file_name`` that the peer ``librarian_id`` holds in its store ``store_id``."""

    file_name: str
    librarian_id: int
    store_id: int


@dataclass(frozen=True)
class Unstaged:
    """The staged file ``staging_path/upload_name`` to remove, on the store ``store_id``."""

    transfer_id: int
    store_id: int
    staging_path: str
    upload_name: str


def staged_file(transfer: IncomingTransfer) -> Path | None:
    """Where the bytes of an incoming transfer are (or are to be) staged."""
    if transfer.staging_path is None:
        return None
    return Path(transfer.staging_path).joinpath(*transfer.upload_name.split("/"))


# --- reading ------------------------------------------------------------------------------


async def staged_bytes_by_store(session: AsyncSession) -> dict[int, int]:
    """Bytes promised to live incoming transfers (INITIATED, ONGOING, STAGED), per store."""
    query = (
        select(IncomingTransfer.store_id, func.sum(IncomingTransfer.transfer_size))
        .where(IncomingTransfer.status.in_(LIVE), IncomingTransfer.store_id.is_not(None))
        .group_by(IncomingTransfer.store_id)
    )
    rows = (await session.execute(query)).all()
    return {store_id: int(total or 0) for store_id, total in rows if store_id is not None}


async def existing_file_names(session: AsyncSession, names: Collection[str]) -> set[str]:
    """The names among ``names`` that are catalogued files."""
    if not names:
        return set()
    found = await session.scalars(select(File.name).where(File.name.in_(list(names))))
    return set(found.all())


async def live_incoming_to(
    session: AsyncSession, store_paths: Collection[str]
) -> Sequence[IncomingTransfer]:
    """Live incoming transfers whose file is to get one of these names."""
    if not store_paths:
        return []
    query = select(IncomingTransfer).where(
        IncomingTransfer.status.in_(LIVE), IncomingTransfer.store_path.in_(list(store_paths))
    )
    return (await session.scalars(query.order_by(IncomingTransfer.id))).all()


async def incoming_by_ids(
    session: AsyncSession, ids: Collection[int]
) -> dict[int, IncomingTransfer]:
    if not ids:
        return {}
    query = select(IncomingTransfer).where(IncomingTransfer.id.in_(list(ids)))
    return {row.id: row for row in (await session.scalars(query)).all()}


async def outgoing_by_ids(
    session: AsyncSession, ids: Collection[int]
) -> dict[int, OutgoingTransfer]:
    if not ids:
        return {}
    query = select(OutgoingTransfer).where(OutgoingTransfer.id.in_(list(ids)))
    return {row.id: row for row in (await session.scalars(query)).all()}


# --- writing ------------------------------------------------------------------------------


async def add_incoming(
    session: AsyncSession, new: Sequence[NewIncoming], *, started_at: datetime
) -> list[IncomingTransfer]:
    """Insert INITIATED incoming transfers, in the given order, with their ids (a batch
    names each destination file once: stage_rules refuses repeats)."""
    values = [
        {"status": TransferStatus.INITIATED, "start_time": started_at, **vars(item)} for item in new
    ]
    return await insert_with_ids(session, IncomingTransfer, values, "store_path")


async def move_incoming(
    session: AsyncSession,
    ids: Collection[int],
    new: TransferStatus,
    *,
    at: datetime,
    reason: str | None = None,
) -> list[Unstaged]:
    """Move these incoming transfers to ``new`` where the state machine allows it.

    Returns the rows really moved, with what is needed to unstage them.
    """
    if not ids:
        return []
    statement = (
        update(IncomingTransfer)
        .where(IncomingTransfer.id.in_(list(ids)), IncomingTransfer.status.in_(sources_of(new)))
        .values(_status_values(new, at, reason))
        .returning(
            IncomingTransfer.id,
            IncomingTransfer.store_id,
            IncomingTransfer.staging_path,
            IncomingTransfer.upload_name,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    return [Unstaged(id, store_id or 0, path or "", name) for id, store_id, path, name in rows]


async def move_outgoing(
    session: AsyncSession,
    ids: Collection[int],
    new: TransferStatus,
    *,
    at: datetime,
    reason: str | None = None,
) -> list[int]:
    """Move these outgoing transfers to ``new`` where allowed; return the ids moved."""
    if not ids:
        return []
    statement = (
        update(OutgoingTransfer)
        .where(OutgoingTransfer.id.in_(list(ids)), OutgoingTransfer.status.in_(sources_of(new)))
        .values(_status_values(new, at, reason))
        .returning(OutgoingTransfer.id)
        .execution_options(synchronize_session=False)
    )
    return list((await session.scalars(statement)).all())


def _status_values(new: TransferStatus, at: datetime, reason: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"status": new}
    if new in FINAL:
        values["end_time"] = at
    if new in (TransferStatus.FAILED, TransferStatus.CANCELLED) and reason is not None:
        values["failure_reason"] = reason
    return values


async def complete_outgoing(
    session: AsyncSession, remote_ids: Mapping[int, int], *, at: datetime
) -> set[int]:
    """Mark the ONGOING or STAGED outgoing transfers among ``remote_ids`` (our id -> the
    peer's transfer id) COMPLETED, in statements of :data:`COMPLETE_CHUNK` rows; the ids
    that were completed (the others were in another status)."""
    completed: set[int] = set()
    pairs = list(remote_ids.items())
    for start in range(0, len(pairs), COMPLETE_CHUNK):
        chunk = dict(pairs[start : start + COMPLETE_CHUNK])
        statement = (
            update(OutgoingTransfer)
            .where(
                OutgoingTransfer.id.in_(list(chunk)),
                OutgoingTransfer.status.in_(COMPLETE_FROM["outgoing"]),
            )
            .values(
                status=TransferStatus.COMPLETED,
                end_time=at,
                remote_transfer_id=case(chunk, value=OutgoingTransfer.id),
            )
            .returning(OutgoingTransfer.id)
            .execution_options(synchronize_session=False)
        )
        completed.update((await session.scalars(statement)).all())
    return completed


async def record_verified_stats(session: AsyncSession, stats: Mapping[int, str]) -> None:
    """Record the stat of each incoming transfer's staged file, verified as it arrived
    (see ``IncomingTransfer.verified_stat``); only transfers still taking bytes change.
    One UPDATE by primary key for all (``or_``: an expanding IN cannot be executemany'd)."""
    if not stats:
        return
    statement = (
        update(IncomingTransfer)
        .where(or_(*(IncomingTransfer.status == status for status in TAKING_BYTES)))
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement, [{"id": k, "verified_stat": v} for k, v in stats.items()])


async def record_remote_instances(
    session: AsyncSession, copies: Sequence[RemoteCopy], *, copy_time: datetime, sender: str
) -> None:
    """Record that peers hold these copies; a copy already recorded is left as it is."""
    values = [
        {
            "file_name": copy.file_name,
            "librarian_id": copy.librarian_id,
            "store_id": copy.store_id,
            "copy_time": copy_time,
            "sender": sender,
        }
        for copy in copies
    ]
    if values:
        await insert_ignoring_duplicates(session, RemoteInstance, values)


async def live_staging_paths(session: AsyncSession, paths: Collection[str]) -> set[str]:
    """The paths among ``paths`` that are the staging directory of a live incoming transfer."""
    if not paths:
        return set()
    query = select(IncomingTransfer.staging_path).where(
        IncomingTransfer.status.in_(LIVE), IncomingTransfer.staging_path.in_(list(paths))
    )
    return {path for path in (await session.scalars(query)).all() if path is not None}
