"""receive_clone: ingest the staged files of incoming transfers, then tell their sources.

Reads: STAGED incoming transfers into enabled stores whose directories exist, oldest first
(``start_time``, ``id``), in keyset pages, at most ``files_per_run`` a run, each with the
checksum of a file already catalogued under its name; the staged bytes at
``staging_path/upload_name`` (confined to the store's staging area, never a symlink).

Each file is hashed in a worker thread with the transfer's algorithm and compared with its
size and checksum (a file that the http upload endpoint, the ``local`` sender or a
SneakerNet ingest verified as its bytes were written is not read again while its stat is
exactly the one recorded then, ``verified_stat``: its device, inode, size, mtime and ctime;
any write, replacement or touch changes the ctime, and re-reading would only hash the same
bytes a second time), then committed into the store at ``store_path`` by
:meth:`LocalStore.commit_sync` in the same thread (no clobbering; an identical file already
there is adopted). Files go in batches (up to ``BATCH_BYTES`` bytes to hash or
``BATCH_FILES`` files a thread call), ``concurrency`` batches at a time. A batch's commits
skip the directory fsync that a single commit makes; once the batch is committed, each
distinct directory that received a file is fsynced once (a directory that cannot be synced
fails its files).

Writes, per batch in one short transaction: for each committed file, the file row (unless
catalogued), an instance (``deletion_policy``) and the transfer STAGED -> COMPLETED; for
each bad, missing or conflicting file, the transfer STAGED -> FAILED with its
``failure_reason``. Both set ``callback_pending`` when the transfer has a source transfer.
Then the staging directories of the moved transfers are removed, and the sources are
called back (:mod:`librarian_async.tasks.callbacks`).

Decisions:

* A file catalogued under the name with the same checksum is adopted (an instance is added
  if the store lacks one); with another checksum the transfer fails and nothing is
  overwritten. A catalogued checksum of another algorithm is compared by hashing the
  staged bytes with that algorithm too.
* A disabled store, or one whose directories are missing (an unmounted disk), is left
  alone: its transfers stay STAGED (a problem line) instead of failing as "missing". A
  store that stopped being ``ingestable`` after staging still receives what it accepted.
* A file that cannot be committed (a different file at its name, an I/O error) fails its
  transfer: the source may send it again, and one bad item never blocks the others.
* Each run ends by removing orphaned staging directories (no live transfer, unchanged
  for a day: :mod:`librarian_async.tasks.staging_sweep`).
* Callbacks due from earlier runs are sent first, so a backlog that spends the budget
  cannot starve them; those of this run are sent at its end.

Why a rerun after a crash or a cancellation at any point is safe: a transfer stays STAGED
until the transaction that catalogues its file, and that transaction starts only after the
batch's directories are fsynced, so nothing is recorded before its directory entry is
durable (an adopted file's directory is fsynced too; the bytes themselves are as durable as
with ``commit``: the same-filesystem link takes the staged bytes as they are, a copy across
filesystems is fsynced before its rename). Killed before the commit into the store, the
next run verifies the staged bytes again. Killed after the commit but before the transaction (the
directory synced or not), the next run finds the staged file gone and a file matching the
transfer's size and checksum at its name, and adopts it (if both copies exist,
``commit_sync`` adopts the identical one). A machine crash before the fsync may lose the
unsynced rename: the next run then finds the staged file and verifies it again (or, had the
filesystem kept only the unlink of the staged name, fails the transfer as missing, so the
source can send it again): either way the catalogue never names a file that is not there.
A cancellation stops the batch between files: what is committed by then is synced and
recorded, the rest stays STAGED. Killed after the transaction, the row is final and never
selected again; its callback stays pending until a run delivers it. Conditional UPDATEs and
inserts that ignore duplicates mean an overlapping run cannot complete a transfer twice,
nor duplicate a file or an instance.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.config import ReceiveCloneConfig
from librarian_async.db import catalog, receiving
from librarian_async.db.models import Store
from librarian_async.db.receiving import ReceivedFile, StagedTransfer
from librarian_async.errors import LibrarianError, PathEscapeError, StoreUnavailableError
from librarian_async.storage.checksum import (
    FileDigest,
    checksums_match,
    fsync_directory,
    hash_file_sync,
    parse_checksum,
    run_interruptible,
    stat_fingerprint,
    sync_files,
)
from librarian_async.storage.convert import local_store
from librarian_async.storage.store import LocalStore
from librarian_async.tasks.base import Report, TaskContext
from librarian_async.tasks.batching import batches
from librarian_async.tasks.callbacks import CallbackSender, finish_shielded
from librarian_async.tasks.staging_sweep import sweep_orphaned_staging

log = logging.getLogger(__name__)

PAGE_SIZE = 256
BATCH_BYTES = 8 * 1024 * 1024
BATCH_FILES = 64
COUNTS = ("received", "bytes", "failed", "callbacks_sent", "callbacks_failed", "callbacks_pending")


async def run(task: TaskContext, params: ReceiveCloneConfig) -> Report:
    """Ingest staged transfers and call their sources back; see the module docstring."""
    task.report.counts.update(dict.fromkeys(COUNTS, 0))
    callbacks = CallbackSender(task)
    await callbacks.send_due()
    receiver = await Receiver.load(task, params)
    await receiver.receive_pages()
    await callbacks.send_due()
    await callbacks.count_pending()
    swept = await sweep_orphaned_staging(task.app)
    if swept:
        task.report.add("orphaned_staging_removed", swept)
    return task.report


@dataclass(frozen=True)
class Verified:
    """Bytes matching the transfer, staged at ``staged`` (None: already at ``target``)."""

    digest: FileDigest
    target: Path
    staged: Path | None


@dataclass(frozen=True)
class Committed:
    """Bytes matching the transfer, now at ``path`` in the store."""

    digest: FileDigest
    path: Path


@dataclass(frozen=True)
class Rejected:
    """The transfer cannot be ingested; ``reason`` says why (its failure reason)."""

    reason: str


@dataclass(frozen=True)
class Job:
    """One staged transfer and the store it goes to (None: the row names no usable store)."""

    transfer: StagedTransfer
    disk: LocalStore | None


Result = Committed | Rejected


@dataclass(eq=False)
class Receiver:
    """One run's ingest: its parameters and the stores it may write to, by id."""

    task: TaskContext
    params: ReceiveCloneConfig
    disks: dict[int, LocalStore]

    @classmethod
    async def load(cls, task: TaskContext, params: ReceiveCloneConfig) -> Receiver:
        """Find the usable stores: enabled, with both directories present."""
        async with task.app.sessions() as session:
            stores = await catalog.all_stores(session)
            waiting = await receiving.staged_counts_by_store(session)
        enabled = {store.id: local_store(store) for store in stores if store.enabled}
        usable = await asyncio.to_thread(_available, enabled)
        for store in stores:
            if store.id not in usable and waiting.get(store.name):
                _report_unusable(task, store, waiting[store.name])
        return cls(task, params, usable)

    @property
    def report(self) -> Report:
        return self.task.report

    # --- pages and batches ------------------------------------------------------------------

    async def receive_pages(self) -> None:
        """Page through the STAGED transfers until ``files_per_run``, the budget or the end."""
        remaining, after = self.params.files_per_run, None
        while remaining > 0 and not self.task.budget.spent():
            limit = min(PAGE_SIZE, remaining)
            async with self.task.app.sessions() as session:
                page = await receiving.staged_transfers(
                    session, store_ids=list(self.disks), after=after, limit=limit
                )
            await self._receive_page(page)
            if len(page) < limit:
                return
            remaining -= len(page)
            after = (page[-1].start_time, page[-1].id)

    async def _receive_page(self, page: list[StagedTransfer]) -> None:
        """Receive a page, ``concurrency`` batches at a time; none once the budget is spent."""
        limiter = asyncio.Semaphore(self.params.concurrency)
        jobs = [Job(transfer, self._disk_of(transfer)) for transfer in page]

        async def receive(batch: list[Job]) -> None:
            async with limiter:
                if not self.task.budget.spent():
                    await self._receive_batch(batch)

        async with asyncio.TaskGroup() as group:
            for batch in batches(jobs, _size, max_bytes=BATCH_BYTES, max_items=BATCH_FILES):
                group.create_task(receive(batch))

    def _disk_of(self, transfer: StagedTransfer) -> LocalStore | None:
        return None if transfer.store_id is None else self.disks.get(transfer.store_id)

    async def _receive_batch(self, batch: list[Job]) -> None:
        """Verify and commit in a thread, then record every result (also when cancelled or
        when a store vanishes: what is committed is recorded, the rest stays STAGED)."""
        results: dict[int, Result] = {}
        try:
            await run_interruptible(_receive_in_thread, batch, results)
        finally:
            await finish_shielded(self._record(batch, results))

    # --- recording --------------------------------------------------------------------------

    async def _record(self, batch: list[Job], results: Mapping[int, Result]) -> None:
        """One transaction for the batch, then unstage and count what was really moved."""
        if not results:
            return
        received = [_received(job, results.get(job.transfer.id)) for job in batch]
        accepted = [item for item in received if item is not None]
        failures = [
            (key, result.reason) for key, result in results.items() if isinstance(result, Rejected)
        ]
        now = self.task.app.now()
        async with self.task.app.sessions.begin() as session:
            late = await _late_conflicts(session, batch, accepted)
            accepted = [item for item in accepted if item.transfer_id not in late]
            completed = await receiving.complete_received(
                session, accepted, deletion_policy=self.params.deletion_policy, at=now
            )
            failed = await receiving.fail_received(session, [*failures, *late.items()], at=now)
        ended = [job for job in batch if job.transfer.id in completed | failed]
        await asyncio.to_thread(_unstage, ended)
        self._count(batch, results, completed, failed, {**dict(failures), **late})

    def _count(
        self,
        batch: list[Job],
        results: Mapping[int, Result],
        completed: set[int],
        failed: set[int],
        reasons: Mapping[int, str],
    ) -> None:
        for job in batch:
            transfer, result = job.transfer, results.get(job.transfer.id)
            if transfer.id in completed and isinstance(result, Committed):
                self.report.add("received")
                self.report.add("bytes", result.digest.size)
            elif transfer.id in failed:
                self.report.add("failed")
                self.report.problem(f"failed: {_describe(transfer)}: {reasons[transfer.id]}")
            elif isinstance(result, Committed):
                self.report.problem(
                    f"{_describe(transfer)}: changed meanwhile by another run or the source; "
                    f"not recorded by this run (its file is at {result.path})"
                )


# --- helpers running on the event loop --------------------------------------------------------


def _size(job: Job) -> int:
    """A job's weight in a batch: the bytes it will hash. A file verified as it was staged is
    only compared with its recorded stat, so 64 of them share one transaction and syncfs
    (sized by their bytes, 1 MiB files went 8 to a batch: per-batch costs dominated)."""
    return job.transfer.size if job.transfer.verified_stat is None else 0


def _describe(transfer: StagedTransfer) -> str:
    name = transfer.store_path or transfer.upload_name
    return f"{name} (incoming transfer {transfer.id} from {transfer.source!r})"


def _report_unusable(task: TaskContext, store: Store, count: int) -> None:
    why = "it is disabled" if not store.enabled else "its staging or store area is missing"
    message = f"{count} staged transfers wait on store {store.name!r}: {why}"
    log.warning("%s: %s", task.task_name, message)
    task.report.problem(message)


def _received(job: Job, result: Result | None) -> ReceivedFile | None:
    transfer = job.transfer
    if not isinstance(result, Committed) or transfer.store_id is None:
        return None
    return ReceivedFile(
        transfer_id=transfer.id,
        name=transfer.store_path or "",
        size=result.digest.size,
        checksum=transfer.checksum,
        uploader=transfer.uploader,
        source=transfer.source,
        store_id=transfer.store_id,
        path=str(result.path),
    )


async def _late_conflicts(
    session: AsyncSession, batch: list[Job], accepted: Sequence[ReceivedFile]
) -> dict[int, str]:
    """Transfers whose name was catalogued with another checksum since the page was read."""
    catalogued = await receiving.catalogued_checksums(session, [item.name for item in accepted])
    seen = {job.transfer.id: job.transfer.catalogued_checksum for job in batch}
    late = {}
    for item in accepted:
        found = catalogued.get(item.name)
        if (
            found is not None
            and found != seen[item.transfer_id]
            and not _same(found, item.checksum)
        ):
            late[item.transfer_id] = (
                f"file {item.name!r} was catalogued meanwhile with checksum {found}; "
                f"the received copy is left uncatalogued at {item.path}"
            )
    return late


def _same(first: str, second: str) -> bool:
    try:
        return checksums_match(first, second)
    except LibrarianError:
        return False


# --- code running in worker threads -------------------------------------------------------


def _available(disks: dict[int, LocalStore]) -> dict[int, LocalStore]:
    return {store_id: disk for store_id, disk in disks.items() if disk.available}


def _unstage(jobs: list[Job]) -> None:
    """Remove the staging directories of ended transfers; a failure is only logged."""
    for job in jobs:
        directory = job.transfer.staging_path
        if job.disk is None or directory is None:
            continue
        try:
            job.disk.remove_staging_dir(Path(directory), job.transfer.upload_name)
        except (LibrarianError, OSError) as error:
            log.warning(
                "transfer %d: staging %s not removed: %s", job.transfer.id, directory, error
            )


def _receive_in_thread(
    batch: list[Job], results: dict[int, Result], *, stop: threading.Event
) -> None:
    """Verify each file of the batch, make the verified bytes durable at once
    (``sync_files``: one syncfs for the batch), commit each (without a directory fsync
    each), then fsync each directory that received a file, once. ``results`` fills as it goes; when
    ``stop`` or an error ends the loop early, what is committed by then is synced too and
    left in ``results`` to be recorded."""
    try:
        plain_dirs: set[str] = set()  # folders of the batch found not to be links
        checks = [(job, _verify(job, stop, plain_dirs)) for job in batch]
        sync_files(_staged_paths(checks))
        for job, check in checks:
            results[job.transfer.id] = _commit(job, check, stop, plain_dirs)
    finally:
        _sync_directories(results)


def _staged_paths(checks: list[tuple[Job, Verified | Rejected]]) -> list[Path]:
    """The staged files of the verified checks (not those already at their target)."""
    return [c.staged for _, c in checks if isinstance(c, Verified) and c.staged is not None]


def _commit(
    job: Job, check: Verified | Rejected, stop: threading.Event, plain_dirs: set[str]
) -> Result:
    """Install verified staged bytes into the store (a file already there is adopted); a
    rejected check stays rejected."""
    if isinstance(check, Rejected):
        return check
    if check.staged is None or job.disk is None:
        return Committed(check.digest, check.target)
    staged, name = check.staged, job.transfer.store_path or ""
    try:
        path = job.disk.commit_sync(
            staged, name, check.digest, stop, sync_data=False, plain_dirs=plain_dirs
        )
    except StoreUnavailableError:
        raise
    except FileNotFoundError:  # another run committed it meanwhile: check what it left
        return _as_result(_guarded(lambda: _adopt_target(job.transfer, staged, check.target, stop)))
    except (LibrarianError, OSError) as error:
        return Rejected(f"not committed into store {job.disk.name!r}: {error}")
    return Committed(check.digest, path)


def _as_result(check: Verified | Rejected) -> Result:
    """A file adopted at its target is committed."""
    return check if isinstance(check, Rejected) else Committed(check.digest, check.target)


def _sync_directories(results: dict[int, Result]) -> None:
    """fsync, once each, the directories holding committed files, so that their entries are
    durable before any of them is recorded; a directory that cannot be synced fails its
    files."""
    committed: dict[Path, list[int]] = {}
    for transfer_id, result in results.items():
        if isinstance(result, Committed):
            committed.setdefault(result.path.parent, []).append(transfer_id)
    for directory, transfer_ids in committed.items():
        try:
            fsync_directory(directory)
        except OSError as error:
            for transfer_id in transfer_ids:
                results[transfer_id] = Rejected(f"{directory} not synced to disk: {error}")


def _verify(job: Job, stop: threading.Event, plain_dirs: set[str]) -> Verified | Rejected:
    """Check one staged file; expected problems become a Rejected, a vanished store raises."""
    transfer, disk = job.transfer, job.disk
    if disk is None or transfer.staging_path is None or transfer.store_path is None:
        return Rejected("the transfer names no store, staging directory or file name")
    return _guarded(lambda: _verify_on(disk, transfer, stop, plain_dirs))


def _guarded(check: Callable[[], Verified | Rejected]) -> Verified | Rejected:
    """Run a check; an expected problem becomes a Rejected, a vanished store area raises."""
    try:
        return check()
    except StoreUnavailableError:
        raise
    except FileNotFoundError as error:
        return Rejected(f"staged file vanished while being read: {error}")
    except (LibrarianError, OSError) as error:
        return Rejected(str(error))


def _verify_on(
    disk: LocalStore, transfer: StagedTransfer, stop: threading.Event, plain_dirs: set[str]
) -> Verified | Rejected:
    conflict = _catalogue_conflict(transfer)
    if conflict is not None:
        return Rejected(conflict)
    staged = _staged_path(disk, transfer, plain_dirs)
    target = disk.resolve_in_store(transfer.store_path or "", plain_dirs)
    if staged.is_symlink():
        return Rejected(f"staged {staged} is a symlink")
    try:
        digest = _verified_on_arrival(transfer, staged) or hash_file_sync(
            staged, _algorithm(transfer), stop
        )
    except FileNotFoundError:  # never arrived, or committed by a run that died or runs beside us
        return _adopt_target(transfer, staged, target, stop)
    problem = _mismatch(transfer, digest) or _catalogue_mismatch(transfer, staged, stop)
    return Rejected(f"staged {staged}: {problem}") if problem else Verified(digest, target, staged)


def _verified_on_arrival(transfer: StagedTransfer, staged: Path) -> FileDigest | None:
    """The transfer's size and checksum when the upload endpoint, the ``local`` sender or a
    SneakerNet ingest verified exactly this version of the staged file as its bytes were
    written (same device, inode, size, mtime and ctime); None when the file must be hashed."""
    if transfer.verified_stat is None or stat_fingerprint(staged) != transfer.verified_stat:
        return None
    return FileDigest(transfer.checksum, transfer.size)


def _staged_path(disk: LocalStore, transfer: StagedTransfer, plain_dirs: set[str]) -> Path:
    """``staging_path/upload_name``, refused if it leaves the store's staging area."""
    directory = Path(transfer.staging_path or "")
    if not directory.is_relative_to(disk.staging_path):
        message = f"staging directory {directory} is outside the staging area {disk.staging_path}"
        raise PathEscapeError(f"store {disk.name!r}: {message}")
    relative = directory.relative_to(disk.staging_path).as_posix()
    return disk.resolve_in_staging(f"{relative}/{transfer.upload_name}", plain_dirs)


def _adopt_target(
    transfer: StagedTransfer, staged: Path, target: Path, stop: threading.Event
) -> Verified | Rejected:
    """The staged file is gone: a matching file at the target is what a crash after the
    commit left; anything else means the bytes never arrived."""
    missing = f"staged file {staged} is missing"
    if not os.path.lexists(target) or target.is_symlink():
        return Rejected(missing)
    digest = hash_file_sync(target, _algorithm(transfer), stop)
    if _mismatch(transfer, digest) or _catalogue_mismatch(transfer, target, stop):
        return Rejected(f"{missing} (and {target} holds other content)")
    log.info("incoming transfer %d: adopting %s already in the store", transfer.id, target)
    return Verified(digest, target, None)


def _algorithm(transfer: StagedTransfer) -> str:
    return parse_checksum(transfer.checksum)[0]


def _mismatch(transfer: StagedTransfer, digest: FileDigest) -> str | None:
    if digest.size != transfer.size:
        return f"size {digest.size} bytes, expected {transfer.size}"
    if not checksums_match(digest.checksum, transfer.checksum):
        return f"checksum {digest.checksum}, expected {transfer.checksum}"
    return None


def _catalogue_conflict(transfer: StagedTransfer) -> str | None:
    """A file of that name is catalogued with another checksum of the same algorithm."""
    catalogued = transfer.catalogued_checksum
    if catalogued is None or _algorithm_of(catalogued) != _algorithm(transfer):
        return None
    if checksums_match(catalogued, transfer.checksum):
        return None
    return _conflict_message(transfer, catalogued)


def _catalogue_mismatch(transfer: StagedTransfer, path: Path, stop: threading.Event) -> str | None:
    """The catalogued checksum is of another algorithm: hash ``path`` with it to compare."""
    catalogued = transfer.catalogued_checksum
    if catalogued is None or _algorithm_of(catalogued) == _algorithm(transfer):
        return None
    digest = hash_file_sync(path, _algorithm_of(catalogued), stop)
    return (
        None
        if checksums_match(digest.checksum, catalogued)
        else _conflict_message(transfer, catalogued)
    )


def _algorithm_of(checksum: str) -> str:
    return parse_checksum(checksum)[0]


def _conflict_message(transfer: StagedTransfer, catalogued: str) -> str:
    return (
        f"file {transfer.store_path!r} is already catalogued with checksum {catalogued}, "
        f"not {transfer.checksum}; not overwritten"
    )
