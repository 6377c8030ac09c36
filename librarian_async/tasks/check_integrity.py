"""check_integrity: re-hash recent instances on one store and compare with the catalogue.

Reads: available instances on ``store_name`` created within ``age_in_days``, in id pages.
Writes: a ``corrupt_files`` row per damaged instance (or bumps its count) and an ``errors``
row per missing file. It changes no file and no instance, so a rerun after a crash at any
point only checks some files again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from librarian_async.config import CheckIntegrityConfig
from librarian_async.db import catalog, problems
from librarian_async.db.models import File, Instance
from librarian_async.storage.checksum import FileDigest, checksums_match, hash_file, parse_checksum
from librarian_async.tasks.base import Report, TaskContext

PAGE_SIZE = 512
Page = Sequence[tuple[Instance, File]]


async def run(task: TaskContext, params: CheckIntegrityConfig) -> Report:
    app = task.app
    async with app.sessions() as session:
        store = await catalog.store_by_name(session, params.store_name)
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


async def _check_page(task: TaskContext, page: Page, concurrency: int) -> None:
    """Hash a page with ``concurrency`` files in flight, then record its findings at once."""
    limiter = asyncio.Semaphore(concurrency)
    digests: dict[int, FileDigest | None] = {}

    async def check(instance: Instance, file: File) -> None:
        async with limiter:
            if not task.budget.spent():
                digests[instance.id] = await _digest_or_none(instance, file)

    async with asyncio.TaskGroup() as group:
        for instance, file in page:
            group.create_task(check(instance, file))
    await _record_page(task, page, digests)


async def _digest_or_none(instance: Instance, file: File) -> FileDigest | None:
    algorithm, _ = parse_checksum(file.checksum)
    try:
        return await hash_file(Path(instance.path), algorithm)
    except FileNotFoundError:
        return None


async def _record_page(
    task: TaskContext,
    page: Page,
    digests: dict[int, FileDigest | None],
) -> None:
    report, now = task.report, task.app.now()
    async with task.app.sessions.begin() as session:
        for instance, file in page:
            if instance.id not in digests:
                continue
            digest = digests[instance.id]
            report.add("checked")
            if digest is None:
                report.add("missing")
                report.problem(f"missing: {file.name} ({instance.path})")
                await problems.record_missing_instance(
                    session, instance=instance, caller=task.task_name, found_at=now
                )
                continue
            report.add("bytes", digest.size)
            if checksums_match(digest.checksum, file.checksum) and digest.size == file.size:
                report.add("ok")
                continue
            report.add("corrupt")
            report.problem(f"corrupt: {file.name} ({instance.path})")
            await problems.record_corrupt_instance(
                session,
                file=file,
                instance=instance,
                computed_checksum=digest.checksum,
                found_at=now,
            )
