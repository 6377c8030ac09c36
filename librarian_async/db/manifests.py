"""Queries of SneakerNet export and ingest, named by intent. Callers own the transaction.

Export pages through a drive store's instances in keyset order (``instances.id``) and
creates ONGOING outgoing transfers for them, a page per statement. Ingest looks up what an
earlier run already did (incoming transfers by ``(source, source_transfer_id)``, served by
the index on those columns), records entries it settles without staging, and fails the
transfers whose bytes did not arrive, owing the source a callback for each.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import File, IncomingTransfer, Instance, OutgoingTransfer
from librarian_async.db.models import RemoteInstance as Remote
from librarian_async.db.transfers import Unstaged
from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.transfer_states import LIVE, sources_of

S = TransferStatus
SNEAKERNET = "sneakernet"
"""``transfer_data["method"]`` of the outgoing transfers that travel on a drive."""


# --- export ---------------------------------------------------------------------------------


class DriveInstance(NamedTuple):
    """An instance on the drive store with its file: one manifest entry."""

    instance_id: int
    path: str
    deletion_policy: DeletionPolicy
    created_time: datetime
    available: bool
    name: str
    create_time: datetime
    size: int
    checksum: str
    uploader: str
    source: str


class LiveOutgoing(NamedTuple):
    """A live outgoing transfer of a file to the destination."""

    id: int
    status: TransferStatus
    instance_id: int | None


async def drive_instances(
    session: AsyncSession, *, store_id: int, after_id: int, limit: int
) -> list[DriveInstance]:
    """Up to ``limit`` instances on the store with an id above ``after_id``, in id order."""
    query = (
        select(
            Instance.id, Instance.path, Instance.deletion_policy, Instance.created_time,
            Instance.available, File.name, File.create_time, File.size, File.checksum,
            File.uploader, File.source,
        )
        .join(File, File.name == Instance.file_name)
        .where(Instance.store_id == store_id, Instance.id > after_id)
        .order_by(Instance.id)
        .limit(limit)
    )  # fmt: skip
    return [DriveInstance(*row) for row in (await session.execute(query)).all()]


async def names_held_by(
    session: AsyncSession, names: Collection[str], librarian_id: int
) -> set[str]:
    """The names among ``names`` of which the librarian holds a recorded copy."""
    if not names:
        return set()
    query = select(Remote.file_name).where(
        Remote.librarian_id == librarian_id, Remote.file_name.in_(list(names))
    )
    return set((await session.scalars(query)).all())


async def live_outgoing_to(
    session: AsyncSession, names: Collection[str], destination: str
) -> dict[str, list[LiveOutgoing]]:
    """The live outgoing transfers of these files to ``destination``, oldest first."""
    if not names:
        return {}
    query = (
        select(
            OutgoingTransfer.file_name,
            OutgoingTransfer.id,
            OutgoingTransfer.status,
            OutgoingTransfer.instance_id,
        )
        .where(
            OutgoingTransfer.destination == destination,
            OutgoingTransfer.file_name.in_(list(names)),
            OutgoingTransfer.status.in_(LIVE),
        )
        .order_by(OutgoingTransfer.id)
    )
    found: dict[str, list[LiveOutgoing]] = {}
    for name, id, status, instance_id in (await session.execute(query)).all():
        found.setdefault(name, []).append(LiveOutgoing(id, status, instance_id))
    return found


async def add_shipments(
    session: AsyncSession,
    shipped: Sequence[DriveInstance],
    *,
    destination: str,
    store_name: str,
    at: datetime,
) -> dict[int, int]:
    """One ONGOING outgoing transfer per shipped instance; their ids by instance id.

    ``transfer_data`` says they travel on a drive (``{"method": "sneakernet", "store_name":
    ...}``), so reconciliation can tell them from network transfers.
    """
    if not shipped:
        return {}
    data = {"method": SNEAKERNET, "store_name": store_name}
    rows = [
        {
            "status": S.ONGOING,
            "destination": destination,
            "file_name": item.name,
            "instance_id": item.instance_id,
            "transfer_size": item.size,
            "transfer_checksum": item.checksum,
            "transfer_data": data,
            "start_time": at,
        }
        for item in shipped
    ]
    statement = insert(OutgoingTransfer).returning(
        OutgoingTransfer.instance_id, OutgoingTransfer.id
    )
    found = (await session.execute(statement, rows)).all()
    return {instance_id: id for instance_id, id in found if instance_id is not None}


async def mark_unavailable(session: AsyncSession, *, store_id: int, up_to_id: int) -> int:
    """Mark the store's instances with an id up to ``up_to_id`` unavailable; how many changed."""
    statement = (
        update(Instance)
        .where(Instance.store_id == store_id, Instance.id <= up_to_id, Instance.available.is_(True))
        .values(available=False)
        .returning(Instance.id)
        .execution_options(synchronize_session=False)
    )
    return len((await session.scalars(statement)).all())


# --- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettledIncoming:
    """An entry decided without staging: COMPLETED (already here) or FAILED (``reason``)."""

    status: TransferStatus
    source: str
    name: str
    size: int
    checksum: str
    source_transfer_id: int
    store_id: int | None
    reason: str | None = None


async def incoming_from(
    session: AsyncSession, source: str, source_transfer_ids: Collection[int]
) -> dict[int, IncomingTransfer]:
    """The latest incoming transfer from ``source`` for each of these source transfer ids."""
    if not source_transfer_ids:
        return {}
    query = (
        select(IncomingTransfer)
        .where(
            IncomingTransfer.source == source,
            IncomingTransfer.source_transfer_id.in_(list(source_transfer_ids)),
        )
        .order_by(IncomingTransfer.id)
    )
    return {
        row.source_transfer_id: row
        for row in (await session.scalars(query)).all()
        if row.source_transfer_id is not None
    }


async def stores_holding(session: AsyncSession, names: Collection[str]) -> dict[str, int]:
    """A store holding an available instance of each of these files (the lowest id)."""
    if not names:
        return {}
    query = (
        select(Instance.file_name, Instance.store_id)
        .where(Instance.file_name.in_(list(names)), Instance.available.is_(True))
        .order_by(Instance.store_id.desc())
    )
    return {name: store_id for name, store_id in (await session.execute(query)).all()}


async def add_settled(
    session: AsyncSession, settled: Sequence[SettledIncoming], *, uploader: str, at: datetime
) -> None:
    """Insert final incoming transfers that owe their source a callback."""
    if settled:
        await session.execute(
            insert(IncomingTransfer), [_settled_row(item, uploader, at) for item in settled]
        )


def _settled_row(item: SettledIncoming, uploader: str, at: datetime) -> dict[str, Any]:
    return {
        "status": item.status,
        "uploader": uploader,
        "source": item.source,
        "upload_name": item.name,
        "store_path": item.name,
        "transfer_size": item.size,
        "transfer_checksum": item.checksum,
        "store_id": item.store_id,
        "source_transfer_id": item.source_transfer_id,
        "start_time": at,
        "end_time": at,
        "failure_reason": item.reason,
        "callback_pending": True,
        "callback_attempts": 0,
    }


async def fail_owing_callback(
    session: AsyncSession, failures: Sequence[tuple[int, str]], *, at: datetime
) -> list[Unstaged]:
    """Move these live (transfer id, reason) to FAILED, owing the source a callback; return
    the rows moved, to unstage. One statement per row: each keeps its own reason."""
    moved: list[Unstaged] = []
    for transfer_id, reason in failures:
        statement = (
            update(IncomingTransfer)
            .where(
                IncomingTransfer.id == transfer_id,
                IncomingTransfer.status.in_(sources_of(S.FAILED)),
            )
            .values(
                status=S.FAILED,
                end_time=at,
                failure_reason=reason,
                callback_pending=IncomingTransfer.source_transfer_id.is_not(None),
                callback_attempts=0,
                next_callback_at=None,
            )
            .returning(
                IncomingTransfer.store_id,
                IncomingTransfer.staging_path,
                IncomingTransfer.upload_name,
            )
            .execution_options(synchronize_session=False)
        )
        for store_id, path, name in (await session.execute(statement)).all():
            moved.append(Unstaged(transfer_id, store_id or 0, path or "", name))
    return moved
