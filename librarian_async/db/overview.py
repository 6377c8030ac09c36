"""Aggregate counts for ``status`` and metrics: one grouped query each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import (
    CloneTransfer,
    CorruptFile,
    ErrorRecord,
    IncomingTransfer,
    OutgoingTransfer,
    SendQueueItem,
    TaskRun,
)

TRANSFER_TABLES: dict[str, type[IncomingTransfer | OutgoingTransfer | CloneTransfer]] = {
    "incoming": IncomingTransfer,
    "outgoing": OutgoingTransfer,
    "clone": CloneTransfer,
}


async def transfers_by_status(session: AsyncSession) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind, model in TRANSFER_TABLES.items():
        query = select(model.status, func.count()).group_by(model.status).order_by(model.status)
        for status, count in (await session.execute(query)).all():
            rows.append({"kind": kind, "status": status.name, "count": count})
    return rows


async def queue_by_destination(session: AsyncSession) -> list[dict[str, Any]]:
    """Per peer: batches waiting to be handed off, and batches handed off but not done."""
    open_items = SendQueueItem.completed.is_(False) & SendQueueItem.failed.is_(False)
    query = (
        select(
            SendQueueItem.destination,
            func.sum(case((SendQueueItem.consumed.is_(False), 1), else_=0)),
            func.sum(case((SendQueueItem.consumed.is_(True), 1), else_=0)),
        )
        .where(open_items)
        .group_by(SendQueueItem.destination)
        .order_by(SendQueueItem.destination)
    )
    return [
        {"destination": destination, "waiting": int(waiting), "in_flight": int(in_flight)}
        for destination, waiting, in_flight in (await session.execute(query)).all()
    ]


async def count_corrupt_files(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(CorruptFile)) or 0)


async def count_uncleared_errors(session: AsyncSession) -> int:
    query = select(func.count()).select_from(ErrorRecord).where(ErrorRecord.cleared.is_(False))
    return int(await session.scalar(query) or 0)


async def task_runs_by_outcome(session: AsyncSession) -> list[dict[str, Any]]:
    """Number of recorded runs per task entry and outcome (for metrics)."""
    query = (
        select(TaskRun.task_type, TaskRun.task_name, TaskRun.outcome, func.count())
        .group_by(TaskRun.task_type, TaskRun.task_name, TaskRun.outcome)
        .order_by(TaskRun.task_name, TaskRun.outcome)
    )
    return [
        {"task_type": task_type, "task_name": name, "outcome": outcome, "count": count}
        for task_type, name, outcome, count in (await session.execute(query)).all()
    ]
