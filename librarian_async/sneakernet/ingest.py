"""``manifest ingest``: stage the files of a shipped drive at the destination librarian.

Runs directly on the destination's own database, as the process that owns the librarian
(on the host of its stores): a drive is mounted there, not sent over HTTP. Staging reuses
the API's :func:`~librarian_async.api.staging.stage_batch`, acting for the source librarian
(``source`` and uploader = the manifest's ``librarian_name``, ``source_transfer_id`` = the
entry's ``outgoing_transfer_id``), so the rows look exactly like a network clone's and
``receive_clone`` ingests them and calls the right librarian back.

Reads: the manifest, twice and one entry at a time (a full check first, so a bad manifest
changes nothing; then the entries in batches of at most :data:`BATCH_FILES` files or
:data:`BATCH_BYTES` bytes); per batch, the incoming transfers an earlier run made for its
entries, the catalogue and the live incoming transfers to its names; each file on the
drive at ``<store root>/<instance_path relative to the manifest's store_path>``.

Per batch:

1. decide each entry: already received or staged by an earlier run (skipped); staged but
   not copied by an earlier run (copied again); failed earlier (reported again); a path
   leaving the drive (FAILED); catalogued here with the same checksum (skipped, recorded
   COMPLETED so the source learns it is done) or another one (FAILED); a name another
   transfer is delivering right now (left for a later run); or new;
2. record the decided rows (one transaction), then stage the new entries (``stage_batch``:
   INITIATED transfers and their staging directories);
3. copy each file into its staging location, hashing on the same pass, and compare with the
   manifest's size and checksum (a damaged or missing file is removed from staging);
4. one transaction: verified copies INITIATED -> STAGED with the stat of their staged file
   (``verified_stat``: receive_clone does not hash them again while unchanged), the others
   FAILED with ``callback_pending`` (``receive_clone`` tells the source with
   ``checkin/update``; the source's transfer fails and its next network ``send_clone``
   sends the file); then the failed transfers' staging directories are removed.

Why a rerun after a crash (even ``kill -9``) at any point is safe: an entry's transfer is
found again by ``(source, source_transfer_id)`` before anything is staged. A transfer
staged but never marked STAGED is copied again over whatever partial copy was left; one
already STAGED, COMPLETED or FAILED is not touched. A staging directory made just before
a crash, whose transfer was never committed, is an orphan for the staging sweep.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from librarian_async.api.auth import Caller
from librarian_async.api.stage_rules import StagingRefused
from librarian_async.api.staging import StagingRequest, stage_batch
from librarian_async.api.state import ApiState
from librarian_async.api.unstaging import unstage
from librarian_async.context import Context
from librarian_async.db import manifests, peers, receiving, transfers
from librarian_async.db.manifests import SettledIncoming
from librarian_async.db.models import IncomingTransfer
from librarian_async.enums import AuthLevel, TransferStatus
from librarian_async.errors import LibrarianError, NotFoundError
from librarian_async.remote.schemas import UploadItem
from librarian_async.sneakernet.manifest import (
    ManifestEntry,
    ManifestError,
    ManifestHeader,
    check_manifest,
    read_entries,
)
from librarian_async.storage.checksum import (
    FileDigest,
    checksums_match,
    copy_and_hash_sync,
    fsync_directory,
    parse_checksum,
    remove_file_or_tree,
    run_interruptible,
    stat_fingerprint,
)
from librarian_async.storage.store import name_problem
from librarian_async.tasks.batching import batches
from librarian_async.tasks.callbacks import finish_shielded

S = TransferStatus
BATCH_FILES = 64
BATCH_BYTES = 1024**3
SKIPPED_HERE = "already catalogued here (the source is told it is complete)"
SKIPPED_STAGED = "already staged by an earlier run"
SKIPPED_RECEIVED = "already received by an earlier run"

Progress = Callable[[int, int], None]
"""Called with (entries done, entries in the manifest) after each batch."""


@dataclass
class IngestSummary:
    """What an ingest did; ``failed`` has one line per entry that was not staged."""

    manifest: Path
    source: str = ""
    store_name: str = ""
    entries: int = 0
    staged: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every entry is staged or skipped, 1 when any failed."""
        return 1 if self.failed else 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def lines(self) -> list[str]:
        """A short human summary (the failures are listed separately, one line each)."""
        lines = [
            f"manifest {self.manifest} from {self.source!r} (store {self.store_name!r}): "
            f"{self.entries} files",
            f"staged: {self.staged} ({self.bytes} bytes); receive_clone ingests them",
        ]
        lines += [f"skipped: {count} {reason}" for reason, count in self.skipped.items()]
        if self.failed:
            lines.append(f"failed: {len(self.failed)}")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {**vars(self), "manifest": str(self.manifest), "exit_code": self.exit_code}


async def ingest_manifest(
    app: Context, manifest: Path, store_root: Path, progress: Progress | None = None
) -> IngestSummary:
    """Stage every entry of ``manifest`` from the drive mounted at ``store_root``.

    Raises ManifestError (nothing done) for a manifest that cannot be read or is not meant
    for this librarian, NotFoundError for a missing ``store_root``. Entries that fail are
    in the summary; the others go on.
    """
    info = await asyncio.to_thread(check_manifest, manifest)
    _require_addressed_to(manifest, info.header, app.settings.name)
    root = await asyncio.to_thread(_drive_root, store_root)
    summary = IngestSummary(manifest, info.header.librarian_name, info.header.store_name)
    ingester = Ingester(app, ApiState.create(app), info.header, root, summary)
    await ingester.check_source_known()
    if progress is not None:
        progress(0, info.entries)
    with closing(read_entries(manifest)) as entries:
        groups = batches(entries, _entry_size, max_bytes=BATCH_BYTES, max_items=BATCH_FILES)
        while (batch := await asyncio.to_thread(_next_batch, groups)) is not None:
            await ingester.ingest(batch)
            summary.entries += len(batch)
            if progress is not None:
                progress(summary.entries, info.entries)
    return summary


def _require_addressed_to(manifest: Path, header: ManifestHeader, name: str) -> None:
    if header.destination is None:
        message = "has no destination (exported without --destination): nothing to ingest"
        raise ManifestError(f"manifest {manifest} {message}")
    if header.destination != name:
        raise ManifestError(
            f"manifest {manifest} is for librarian {header.destination!r}, this is {name!r}"
        )


def _drive_root(store_root: Path) -> Path:
    if not store_root.is_dir():
        raise NotFoundError(f"store root {store_root} is not a directory")
    return Path(os.path.realpath(store_root))


def _entry_size(entry: ManifestEntry) -> int:
    return entry.size


def _next_batch(groups: Iterator[list[ManifestEntry]]) -> list[ManifestEntry] | None:
    return next(groups, None)


@dataclass(eq=False)
class Job:
    """One entry to copy: its drive file, its transfer and staging file once staged, and
    the outcome of the copy once ``done`` (``problem`` None: verified)."""

    entry: ManifestEntry
    drive_path: Path
    transfer_id: int = 0
    target: Path | None = None
    done: bool = False
    problem: str | None = None
    verified_stat: str | None = None  # the staged copy's stat once verified


@dataclass
class Plan:
    """What a batch needs: rows to record as they are, entries to stage, jobs to copy."""

    settled: list[SettledIncoming] = field(default_factory=list)
    new: list[Job] = field(default_factory=list)
    again: list[Job] = field(default_factory=list)


@dataclass(frozen=True)
class Known:
    """What the database knows of a batch's entries."""

    earlier: dict[int, IncomingTransfer]
    catalogued: dict[str, str]
    busy: set[str]
    holding: dict[str, int]


@dataclass(eq=False)
class Ingester:
    """One ingest: the manifest's header, the drive's root and the running summary."""

    app: Context
    api: ApiState
    header: ManifestHeader
    root: Path
    summary: IngestSummary

    @property
    def source(self) -> str:
        return self.header.librarian_name

    async def check_source_known(self) -> None:
        """Warn when the source is not a known librarian: it cannot be called back yet."""
        async with self.app.sessions() as session:
            known = self.source in await peers.librarian_names(session)
        if not known:
            self.summary.warnings.append(
                f"librarian {self.source!r} is not known here: it will be told about these "
                "transfers once it is added (`librarian add`)"
            )

    async def ingest(self, entries: list[ManifestEntry]) -> None:
        plan = await self._plan(entries)
        await self._settle(plan.settled)
        staged = await self._stage(plan.new)
        await self._copy_and_record([*plan.again, *staged])

    # --- 1. deciding ------------------------------------------------------------------------

    async def _plan(self, entries: list[ManifestEntry]) -> Plan:
        ids = [e.outgoing_transfer_id for e in entries if e.outgoing_transfer_id is not None]
        names = [entry.name for entry in entries]
        async with self.app.sessions() as session:
            earlier = await manifests.incoming_from(session, self.source, ids)
            live = await transfers.live_incoming_to(session, names)
            known = Known(
                earlier,
                await receiving.catalogued_checksums(session, names),
                {row.store_path or "" for row in live if not self._is_earlier(row, earlier)},
                await manifests.stores_holding(session, names),
            )
        plan = Plan()
        seen: set[str] = set()
        for entry in entries:
            self._decide(entry, known, plan, seen)
        return plan

    @staticmethod
    def _is_earlier(row: IncomingTransfer, earlier: dict[int, IncomingTransfer]) -> bool:
        return row.source_transfer_id is not None and earlier.get(row.source_transfer_id) is row

    def _decide(self, entry: ManifestEntry, known: Known, plan: Plan, seen: set[str]) -> None:
        transfer_id = entry.outgoing_transfer_id
        if transfer_id is None:
            self._fail(entry, "no outgoing_transfer_id: the source has no transfer to complete")
        elif transfer_id in known.earlier:
            self._resume(entry, known.earlier[transfer_id], plan)
        elif entry.name in seen:
            self._fail(entry, "listed twice in the manifest")
        elif isinstance(located := drive_path(self.root, self.header.store_path, entry), str):
            plan.settled.append(self._settled(entry, S.FAILED, None, located))
            self._fail(entry, located)
        elif entry.name in known.catalogued:
            self._already_catalogued(entry, known, plan)
        elif entry.name in known.busy:
            self._fail(
                entry, "another transfer is delivering this name; run the ingest again later"
            )
        else:
            plan.new.append(Job(entry, located))
        seen.add(entry.name)

    def _resume(self, entry: ManifestEntry, row: IncomingTransfer, plan: Plan) -> None:
        """An earlier run's transfer for this entry: leave it, or copy again if unfinished."""
        if row.status == S.COMPLETED:
            self.summary.skip(SKIPPED_RECEIVED)
        elif row.status == S.STAGED:
            self.summary.skip(SKIPPED_STAGED)
        elif row.status in (S.FAILED, S.CANCELLED):
            reason = row.failure_reason or row.status.name
            self._fail(entry, f"failed earlier (incoming transfer {row.id}): {reason}")
        else:
            located = drive_path(self.root, self.header.store_path, entry)
            job = Job(entry, self.root, row.id, transfers.staged_file(row))
            if isinstance(located, str):
                job.done, job.problem = True, located
            else:
                job.drive_path = located
            plan.again.append(job)

    def _already_catalogued(self, entry: ManifestEntry, known: Known, plan: Plan) -> None:
        if _same_checksum(known.catalogued[entry.name], entry.checksum):
            store_id = known.holding.get(entry.name)
            plan.settled.append(self._settled(entry, S.COMPLETED, store_id, None))
            self.summary.skip(SKIPPED_HERE)
            return
        reason = f"catalogued here with another checksum ({known.catalogued[entry.name]})"
        plan.settled.append(self._settled(entry, S.FAILED, None, reason))
        self._fail(entry, reason)

    def _settled(
        self, entry: ManifestEntry, status: S, store_id: int | None, reason: str | None
    ) -> SettledIncoming:
        return SettledIncoming(
            status=status,
            source=self.source,
            name=entry.name,
            size=entry.size,
            checksum=entry.checksum,
            source_transfer_id=entry.outgoing_transfer_id or 0,
            store_id=store_id,
            reason=reason,
        )

    def _fail(self, entry: ManifestEntry, reason: str) -> None:
        self.summary.failed.append(f"{entry.name}: {reason}")

    # --- 2. recording decisions and staging --------------------------------------------------

    async def _settle(self, settled: list[SettledIncoming]) -> None:
        if settled:
            async with self.app.sessions.begin() as session:
                await manifests.add_settled(
                    session, settled, uploader=self.source, at=self.app.now()
                )

    async def _stage(self, jobs: list[Job]) -> list[Job]:
        """Stage the jobs as one batch; a refused batch is tried again entry by entry (the
        refusal names only some of them), except when no store has room for it."""
        if not jobs:
            return []
        caller = Caller(username=self.source, level=AuthLevel.ADMIN)
        try:
            staged = await stage_batch(self.api, caller, self._request(jobs))
        except StagingRefused as refused:
            if refused.status != 413 and len(jobs) > 1:
                return [job for single in jobs for job in await self._stage([single])]
            for job in jobs:
                self._fail(job.entry, f"not staged ({refused.status}): {refused.reason}")
            return []
        for job, upload in zip(jobs, staged.uploads, strict=True):
            job.transfer_id = upload.destination_transfer_id
            job.target = Path(upload.staging_location)
        return jobs

    def _request(self, jobs: list[Job]) -> StagingRequest:
        items = [
            UploadItem(
                upload_size=job.entry.size,
                upload_checksum=job.entry.checksum,
                upload_name=job.entry.name,
                destination_location=job.entry.name,
                uploader=job.entry.uploader,
                source_transfer_id=job.entry.outgoing_transfer_id or 0,
            )
            for job in jobs
        ]
        total = sum(job.entry.size for job in jobs)
        return StagingRequest(self.source, total, items, accepts_providers=None)

    # --- 3 and 4. copying and recording ----------------------------------------------------

    async def _copy_and_record(self, jobs: list[Job]) -> None:
        """Copy in a worker thread, then record whatever was copied, even when cancelled
        (the rest stays INITIATED for the next run)."""
        if not jobs:
            return
        try:
            await run_interruptible(_copy_jobs, jobs, self.root)
        finally:
            await finish_shielded(self._record(jobs))

    async def _record(self, jobs: list[Job]) -> None:
        verified = [job for job in jobs if job.done and job.problem is None]
        failures = [(job.transfer_id, job.problem or "") for job in jobs if job.problem]
        now = self.app.now()
        stats = {job.transfer_id: job.verified_stat for job in verified if job.verified_stat}
        async with self.app.sessions.begin() as session:
            await transfers.record_verified_stats(session, stats)  # receive_clone trusts it
            moved = await transfers.move_incoming(
                session, [job.transfer_id for job in verified], S.STAGED, at=now
            )
            failed = await manifests.fail_owing_callback(session, failures, at=now)
        await unstage(self.api, failed)
        staged_ids = {item.transfer_id for item in moved}
        for job in verified:
            if job.transfer_id in staged_ids:
                self.summary.staged += 1
                self.summary.bytes += job.entry.size
        for job in jobs:
            if job.done and job.problem:
                self._fail(job.entry, job.problem)


def drive_path(root: Path, store_path: str, entry: ManifestEntry) -> Path | str:
    """Where ``entry`` is on the drive mounted at ``root``, or why it cannot be (a str)."""
    try:
        relative = PurePosixPath(entry.instance_path).relative_to(PurePosixPath(store_path))
    except ValueError:
        return f"instance path {entry.instance_path!r} is not under the store path {store_path!r}"
    problem = name_problem(relative.as_posix())
    if problem is not None:
        return f"instance path {entry.instance_path!r} {problem}"
    return root.joinpath(*relative.parts)


def _same_checksum(first: str, second: str) -> bool:
    try:
        return checksums_match(first, second)
    except LibrarianError:
        return False


# --- code running in a worker thread --------------------------------------------------------


def _copy_jobs(jobs: list[Job], root: Path, *, stop: threading.Event) -> None:
    for job in jobs:
        if not job.done:
            job.problem = _copy_one(job, root, stop)
            if job.problem is None and job.target is not None:
                job.verified_stat = stat_fingerprint(job.target)
            job.done = True


def _copy_one(job: Job, root: Path, stop: threading.Event) -> str | None:
    """Copy and verify one file into staging; None when verified, else the problem (the
    staged copy is then removed)."""
    source, target, entry = job.drive_path, job.target, job.entry
    if target is None or not _inside(source, root):
        return f"{source} is not a file on the drive (it leads outside {root})"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_file_or_tree(target)  # a partial copy left by a killed run
        digest = copy_and_hash_sync(source, target, parse_checksum(entry.checksum)[0], stop)
        fsync_directory(target.parent)
    except (LibrarianError, OSError) as error:
        if isinstance(error, FileNotFoundError) and not os.path.lexists(source):
            return f"missing on the drive: {source}"
        return f"cannot copy {source}: {error}"
    if digest.matches(FileDigest(entry.checksum, entry.size)):
        return None
    remove_file_or_tree(target)
    return (
        f"damaged on the drive: {source} has {digest.size} bytes, {digest.checksum}; "
        f"the manifest says {entry.size} bytes, {entry.checksum}"
    )


def _inside(path: Path, root: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real != root and real.is_relative_to(root)
