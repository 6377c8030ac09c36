"""check_integrity: re-hash recent instances on one store and compare with the catalogue.

Reads: available instances on ``store_name`` created at or after ``now - age_in_days`` (the
clock read once at the start of the run), in id pages. ``age_in_days = 0`` is an empty
window: only instances created at or after the run's start would be checked.
Writes: a ``corrupt_files`` row per damaged instance (or bumps its count), an ``errors``
row per missing file (``missing_file``) and per file that cannot be verified
(``unverifiable_file``: unreadable, not a regular file or directory, or a malformed
checksum in the catalogue). One such file never stops the others from being checked.

Speed: the next page is fetched while the current one is hashed; files are hashed in worker
threads in batches (many small files per thread hop, big files alone), ``concurrency``
batches at a time; with a core to spare, a second thread reads big files ahead of the hash;
a page with nothing wrong writes nothing.

A store area that does not exist (an unmounted disk) fails the run rather than reporting
every file as missing. Findings are written after each page, and for the finished part of a
page when the run is cancelled, so a timed-out run keeps what it found. It changes no file
and no instance, so a rerun after a crash at any point only checks some files again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.config import CheckIntegrityConfig
from librarian_async.context import Context
from librarian_async.db import catalog, problems
from librarian_async.db.catalog import CheckCandidate
from librarian_async.db.models import File, Instance, Store
from librarian_async.errors import ChecksumError, StoreUnavailableError
from librarian_async.storage.checksum import (
    FileDigest,
    checksums_match,
    hash_or_error,
    parse_checksum,
    run_interruptible,
)
from librarian_async.storage.readahead import hash_files_sync, worth_reading_ahead
from librarian_async.tasks.base import Report, TaskContext
from librarian_async.tasks.batching import batches

PAGE_SIZE = 512
BATCH_BYTES = 128 * 1024 * 1024
BATCH_FILES = 128
"""A batch is one thread call; it ends the read-ahead pipeline, which then starts again
empty. Batches of 8 MiB (8 files of 1 MiB) cost 6% of a one-worker check of 1 MiB files,
128 MiB batches 1%; 128 files keep a page of small files in four batches for the workers."""
COUNTS = ("checked", "ok", "corrupt", "missing", "unverifiable", "bytes")


@dataclass(frozen=True)
class Missing:
    """The instance's path does not exist."""


@dataclass(frozen=True)
class Unverifiable:
    """The bytes could not be read or compared; ``reason`` says why."""

    reason: str


Finding = FileDigest | Missing | Unverifiable


async def run(task: TaskContext, params: CheckIntegrityConfig) -> Report:
    for key in COUNTS:
        task.report.add(key, 0)
    async with task.app.sessions() as session:
        store = await catalog.store_by_name(session, params.store_name)
    await _require_store_area(store)
    created_after = task.app.now() - timedelta(days=params.age_in_days)
    async with contextlib.aclosing(_pages(task.app, store.id, created_after)) as pages:
        async for page in pages:
            if task.budget.spent():
                break
            await _check_page(task, page, params.concurrency)
    return task.report


async def _require_store_area(store: Store) -> None:
    """Refuse to run on a missing store area: every file would look missing."""
    if not await asyncio.to_thread(Path(store.store_path).is_dir):
        message = f"store {store.name!r}: store area {store.store_path} is missing; not checking"
        raise StoreUnavailableError(message)


async def _pages(
    app: Context, store_id: int, created_after: datetime
) -> AsyncGenerator[list[CheckCandidate], None]:
    """Pages of candidates in id order; the next page is read while the caller works."""

    async def fetch(after_id: int) -> list[CheckCandidate]:
        async with app.sessions() as session:
            return await catalog.recent_check_candidates(
                session,
                store_id=store_id,
                created_after=created_after,
                after_id=after_id,
                limit=PAGE_SIZE,
            )

    pending = asyncio.create_task(fetch(0))
    try:
        while page := await pending:
            pending = asyncio.create_task(fetch(page[-1].instance_id))
            yield page
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending


async def _check_page(task: TaskContext, page: list[CheckCandidate], concurrency: int) -> None:
    """Hash a page, ``concurrency`` batches at a time, then record its findings at once."""
    limiter = asyncio.Semaphore(concurrency)
    findings: dict[int, Finding] = {}
    read_ahead = concurrency < (os.cpu_count() or 1)  # only with a core to spare

    async def check(batch: list[CheckCandidate]) -> None:
        async with limiter:
            if not task.budget.spent():
                findings.update(await run_interruptible(_examine_batch, batch, read_ahead))

    try:
        async with asyncio.TaskGroup() as group:
            for batch in batches(page, _size, max_bytes=BATCH_BYTES, max_items=BATCH_FILES):
                group.create_task(check(batch))
    finally:  # also when cancelled: keep what the finished batches found
        await asyncio.shield(_record_page(task, page, findings))


def _size(candidate: CheckCandidate) -> int:
    return candidate.size


def _examine_batch(
    batch: list[CheckCandidate], read_ahead: bool, *, stop: threading.Event
) -> dict[int, Finding]:
    """In a worker thread: hash each file of the batch with its catalogued algorithm; with
    ``read_ahead``, big files with a second thread reading ahead (see
    :mod:`librarian_async.storage.readahead`)."""
    findings: dict[int, Finding] = {}
    readable: list[tuple[CheckCandidate, str]] = []
    for candidate in batch:
        try:
            readable.append((candidate, parse_checksum(candidate.checksum)[0]))
        except ChecksumError as error:
            findings[candidate.instance_id] = Unverifiable(f"catalogue checksum: {error}")
    files = [(Path(candidate.path), algorithm) for candidate, algorithm in readable]
    if read_ahead and worth_reading_ahead([candidate.size for candidate, _ in readable]):
        results = hash_files_sync(files, stop)
    else:
        results = [hash_or_error(path, algorithm, stop) for path, algorithm in files]
    for (candidate, _), result in zip(readable, results, strict=True):
        findings[candidate.instance_id] = _finding(result)
    return findings


def _finding(result: FileDigest | Exception) -> Finding:
    if isinstance(result, FileDigest):
        return result
    if isinstance(result, FileNotFoundError | NotADirectoryError):
        return Missing()
    return Unverifiable(str(result))


async def _record_page(
    task: TaskContext, page: list[CheckCandidate], findings: dict[int, Finding]
) -> None:
    """Count the page; open a write transaction only for the files with a problem."""
    report, troubled = task.report, []
    for candidate in page:
        finding = findings.get(candidate.instance_id)
        if finding is None:
            continue
        report.add("checked")
        if _intact(candidate, finding):
            report.add("ok")
            report.add("bytes", candidate.size)
        else:
            troubled.append(candidate.instance_id)
    if troubled:
        await _record_problems(task, troubled, findings)


def _intact(candidate: CheckCandidate, finding: Finding) -> bool:
    return (
        isinstance(finding, FileDigest)
        and finding.size == candidate.size
        and checksums_match(finding.checksum, candidate.checksum)
    )


async def _record_problems(
    task: TaskContext, instance_ids: list[int], findings: dict[int, Finding]
) -> None:
    now = task.app.now()
    async with task.app.sessions.begin() as session:
        rows = await catalog.instances_with_files(session, instance_ids)
        for instance_id in instance_ids:
            instance, file = rows[instance_id]
            await _record(task, session, instance, file, findings[instance_id], now)


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
        report.add("bytes", finding.size)
        report.add("corrupt")
        report.problem(f"corrupt: {where}: found {finding.checksum}")
        await problems.record_corrupt_instance(
            session, file=file, instance=instance, computed_checksum=finding.checksum, found_at=now
        )
