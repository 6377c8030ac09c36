"""Queries about task runs and recorded errors. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import ErrorRecord, TaskRun


async def start_run(
    session: AsyncSession, task_type: str, task_name: str, started_at: datetime
) -> TaskRun:
    """Insert the row of a run that is starting now."""
    run = TaskRun(task_type=task_type, task_name=task_name, started_at=started_at)
    session.add(run)
    await session.flush()
    return run


async def finish_run(
    session: AsyncSession,
    run_id: int,
    *,
    outcome: str,
    finished_at: datetime,
    counts: dict[str, Any],
    error: str | None,
) -> None:
    """Record how a run ended."""
    run = await session.get_one(TaskRun, run_id)
    run.outcome = outcome
    run.finished_at = finished_at
    run.counts = counts
    run.error = error


async def record_error(
    session: AsyncSession, *, severity: str, category: str, message: str, caller: str
) -> None:
    """Add a row to the errors table for an operator to see and clear."""
    session.add(ErrorRecord(severity=severity, category=category, message=message, caller=caller))


async def last_runs(session: AsyncSession) -> Sequence[TaskRun]:
    """The latest run of every task name (one indexed lookup per name)."""
    latest = (
        select(TaskRun.task_name, func.max(TaskRun.started_at).label("started_at"))
        .group_by(TaskRun.task_name)
        .subquery()
    )
    query = (
        select(TaskRun)
        .join(
            latest,
            (TaskRun.task_name == latest.c.task_name) & (TaskRun.started_at == latest.c.started_at),
        )
        .order_by(TaskRun.task_name)
    )
    return (await session.scalars(query)).all()
