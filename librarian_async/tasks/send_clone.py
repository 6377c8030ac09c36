"""send_clone: stage recent files on a peer librarian and queue their bytes for sending.

For each batch of ``send_batch_size`` files the peer lacks: INITIATED outgoing transfers
(one transaction), ``clone/batch_stage`` on the peer, then (one transaction) the peer's
transfer ids on our rows and a ``send_queue`` item carrying the chosen transfer method and
the (source path, staging location) of every file. ``consume_queue`` moves the bytes.

Decisions:

* A peer with transfers disabled is skipped (a warning at most once per
  ``warn_disabled_timer``); an unreachable peer (checked with ``ping/logged`` first) is
  skipped with a warning. Neither is a problem of the run: the files stay eligible.
* A batch refused as a whole is judged per file (PROTOCOL §2.1): files the peer already
  has (409) become COMPLETED with a remote instance once the peer's checksum matches ours
  (a different checksum fails the transfer: a problem); files the peer is receiving from
  elsewhere (425) are cancelled; stale transfers (406) were failed by the peer, so the
  rest of the batch is simply staged again.
* A refusal for lack of room (413) or any other refusal ends the run's sending (a problem);
  the batch's transfers end CANCELLED or FAILED, so the files are eligible again.
* Crash safety: rows are INITIATED before the peer is asked; if a run dies before it
  queued them they are never sent. The next run cancels such rows once they are older
  than :data:`ABANDONED_AFTER` (the peer fails its copies when they are staged again).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from librarian_async.config import SendCloneConfig
from librarian_async.db import catalog, peers, sending, transfers
from librarian_async.db.models import Librarian, OutgoingTransfer, SendQueueItem
from librarian_async.enums import TransferStatus
from librarian_async.errors import (
    NotFoundError,
    PeerError,
    PeerRefusedError,
    PeerUnreachableError,
)
from librarian_async.remote import schemas as wire
from librarian_async.remote.client import PeerClient
from librarian_async.remote.peers import peer_client
from librarian_async.storage.checksum import checksums_match
from librarian_async.tasks.base import Report, TaskContext
from librarian_async.tasks.queued_batches import tell_peer_failed
from librarian_async.transfer import ACCEPTED_PROVIDERS, choose_method
from librarian_async.transfer.base import FileMove

log = logging.getLogger(__name__)
S = TransferStatus

ABANDONED_AFTER = timedelta(minutes=10)
STAGE_ATTEMPTS = 3
"""Times one batch is offered again after the peer refused some of its files."""


class StopSending(Exception):
    """This run cannot send anything more to the peer (the reason is already reported)."""


async def run(task: TaskContext, params: SendCloneConfig) -> Report:
    """Stage recent files on ``destination_librarian`` and queue them for sending.

    Reads: files created within ``age_in_days`` without a remote instance at the peer and
    without a live outgoing transfer to it, in keyset pages of ``send_batch_size``.
    Writes: outgoing transfers, send-queue items, remote instances for files the peer
    already holds; ``librarians.last_disabled_warning``.
    A rerun is safe: a file with a live transfer is not chosen again, and rows a dead run
    left unqueued are cancelled after :data:`ABANDONED_AFTER`.
    """
    peer = await _peer_or_none(task, params.destination_librarian)
    if peer is None or not await _may_send(task, peer, params):
        return task.report
    await _cancel_abandoned(task, peer.name)
    async with peer_client(task.app, peer) as client:
        if await _reachable(task, client, peer.name):
            sender = Sender(task, params, peer, client)
            with contextlib.suppress(StopSending):  # the reason is already reported
                await sender.send_pages()
    return task.report


async def _peer_or_none(task: TaskContext, name: str) -> Librarian | None:
    async with task.app.sessions() as session:
        try:
            return await peers.librarian_by_name(session, name)
        except NotFoundError as error:
            task.report.problem(f"send_clone: {error}")
            return None


async def _may_send(task: TaskContext, peer: Librarian, params: SendCloneConfig) -> bool:
    """False when transfers to the peer are disabled (warned about once per interval)."""
    if peer.transfers_enabled:
        return True
    task.report.add("skipped_disabled")
    now = task.app.now()
    last = peer.last_disabled_warning
    if last is None or now - last >= params.warn_disabled_interval:
        log.warning("send_clone: transfers to %s are disabled; nothing sent", peer.name)
        async with task.app.sessions.begin() as session:
            row = await peers.librarian_by_name(session, peer.name)
            row.last_disabled_warning = now
    return False


async def _reachable(task: TaskContext, client: PeerClient, name: str) -> bool:
    try:
        await client.ping_logged()
    except PeerUnreachableError as error:
        log.warning("send_clone: %s is unreachable; nothing sent: %s", name, error)
        task.report.add("skipped_unreachable")
        return False
    except PeerError as error:
        task.report.problem(f"send_clone: {name} refused our credentials: {error}")
        return False
    return True


async def _cancel_abandoned(task: TaskContext, destination: str) -> None:
    now = task.app.now()
    async with task.app.sessions.begin() as session:
        ids = await sending.abandoned_before_staging(
            session, destination=destination, started_before=now - ABANDONED_AFTER
        )
        reason = "abandoned: the run staging it ended before queueing it"
        cancelled = await transfers.move_outgoing(session, ids, S.CANCELLED, at=now, reason=reason)
    if cancelled:
        task.report.add("abandoned_cancelled", len(cancelled))


class Sender:
    """One run's sending to one peer."""

    def __init__(
        self, task: TaskContext, params: SendCloneConfig, peer: Librarian, client: PeerClient
    ) -> None:
        self.task, self.params, self.peer, self.client = task, params, peer, client
        self.report = task.report
        self.preferred_store_id: int | None = None

    async def send_pages(self) -> None:
        await self._find_preferred_store()
        created_after = self.task.app.now() - timedelta(days=self.params.age_in_days)
        after: tuple[datetime, str] = (created_after - timedelta(microseconds=1), "")
        while not self.task.budget.spent():
            page = await self._page(created_after, after)
            if not page:
                return
            after = (page[-1].create_time, page[-1].file_name)
            await self.send_batch(page)

    async def _find_preferred_store(self) -> None:
        name = self.params.store_preference
        if name is None:
            return
        async with self.task.app.sessions() as session:
            try:
                self.preferred_store_id = (await catalog.store_by_name(session, name)).id
            except NotFoundError as error:
                log.warning("send_clone: store_preference: %s", error)

    async def _page(
        self, created_after: datetime, after: tuple[datetime, str]
    ) -> list[sending.SendCandidate]:
        async with self.task.app.sessions() as session:
            return await sending.send_candidates(
                session,
                destination=self.peer.name,
                librarian_id=self.peer.id,
                created_after=created_after,
                after=after,
                preferred_store_id=self.preferred_store_id,
                limit=self.params.send_batch_size,
            )

    async def send_batch(self, page: Sequence[sending.SendCandidate]) -> None:
        async with self.task.app.sessions.begin() as session:
            rows = await sending.add_outgoing(session, page, self.peer.name, self.task.app.now())
        paths = {row.id: candidate.path for row, candidate in zip(rows, page, strict=True)}
        pending = list(rows)
        for _ in range(STAGE_ATTEMPTS):
            if not pending:
                return
            pending = await self._stage(pending, paths)
        await self._end(pending, S.CANCELLED, "the peer kept refusing the batch")

    async def _stage(
        self, rows: list[OutgoingTransfer], paths: dict[int, str]
    ) -> list[OutgoingTransfer]:
        """Stage ``rows`` on the peer and queue them; return the rows to offer again."""
        try:
            staged = await self.client.batch_stage(self._request(rows))
        except PeerUnreachableError as error:
            await self._end(rows, S.CANCELLED, f"not staged: {error}")
            log.warning("send_clone: %s became unreachable: %s", self.peer.name, error)
            raise StopSending from error
        except PeerRefusedError as refused:
            return await self._refused(rows, refused)
        await self._queue(rows, paths, staged)
        return []

    def _request(self, rows: Sequence[OutgoingTransfer]) -> wire.BatchStageRequest:
        return wire.BatchStageRequest(
            uploads=[self._upload(row) for row in rows],
            source=self.task.app.settings.name,
            total_size=sum(row.transfer_size for row in rows),
            accepts_providers=list(ACCEPTED_PROVIDERS),
        )

    def _upload(self, row: OutgoingTransfer) -> wire.UploadItem:
        return wire.UploadItem(
            upload_size=row.transfer_size,
            upload_checksum=row.transfer_checksum,
            upload_name=row.file_name,
            destination_location=row.file_name,
            uploader=self.task.app.settings.name,
            source_transfer_id=row.id,
        )

    async def _queue(
        self,
        rows: Sequence[OutgoingTransfer],
        paths: dict[int, str],
        staged: wire.BatchStageResponse,
    ) -> None:
        chosen = choose_method(staged.async_transfer_providers)
        by_source = {upload.source_transfer_id: upload for upload in staged.uploads}
        if chosen is None or set(by_source) != {row.id for row in rows}:
            await self._unusable_staging(rows, staged, by_source)
            return
        method, fields = chosen
        moves = [_move(row, paths[row.id], by_source[row.id]) for row in rows]
        item = SendQueueItem(
            destination=self.peer.name,
            transfer_method=method.name,
            transfer_data={"fields": dict(fields), "files": [move.to_json() for move in moves]},
            created_time=self.task.app.now(),
        )
        remote_ids = {move.source_transfer_id: move.destination_transfer_id for move in moves}
        async with self.task.app.sessions.begin() as session:
            await sending.queue_batch(session, item, remote_ids)
        self.task.app.wakeups.wake("consume_queue")  # its bytes can move now, not next tick
        self.report.add("queued", len(rows))
        self.report.add("queued_bytes", sum(row.transfer_size for row in rows))

    async def _unusable_staging(
        self,
        rows: Sequence[OutgoingTransfer],
        staged: wire.BatchStageResponse,
        by_source: dict[int, wire.StagedUpload],
    ) -> None:
        offered = ", ".join(staged.async_transfer_providers) or "none"
        reason = f"no usable transfer method offered by {self.peer.name} ({offered})"
        if set(by_source) != {row.id for row in rows}:
            reason = f"{self.peer.name} staged a different set of files than asked"
        await self._end(rows, S.FAILED, reason)
        await tell_peer_failed(
            self.client, [upload.destination_transfer_id for upload in staged.uploads]
        )
        self.report.problem(f"send_clone: {reason}")
        raise StopSending

    async def _refused(
        self, rows: list[OutgoingTransfer], refused: PeerRefusedError
    ) -> list[OutgoingTransfer]:
        listed = _listed_ids(refused)
        if refused.status in (406, 409, 425) and listed:
            return await self._refused_files(rows, refused.status, listed)
        status = S.CANCELLED if refused.status == 413 else S.FAILED
        await self._end(rows, status, f"refused by {self.peer.name}: {refused.reason}")
        self.report.problem(
            f"send_clone: {self.peer.name} refused a batch of {len(rows)} files: {refused}"
        )
        raise StopSending from refused

    async def _refused_files(
        self, rows: list[OutgoingTransfer], status: int, listed: set[int]
    ) -> list[OutgoingTransfer]:
        named = [row for row in rows if row.id in listed]
        rest = [row for row in rows if row.id not in listed]
        if status == 409:
            await self._already_there(named)
        elif status == 425:
            await self._end(named, S.CANCELLED, f"{self.peer.name} is receiving it already")
            self.report.add("skipped_in_progress", len(named))
        else:  # 406: the peer failed its stale transfers; offer these files again
            rest = rows
        return rest

    async def _already_there(self, rows: Sequence[OutgoingTransfer]) -> None:
        for row in rows:
            found = await self.client.search_file(wire.SearchFileRequest(name=row.file_name))
            match = next(
                (f for f in found if checksums_match(f.checksum, row.transfer_checksum)), None
            )
            if match is None:
                reason = f"{self.peer.name} holds a different file named {row.file_name!r}"
                await self._end([row], S.FAILED, reason)
                self.report.problem(f"send_clone: {reason}")
                continue
            await self._record_held(row, match)

    async def _record_held(self, row: OutgoingTransfer, held: wire.FileInfo) -> None:
        now = self.task.app.now()
        store_id = next((i.store_id for i in held.instances if i.available), 0)
        async with self.task.app.sessions.begin() as session:
            await sending.complete_already_there(
                session, row.id, now=now, reason="the peer already held this file"
            )
            copy = transfers.RemoteCopy(row.file_name, self.peer.id, store_id)
            await transfers.record_remote_instances(
                session, [copy], copy_time=now, sender=self.task.app.settings.name
            )
        self.report.add("already_there")

    async def _end(
        self, rows: Sequence[OutgoingTransfer], status: TransferStatus, reason: str
    ) -> None:
        if not rows:
            return
        async with self.task.app.sessions.begin() as session:
            await transfers.move_outgoing(
                session, [row.id for row in rows], status, at=self.task.app.now(), reason=reason
            )
        self.report.add(status.name.lower(), len(rows))


def _listed_ids(refused: PeerRefusedError) -> set[int]:
    body = refused.body if isinstance(refused.body, dict) else {}
    ids = body.get("source_transfer_ids") or []
    if "source_transfer_id" in body:
        ids = [body["source_transfer_id"]]
    return {int(i) for i in ids if isinstance(i, int | str) and str(i).lstrip("-").isdigit()}


def _move(row: OutgoingTransfer, path: str, upload: wire.StagedUpload) -> FileMove:
    return FileMove(
        source=Path(path),
        staging_location=upload.staging_location,
        size=row.transfer_size,
        checksum=row.transfer_checksum,
        source_transfer_id=row.id,
        destination_transfer_id=upload.destination_transfer_id,
    )
