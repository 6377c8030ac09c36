"""check_integrity: re-hash recent instances on one store and compare with the catalogue.

Reads: available instances on ``store_name`` created at or after ``now - age_in_days`` (the
clock read once at the start of the run), in id pages. ``age_in_days = 0`` is an empty
window: only instances created at or after the run's start would be checked.
Writes: a ``corrupt_files`` row per damaged instance (or bumps its count), an ``errors``
row per missing file (``missing_file``) and per file that cannot be verified
(``unverifiable_file``: unreadable, not a regular file or directory, or a malformed
checksum in the catalogue). One such file never stops the others from being checked.

A store area that does not exist (an unmounted disk) fails the run rather than reporting
every file as missing. Findings are written after each page, and for the finished part of a
page when the run is cancelled, so a timed-out run keeps what it found. It changes no file
and no instance, so a rerun after a crash at any point only checks some files again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.config import CheckIntegrityConfig
from librarian_async.db import catalog, problems
from librarian_async.db.models import File, Instance, Store
from librarian_async.errors import ChecksumError, StoreUnavailableError
from librarian_async.storage.checksum import FileDigest, checksums_match, hash_file, parse_checksum
from librarian_async.tasks.base import Report, TaskContext

PAGE_SIZE = 512
COUNTS = ("checked", "ok", "corrupt", "missing", "unverifiable", "bytes")
Page = Sequence[tuple[Instance, File]]


@dataclass(frozen=True)
class Missing:
    """The instance's path does not exist."""


@dataclass(frozen=True)
class Unverifiable:
    """The bytes could not be read or compared; ``reason`` says why."""

    reason: str


Finding = FileDigest | Missing | Unverifiable


async def run(task: TaskContext, params: CheckIntegrityConfig) -> Report:
    app = task.app
    for key in COUNTS:
        task.report.add(key, 0)
    async with app.sessions() as session:
        store = await catalog.store_by_name(session, params.store_name)
    await _require_store_area(store)
    created_after = app.now() - timedelta(days=params.age_in_days)
    after_id = 0
    while not task.budget.spent():
        async with app.sessions() as session:
            page = await catalog.recent_instances_page(
                session,
                store_id=store.id,
                created_after=created_after,
                after_id=after_id,
                limit=PAGE_SIZE,
            )
        if not page:
            break
        await _check_page(task, page, params.concurrency)
        after_id = page[-1][0].id
    return task.report


async def _require_store_area(store: Store) -> None:
    """Refuse to run on a missing store area: every file would look missing."""
    if not await asyncio.to_thread(Path(store.store_path).is_dir):
        message = f"store {store.name!r}: store area {store.store_path} is missing; not checking"
        raise StoreUnavailableError(message)


async def _check_page(task: TaskContext, page: Page, concurrency: int) -> None:
    """Hash a page with ``concurrency`` files in flight, then record its findings at once."""
    limiter = asyncio.Semaphore(concurrency)
    findings: dict[int, Finding] = {}

    async def check(instance: Instance, file: File) -> None:
        async with limiter:
            if not task.budget.spent():
                findings[instance.id] = await _examine(instance, file)

    try:
        async with asyncio.TaskGroup() as group:
            for instance, file in page:
                group.create_task(check(instance, file))
    finally:  # also when cancelled: keep what the finished checks found
        await asyncio.shield(_record_page(task, page, findings))


async def _examine(instance: Instance, file: File) -> Finding:
    """Hash the instance with the algorithm of the catalogued checksum."""
    try:
        algorithm, _ = parse_checksum(file.checksum)
    except ChecksumError as error:
        return Unverifiable(f"catalogue checksum: {error}")
    try:
        return await hash_file(Path(instance.path), algorithm)
    except (FileNotFoundError, NotADirectoryError):
        return Missing()
    except (OSError, ChecksumError) as error:
        return Unverifiable(str(error))


async def _record_page(task: TaskContext, page: Page, findings: dict[int, Finding]) -> None:
    now = task.app.now()
    async with task.app.sessions.begin() as session:
        for instance, file in page:
            finding = findings.get(instance.id)
            if finding is not None:
                task.report.add("checked")
                await _record(task, session, instance, file, finding, now)


async def _record(
    task: TaskContext,
    session: AsyncSession,
    instance: Instance,
    file: File,
    finding: Finding,
    now: datetime,
) -> None:
    report, where = task.report, f"{file.name} ({instance.path})"
    if isinstance(finding, Missing):
        report.add("missing")
        report.problem(f"missing: {where}")
        await problems.record_missing_instance(
            session, instance=instance, caller=task.task_name, found_at=now
        )
    elif isinstance(finding, Unverifiable):
        report.add("unverifiable")
        report.problem(f"cannot verify: {where}: {finding.reason}")
        await problems.record_unverifiable_instance(
            session, instance=instance, reason=finding.reason, caller=task.task_name, found_at=now
        )
    else:
        await _record_digest(report, session, instance, file, finding, now)


async def _record_digest(
    report: Report,
    session: AsyncSession,
    instance: Instance,
    file: File,
    digest: FileDigest,
    now: datetime,
) -> None:
    report.add("bytes", digest.size)
    if digest.size == file.size and checksums_match(digest.checksum, file.checksum):
        report.add("ok")
        return
    report.add("corrupt")
    report.problem(f"corrupt: {file.name} ({instance.path}): found {digest.checksum}")
    await problems.record_corrupt_instance(
        session, file=file, instance=instance, computed_checksum=digest.checksum, found_at=now
    )
