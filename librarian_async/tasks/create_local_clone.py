"""create_local_clone: copy recent files from one local store into one of several others.

Each page of candidates is planned (a destination per file, by free space), started (ONGOING
``clone_transfers`` rows in one transaction), copied in worker threads, and recorded (instances,
final transfer states, problems in one transaction). Small files are copied in batches, one
thread call per batch, so that a tiny file does not cost a thread hop of its own.

Decisions:

* ``files_per_run`` counts the files a run considers, including those skipped for lack of
  room; a page is also cut at ``PAGE_BYTES`` so that a crash leaves little unrecorded.
* Free space is measured once per page and the planned bytes are subtracted as files are
  placed, so concurrent copies cannot overfill a destination.
* Leftover ONGOING rows are recognised by source and destination stores, not by age: runs
  of one entry never overlap, and a restart right after a crash must recover at once.
  Temporaries are swept only after such evidence of a crash, only in the stores those rows
  point to, and only when older than the run (a full store walk is not free).
* Files left for lack of room, and having no usable destination at all, are problems:
  the operator must make room or bring another store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.config import CreateLocalCloneConfig
from librarian_async.db import catalog, clones, problems
from librarian_async.db.models import File, Instance, Store
from librarian_async.errors import ChecksumError, LibrarianError
from librarian_async.storage.checksum import (
    FileDigest,
    cancel_and_wait,
    checksums_match,
    fsync_directory,
    hash_file_sync,
    parse_checksum,
    remove_file_or_tree,
    run_interruptible,
    sync_files,
)
from librarian_async.storage.convert import local_store
from librarian_async.storage.store import LocalStore
from librarian_async.tasks.base import Report, TaskContext
from librarian_async.tasks.batching import batches

log = logging.getLogger(__name__)

PAGE_SIZE = 256
PAGE_BYTES = 4 * 1024**3
"""A page stops before this many bytes (but takes at least one file): bounds the work a
crash leaves unrecorded, which the next run re-hashes to adopt."""
BATCH_BYTES = 32 * 1024 * 1024
"""Files are copied in batches of up to this many bytes (a bigger file alone) and up to
``BATCH_FILES`` files, made durable by one syncfs: an fsync per 1 MiB file waits for the
disk once per file, while a batch's bytes are already being written (``start_writeback``)
as the next ones are hashed."""
BATCH_FILES = 64
COUNTS = ("cloned", "bytes", "skipped_full", "corrupt", "missing", "failed", "stores_disabled")
INTERRUPTED = "interrupted: the run copying it ended before recording the result"
NOT_ATTEMPTED = "not attempted: the run's time ran out or it was cancelled first"

Page = Sequence[tuple[Instance, File]]


async def run(task: TaskContext, params: CreateLocalCloneConfig) -> Report:
    """Clone recent instances of ``clone_from`` into the first usable ``clone_to`` store.

    Reads: available, not known corrupt instances on ``clone_from`` created within
    ``age_in_days`` whose file has no instance on any ``clone_to`` store, oldest first in
    keyset pages (``files_per_run`` applied in SQL), and the free space of the destinations.

    Writes: a ``clone_transfers`` row per attempt (ONGOING, then COMPLETED or FAILED), an
    instance per verified copy (with the source's deletion policy), ``corrupt_files`` or
    ``errors`` rows for bad or missing sources, ``enabled = False`` on a destination without
    room when ``disable_store_on_full``.

    A rerun after a crash at any point is safe: bytes reach the final path only verified and
    by an atomic no-clobber rename, so a crash leaves a temporary file (swept at the next
    start) or a complete copy (adopted by the next run, which then creates the instance); the
    anti-join and the unique (store, file name) constraint prevent a second instance; rows a
    dead run left ONGOING are marked FAILED ("interrupted") at the start of the next run.
    """
    cloner = await Cloner.load(task, params)
    await cloner.recover()
    await cloner.clone_pages()
    cloner.summarise()
    return task.report


@dataclass(eq=False)
class Destination:
    """A ``clone_to`` store, and the free space this page has not planned to use yet."""

    store: Store
    disk: LocalStore
    free: int = 0


@dataclass(frozen=True)
class Outcome:
    """How one copy ended: ``cloned`` (``path``, ``digest``), ``corrupt`` (``detail`` is the
    computed checksum), ``missing``, or ``failed`` (``detail`` is the reason)."""

    kind: Literal["cloned", "corrupt", "missing", "failed"]
    detail: str = ""
    path: Path | None = None
    digest: FileDigest | None = None


@dataclass(eq=False)
class Job:
    """One planned copy of a source instance into a destination store."""

    instance: Instance
    file: File
    destination: Destination
    transfer_id: int = 0
    outcome: Outcome | None = None


@dataclass(eq=False)
class Cloner:
    """The state of one run: its stores, the destinations still considered, what it warned."""

    task: TaskContext
    params: CreateLocalCloneConfig
    source: Store
    clone_to: list[Store]
    destinations: list[Destination]
    started_wall: float = field(default_factory=time.time)
    disabled: list[Destination] = field(default_factory=list)
    warned: set[str] = field(default_factory=set)
    recording: asyncio.Task[None] | None = None

    @classmethod
    async def load(cls, task: TaskContext, params: CreateLocalCloneConfig) -> Cloner:
        """Read the stores; a disabled ``clone_to`` store is never considered."""
        async with task.app.sessions() as session:
            source = await catalog.store_by_name(session, params.clone_from)
            clone_to = [await catalog.store_by_name(session, name) for name in params.clone_to]
        destinations = [Destination(row, local_store(row)) for row in clone_to if row.enabled]
        task.report.counts.update(dict.fromkeys(COUNTS, 0))
        return cls(task, params, source, clone_to, destinations)

    @property
    def report(self) -> Report:
        return self.task.report

    @property
    def _clone_to_ids(self) -> list[int]:
        return [store.id for store in self.clone_to]

    # --- recovery from a dead run ---------------------------------------------------------

    async def recover(self) -> None:
        """Sweep the temporary copies of a dead run, then fail the transfers it left unfinished.

        Only rows between our source and our ``clone_to`` stores count, so another entry
        cloning the same source elsewhere is left alone. Temporaries are swept (if older than
        this run) only in stores such a row points to, before the rows are failed: a crash
        during the sweep leaves the rows unfinished, so the next run sweeps again.
        """
        async with self.task.app.sessions() as session:
            stale = await clones.unfinished_clone_destinations(
                session, source_store_id=self.source.id, destination_store_ids=self._clone_to_ids
            )
        if not stale:
            return
        disks = [local_store(row) for row in self.clone_to if row.id in stale]
        await asyncio.to_thread(_sweep_temporaries, disks, self.started_wall)
        async with self.task.app.sessions.begin() as session:
            count = await clones.fail_unfinished_clones(
                session,
                source_store_id=self.source.id,
                destination_store_ids=self._clone_to_ids,
                reason=INTERRUPTED,
                ended_at=self.task.app.now(),
            )
        log.warning("%s: %d interrupted clones marked FAILED", self.task.task_name, count)

    # --- pages ----------------------------------------------------------------------------

    async def clone_pages(self) -> None:
        """Page through the candidates, oldest first, until ``files_per_run``, the budget or
        the end of the window."""
        try:
            await self._page_loop()
        finally:  # the last page's outcomes are written whatever ended the loop
            await asyncio.shield(self._await_recording())

    async def _page_loop(self) -> None:
        """The next page's candidates are read while this page's files are copied."""
        created_after = self.task.app.now() - timedelta(days=self.params.age_in_days)
        remaining, after = self.params.files_per_run, (created_after, 0)
        limit = min(PAGE_SIZE, remaining)
        fetching = asyncio.ensure_future(self._candidates(created_after, after, limit))
        try:
            while not self.task.budget.spent():
                fetched = await fetching
                page = _cut_by_bytes(fetched, PAGE_BYTES)
                ended = len(page) == len(fetched) < limit  # the window has no more candidates
                remaining -= len(page)
                if page and not ended and remaining > 0:
                    after = (page[-1][0].created_time, page[-1][0].id)
                    limit = min(PAGE_SIZE, remaining)
                    fetching = asyncio.ensure_future(self._candidates(created_after, after, limit))
                if not page or not await self._clone_page(page) or ended or remaining <= 0:
                    return
        finally:
            await cancel_and_wait(fetching)

    async def _await_recording(self) -> None:
        if self.recording is not None:
            await self.recording
            self.recording = None

    async def _candidates(
        self, created_after: datetime, after: tuple[datetime, int], limit: int
    ) -> Page:
        async with self.task.app.sessions() as session:
            return await clones.clone_candidates(
                session,
                source_store_id=self.source.id,
                clone_to_ids=self._clone_to_ids,
                created_after=created_after,
                after=after,
                limit=limit,
            )

    async def _clone_page(self, page: Page) -> bool:
        """Clone one page; False when no destination can take anything (stop the run)."""
        usable = await self._survey()
        if not usable:
            names = ", ".join(self.params.clone_to)
            self.report.problem(f"no enabled, available destination with room among {names}")
            return False
        jobs = self._plan(page, usable)
        await self._start(jobs)
        if jobs:
            try:
                await self._copy_all(jobs)
            finally:  # recorded while the next page is fetched and copied
                await asyncio.shield(self._record_in_background(jobs))
        return True

    async def _record_in_background(self, jobs: list[Job]) -> None:
        """Start recording this page once the previous page's recording has finished."""
        await self._await_recording()
        self.recording = asyncio.create_task(self._record(jobs))

    # --- choosing destinations --------------------------------------------------------------

    async def _survey(self) -> list[Destination]:
        """The destinations whose directories exist, with their free space measured now."""
        usable = await asyncio.to_thread(_measure, self.destinations)
        for destination in self.destinations:
            if destination not in usable and destination.store.name not in self.warned:
                self.warned.add(destination.store.name)
                log.warning("%s: store %r unavailable", self.task.task_name, destination.store.name)
        return usable

    def _plan(self, page: Page, usable: list[Destination]) -> list[Job]:
        """A destination for each file (first with room), keeping count of the space taken."""
        jobs = []
        for instance, file in page:
            destination = self._place(file.size, usable)
            if destination is None:
                self.report.add("skipped_full")
                log.debug("%s: no room for %s", self.task.task_name, file.name)
                continue
            destination.free -= file.size
            jobs.append(Job(instance, file, destination))
        return jobs

    def _place(self, size: int, usable: list[Destination]) -> Destination | None:
        for destination in list(usable):
            if destination.free >= size:
                return destination
            if self.params.disable_store_on_full:
                self._disable(destination, usable)
        return None

    def _disable(self, destination: Destination, usable: list[Destination]) -> None:
        usable.remove(destination)
        self.destinations.remove(destination)
        self.disabled.append(destination)
        self.report.add("stores_disabled")
        log.warning(
            "%s: store %r is full; disabling it", self.task.task_name, destination.store.name
        )

    # --- the page's transactions --------------------------------------------------------------

    async def _start(self, jobs: list[Job]) -> None:
        """Persist the stores found full and an ONGOING transfer per job, in one transaction."""
        if not jobs and not self.disabled:
            return
        planned = [
            clones.PlannedClone(job.file.name, job.instance.id, job.destination.store.id)
            for job in jobs
        ]
        async with self.task.app.sessions.begin() as session:
            for destination in self.disabled:
                await clones.disable_store(session, destination.store.id)
            ids = await clones.start_clones(
                session, planned, source_store_id=self.source.id, started_at=self.task.app.now()
            )
        self.disabled.clear()
        for job in jobs:
            job.transfer_id = ids[job.instance.id]

    async def _record(self, jobs: list[Job]) -> None:
        """Write every outcome of the page in one transaction, then count them."""
        now = self.task.app.now()
        async with self.task.app.sessions.begin() as session:
            await clones.complete_clones(session, _verified_copies(jobs), finished_at=now)
            await clones.fail_clones(session, _ended_clones(jobs), finished_at=now)
            for job in jobs:
                await self._record_problem(session, job, now)
        for job in jobs:
            self._count(job)

    async def _record_problem(self, session: AsyncSession, job: Job, now: datetime) -> None:
        outcome = job.outcome
        if outcome is not None and outcome.kind == "corrupt":
            await problems.record_corrupt_instance(
                session,
                file=job.file,
                instance=job.instance,
                computed_checksum=outcome.detail,
                found_at=now,
            )
        elif outcome is not None and outcome.kind == "missing":
            await problems.record_missing_instance(
                session, instance=job.instance, caller=self.task.task_name, found_at=now
            )

    def _count(self, job: Job) -> None:
        outcome = job.outcome
        if outcome is None:
            return
        self.report.add(outcome.kind)
        if outcome.digest is not None:
            self.report.add("bytes", outcome.digest.size)
        if outcome.kind != "cloned":
            detail = f": {outcome.detail}" if outcome.kind == "failed" else ""
            self.report.problem(f"{outcome.kind}: {job.file.name} ({job.instance.path}){detail}")

    # --- copying ---------------------------------------------------------------------------

    async def _copy_all(self, jobs: list[Job]) -> None:
        """Copy with ``concurrency`` batches in flight; no new batch once the budget is spent."""
        limiter = asyncio.Semaphore(self.params.concurrency)

        async def copy(batch: list[Job]) -> None:
            async with limiter:
                if not self.task.budget.spent():
                    await run_interruptible(_copy_batch, batch)

        async with asyncio.TaskGroup() as group:
            for batch in batches(jobs, _size, max_bytes=BATCH_BYTES, max_items=BATCH_FILES):
                group.create_task(copy(batch))

    def summarise(self) -> None:
        """Files left behind for lack of room are a problem: the operator must make room."""
        skipped = self.report.counts.get("skipped_full", 0)
        if skipped:
            self.report.problem(f"{skipped} files skipped: no destination had room for them")


# --- pure helpers and the code running in worker threads -----------------------------------


def _verified_copies(jobs: list[Job]) -> list[clones.VerifiedCopy]:
    return [
        clones.VerifiedCopy(
            transfer_id=job.transfer_id,
            file_name=job.file.name,
            store_id=job.destination.store.id,
            path=str(job.outcome.path),
            deletion_policy=job.instance.deletion_policy,
            checksum=job.outcome.digest.checksum,
            size=job.outcome.digest.size,
        )
        for job in jobs
        if job.outcome is not None and job.outcome.digest is not None
    ]


def _ended_clones(jobs: list[Job]) -> list[clones.EndedClone]:
    ended = []
    for job in jobs:
        if job.outcome is None:
            ended.append(clones.EndedClone(job.transfer_id, NOT_ATTEMPTED))
        elif job.outcome.kind != "cloned":
            ended.append(clones.EndedClone(job.transfer_id, _failure_reason(job, job.outcome)))
    return ended


def _failure_reason(job: Job, outcome: Outcome) -> str:
    if outcome.kind == "corrupt":
        return f"source corrupt: {outcome.detail}, catalogue says {job.file.checksum}"
    if outcome.kind == "missing":
        return f"source missing: {job.instance.path}"
    return outcome.detail


def _cut_by_bytes(page: Page, limit: int) -> Page:
    """The longest prefix of ``page`` within ``limit`` bytes, but at least one file."""
    total = 0
    for index, (_, file) in enumerate(page):
        total += file.size
        if total > limit and index > 0:
            return page[:index]
    return page


def _size(job: Job) -> int:
    return job.file.size


def _measure(destinations: list[Destination]) -> list[Destination]:
    """(Worker thread.) The available destinations, their ``free`` set from the disk."""
    usable = []
    for destination in destinations:
        if destination.disk.available:
            destination.free = destination.disk.free_space()
            usable.append(destination)
    return usable


def _sweep_temporaries(disks: list[LocalStore], started_wall: float) -> None:
    """(Worker thread.) Remove temporary copies older than this run from these stores."""
    for disk in disks:
        if disk.available:
            for path in disk.remove_leftover_temporaries(time.time() - started_wall):
                log.warning("removed leftover temporary %s", path)


@dataclass(frozen=True)
class Prepared:
    """A verified copy at a temporary name, not yet durable nor at its final path."""

    temporary: Path
    target: Path
    digest: FileDigest


def _copy_batch(batch: list[Job], *, stop: threading.Event) -> None:
    """(Worker thread.) Copy every job of the batch to a temporary name, make all those
    copies durable at once (one syncfs instead of an fsync per file), rename them into
    place, then fsync each directory once: nothing is at a final path before its bytes are
    durable, and no outcome is visible to the recording step before its rename is."""
    steps: list[Outcome | Prepared] = []
    try:
        steps = [_clone_one(job, stop) for job in batch]
        sync_files([step.temporary for step in steps if isinstance(step, Prepared)])
        outcomes = [_install(job, step) for job, step in zip(batch, steps, strict=True)]
    finally:  # an error or a stop: no temporary left behind
        for step in steps:
            if isinstance(step, Prepared):
                remove_file_or_tree(step.temporary)
    for directory in {outcome.path.parent for outcome in outcomes if outcome.path is not None}:
        fsync_directory(directory)
    for job, outcome in zip(batch, outcomes, strict=True):
        job.outcome = outcome


def _install(job: Job, step: Outcome | Prepared) -> Outcome:
    if isinstance(step, Outcome):
        return step
    try:
        job.destination.disk.install_prepared_sync(step.temporary, step.target, step.digest)
    except (LibrarianError, OSError) as error:
        return Outcome("failed", f"{error}")
    log.debug("cloned %s to %s", job.file.name, step.target)
    return Outcome("cloned", path=step.target, digest=step.digest)


def _clone_one(job: Job, stop: threading.Event) -> Outcome | Prepared:
    """Adopt or copy; expected problems become outcomes, anything else stops the run."""
    source = Path(job.instance.path)
    try:
        return _adopt_or_copy(job, source, stop)
    except FileNotFoundError as error:
        missing = not os.path.lexists(source)
        return Outcome("missing") if missing else Outcome("failed", f"{error}")
    except ChecksumError:
        return _corrupt_or_failed(source, job.file, stop)
    except (LibrarianError, OSError) as error:
        return Outcome("failed", f"{error}")


def _adopt_or_copy(job: Job, source: Path, stop: threading.Event) -> Outcome | Prepared:
    disk, name = job.destination.disk, job.file.name
    target = disk.resolve_in_store(name)
    if os.path.lexists(target):
        return _adopt(target, job.file, stop)
    temporary, digest = disk.prepare_copy_sync(source, target, job.file.checksum, stop)
    return Prepared(temporary, target, digest)


def _adopt(target: Path, file: File, stop: threading.Event) -> Outcome:
    """A file already at the final path (a run died before recording it): keep it if it
    matches the catalogue, without reading the source again; never replace it."""
    digest = hash_file_sync(target, parse_checksum(file.checksum)[0], stop)
    if not checksums_match(digest.checksum, file.checksum):
        return Outcome("failed", f"{target} exists with different content")
    log.debug("adopted %s left at %s", file.name, target)
    return Outcome("cloned", path=target, digest=digest)


def _corrupt_or_failed(source: Path, file: File, stop: threading.Event) -> Outcome:
    """The copy did not match: hash the source again to tell corruption from a bad read."""
    try:
        computed = hash_file_sync(source, parse_checksum(file.checksum)[0], stop)
    except (ChecksumError, OSError) as error:
        return Outcome("failed", f"{error}")
    if checksums_match(computed.checksum, file.checksum):
        return Outcome("failed", "the copy did not verify, but the source does now")
    return Outcome("corrupt", computed.checksum)
