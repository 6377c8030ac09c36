"""The callbacks of ``receive_clone``: telling each source how its transfers ended.

Reads: incoming transfers with ``callback_pending`` whose ``next_callback_at`` has come (at
most ``CALLBACKS_PER_RUN`` per pass, in pages of ``CALLBACK_PAGE`` grouped by source), and
the ``librarians`` row named like each source (PROTOCOL §1). Sends, per source: its
COMPLETED transfers in ``clone/batch_complete`` calls of ``COMPLETE_CHUNK`` items, and its
FAILED transfers in ``checkin/update`` FAILED calls of ``CHECKIN_CHUNK`` ids. Writes:
``callback_pending = False`` once a callback is settled; otherwise ``callback_attempts + 1``
and ``next_callback_at = now + backoff`` (30 s doubling per failed attempt, at most 1 h).
One failed callback never stops the others or the run.

``clone/batch_complete`` is a librarian_async extension (``clone/complete`` for many
transfers, with a verdict per item). A deployed source lacks it and answers 404 or 405:
then that chunk, and every later completion to that source in this run, goes through one
``clone/complete`` per transfer (the next run tries the batch again, so an upgraded source
is noticed).

When a callback is settled (nothing more to tell):

* the call succeeded (for a batch: the item is among ``completed``);
* ``clone/complete`` answered 400, or a batch refused the item with 400 (the source knows
  no such transfer from us, or does not know us): asking again cannot help; settled, and
  reported as a problem. The source's hypervisor can still reconcile through
  ``checkin/status``;
* ``clone/complete`` answered 406, or a batch refused the item with 406 (its transfer is not
  ONGOING or STAGED): we ask ``checkin/status`` (once for all such items of a batch); a
  final status (deployed peers answer 406 for a transfer already COMPLETED) or an unknown
  transfer settles it, a live one is retried later;
* ``checkin/update``: every id in its ``modified`` or ``unmodified`` lists (unmodified means
  unknown to the source or already final there: nothing more to say); ids missing from
  both lists are retried;
* the transfer has no source transfer id (a manual stage) or is neither COMPLETED nor FAILED.

Retried later: an unreachable source (its remaining callbacks of this pass are deferred
without calling it again), any other refusal (401, 5xx, ...) or malformed reply, a whole
batch refused with any status but 404 or 405, an item a batch reply does not mention, a
source that is not in ``librarians`` or whose transfers are disabled (the operator can fix
both; one warning and one problem line per source and run).

A crash at any point is safe: a callback acknowledged but not yet recorded is sent again
on a later run, and every call is idempotent at the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from librarian_async.db import peers, receiving
from librarian_async.db.models import Librarian
from librarian_async.db.receiving import PendingCallback
from librarian_async.enums import TransferStatus
from librarian_async.errors import NotFoundError, PeerError, PeerRefusedError, PeerUnreachableError
from librarian_async.remote.client import PeerClient, RetryPolicy
from librarian_async.remote.peers import peer_client
from librarian_async.remote.schemas import (
    BatchCompleteRequest,
    BatchCompleteResponse,
    CheckinStatusRequest,
    CheckinUpdateRequest,
    CompleteRequest,
)
from librarian_async.tasks.base import TaskContext
from librarian_async.transfer_states import FINAL

log = logging.getLogger(__name__)

CALLBACK_PAGE = 1024
CALLBACKS_PER_RUN = 65_536  # the budget (soft timeout) still applies between sources
CHECKIN_CHUNK = 256
COMPLETE_CHUNK = 1024
NO_BATCH_ENDPOINT = frozenset({404, 405})
"""What a source without ``clone/batch_complete`` (a deployed librarian) answers to it."""
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
CALLBACK_RETRY = RetryPolicy(attempts=2)
"""One quick retry within a pass: a callback that still fails is retried on a later run."""
TOLD = (TransferStatus.COMPLETED, TransferStatus.FAILED)

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    """How one callback ended: ``settled`` or to be retried; ``note`` says why (a problem)."""

    settled: bool
    note: str = ""


ACKNOWLEDGED = Verdict(True)


@dataclass
class Outcome:
    """What one source's pass settled and deferred (with the reason)."""

    settled: list[int] = field(default_factory=list)
    deferred: dict[int, tuple[PendingCallback, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, pending: PendingCallback, verdict: Verdict) -> None:
        if verdict.settled:
            self.settled.append(pending.transfer_id)
            if verdict.note:
                self.notes.append(verdict.note)
        else:
            self.defer([pending], verdict.note)

    def defer(self, pending: Sequence[PendingCallback], reason: str) -> None:
        for item in pending:
            self.deferred[item.transfer_id] = (item, reason)

    def unsettled(self, pending: Sequence[PendingCallback]) -> list[PendingCallback]:
        return [
            p
            for p in pending
            if p.transfer_id not in self.settled and p.transfer_id not in self.deferred
        ]


def retry_delay(attempts: int) -> timedelta:
    """The wait after ``attempts`` earlier failures: 30 s doubling, at most 1 h."""
    return min(FIRST_RETRY * (1 << min(attempts, 16)), LAST_RETRY)


@dataclass(eq=False)
class CallbackSender:
    """Sends the due callbacks of one run; it may pass several times (it warns once)."""

    task: TaskContext
    warned: set[tuple[str, str]] = field(default_factory=set)
    batchless: set[str] = field(default_factory=set)
    """Sources that answered ``clone/batch_complete`` with 404 or 405 in this run."""

    async def send_due(self) -> None:
        """Settle or defer every due callback, source by source, page by page (at most
        ``CALLBACKS_PER_RUN``); a settled or deferred callback is not due any more."""
        for _ in range(CALLBACKS_PER_RUN // CALLBACK_PAGE):
            async with self.task.app.sessions() as session:
                due = await receiving.due_callbacks(
                    session, now=self.task.app.now(), limit=CALLBACK_PAGE
                )
            for source, group in itertools.groupby(due, key=lambda pending: pending.source):
                if self.task.budget.spent():
                    return
                await self._settle_source(source, list(group))
            if len(due) < CALLBACK_PAGE:
                return

    async def count_pending(self) -> None:
        """Report how many callbacks are still owed after this run."""
        async with self.task.app.sessions() as session:
            self.task.report.counts["callbacks_pending"] = await receiving.count_pending_callbacks(
                session
            )

    async def _settle_source(self, source: str, pending: list[PendingCallback]) -> None:
        outcome = Outcome()
        outcome.settled.extend(p.transfer_id for p in pending if not _owes_callback(p))
        try:
            await self._call_back(source, [p for p in pending if _owes_callback(p)], outcome)
        finally:
            await finish_shielded(self._record(outcome))
        self._report(source, outcome)

    async def _call_back(self, source: str, owed: list[PendingCallback], outcome: Outcome) -> None:
        if not owed:
            return
        peer = await self._librarian(source)
        if peer is None or not peer.transfers_enabled:
            why = "not a known librarian" if peer is None else "transfers to it are disabled"
            outcome.defer(owed, why)
            return
        async with peer_client(self.task.app, peer, CALLBACK_RETRY) as client:
            try:
                calls = SourceCalls(self.task, client, outcome, source, self.batchless)
                await calls.tell(owed)
            except PeerUnreachableError as error:
                outcome.defer(outcome.unsettled(owed), f"unreachable: {error}")

    async def _librarian(self, name: str) -> Librarian | None:
        async with self.task.app.sessions() as session:
            try:
                return await peers.librarian_by_name(session, name)
            except NotFoundError:
                return None

    async def _record(self, outcome: Outcome) -> None:
        now = self.task.app.now()
        async with self.task.app.sessions.begin() as session:
            await receiving.acknowledge_callbacks(session, outcome.settled)
            for retry_at, ids in _retry_times(outcome, now).items():
                await receiving.defer_callbacks(session, ids, retry_at=retry_at)

    def _report(self, source: str, outcome: Outcome) -> None:
        report = self.task.report
        report.add("callbacks_sent", len(outcome.settled))
        report.add("callbacks_failed", len(outcome.deferred))
        for note in outcome.notes:
            report.problem(note)
        reasons: dict[str, int] = {}
        for _, reason in outcome.deferred.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            self._warn(source, reason, count)

    def _warn(self, source: str, reason: str, count: int) -> None:
        """One warning and one problem line per source and reason in a run."""
        if (source, reason) not in self.warned:
            self.warned.add((source, reason))
            message = f"callbacks to {source!r} deferred ({count} transfers): {reason}"
            log.warning("%s: %s", self.task.task_name, message)
            self.task.report.problem(message)


@dataclass(eq=False)
class SourceCalls:
    """The calls to one source; an unreachable source raises PeerUnreachableError.

    ``batchless`` names the sources that lack ``clone/batch_complete`` (shared by the run).
    """

    task: TaskContext
    client: PeerClient
    outcome: Outcome
    source: str
    batchless: set[str]

    async def tell(self, owed: list[PendingCallback]) -> None:
        """Completions, then failures, in chunks; none once the budget is spent."""
        completed = [p for p in owed if p.status == TransferStatus.COMPLETED]
        for chunk in _chunks(completed, COMPLETE_CHUNK):
            if self.task.budget.spent():
                return
            await self._complete_chunk(chunk)
        failed = [p for p in owed if p.status == TransferStatus.FAILED]
        for chunk in _chunks(failed, CHECKIN_CHUNK):
            if self.task.budget.spent():
                return
            await self._fail(chunk)

    async def _complete_chunk(self, chunk: list[PendingCallback]) -> None:
        """One ``clone/batch_complete``; ``clone/complete`` each if the source lacks it."""
        if self.source not in self.batchless and await self._batch_complete(chunk):
            return
        for pending in chunk:
            if self.task.budget.spent():
                return
            self.outcome.record(pending, await self._complete(pending))

    # --- clone/batch_complete (a librarian_async extension) ---------------------------------

    async def _batch_complete(self, chunk: list[PendingCallback]) -> bool:
        """Tell the chunk in one call; False if the source does not know the endpoint."""
        request = BatchCompleteRequest(items=[_complete_request(p) for p in chunk])
        try:
            reply = await self.client.batch_complete(request)
        except PeerRefusedError as refused:
            if refused.status not in NO_BATCH_ENDPOINT:
                self.outcome.defer(chunk, f"clone/batch_complete: {refused}")
                return True
            log.info("%s: %r has no clone/batch_complete", self.task.task_name, self.source)
            self.batchless.add(self.source)
            return False
        except PeerUnreachableError:
            raise
        except PeerError as error:
            self.outcome.defer(chunk, f"clone/batch_complete: {error}")
            return True
        await self._judge_batch(chunk, reply)
        return True

    async def _judge_batch(
        self, chunk: list[PendingCallback], reply: BatchCompleteResponse
    ) -> None:
        """Per item, the verdict the single call would have led to."""
        refusals = {(r.source_transfer_id, r.destination_transfer_id): r for r in reply.refused}
        completed = set(reply.completed)
        wrong_state = []
        for pending in chunk:
            refused = refusals.get((_source_id(pending), pending.transfer_id))
            if refused is not None and refused.status == 406:
                wrong_state.append(pending)
            elif refused is not None:
                error = PeerRefusedError(refused.status, refused.reason, refused.model_dump())
                self.outcome.record(pending, _refusal_verdict(pending, error))
            elif _source_id(pending) in completed:
                self.outcome.record(pending, ACKNOWLEDGED)
            else:
                self.outcome.record(pending, Verdict(False, "clone/batch_complete: not answered"))
        verdicts = await self._statuses_at_source(wrong_state)
        for pending in wrong_state:
            self.outcome.record(pending, verdicts[pending.transfer_id])

    # --- clone/complete (every peer) ----------------------------------------------------------

    async def _complete(self, pending: PendingCallback) -> Verdict:
        try:
            await self.client.clone_complete(_complete_request(pending))
        except PeerRefusedError as refused:
            if refused.status == 406:
                return (await self._statuses_at_source([pending]))[pending.transfer_id]
            return _refusal_verdict(pending, refused)
        except PeerUnreachableError:
            raise
        except PeerError as error:
            return Verdict(False, str(error))
        return ACKNOWLEDGED

    async def _statuses_at_source(self, refused: list[PendingCallback]) -> dict[int, Verdict]:
        """After a 406, by transfer id: settled if the source's transfer is final or unknown
        to it, retried later if it is live or its status could not be asked."""
        if not refused:
            return {}
        request = CheckinStatusRequest(source_transfer_ids=[_source_id(p) for p in refused])
        try:
            reply = await self.client.checkin_status(request)
        except PeerUnreachableError:
            raise
        except PeerError as error:
            unknown = Verdict(False, f"clone/complete refused (406), status unknown: {error}")
            return {pending.transfer_id: unknown for pending in refused}
        statuses = reply.source_transfer_status
        return {p.transfer_id: _verdict_after_406(statuses.get(_source_id(p))) for p in refused}

    async def _fail(self, chunk: list[PendingCallback]) -> None:
        request = CheckinUpdateRequest(
            source_transfer_ids=[_source_id(p) for p in chunk], new_status=TransferStatus.FAILED
        )
        try:
            reply = await self.client.checkin_update(request)
        except PeerUnreachableError:
            raise
        except PeerError as error:
            self.outcome.defer(chunk, f"checkin/update FAILED: {error}")
            return
        answered = {*reply.modified_source_transfer_ids, *reply.unmodified_source_transfer_ids}
        for reason in reply.reasons:
            log.info("%s: %s left unchanged: %s", self.task.task_name, chunk[0].source, reason)
        for pending in chunk:
            settled = _source_id(pending) in answered
            self.outcome.record(
                pending, ACKNOWLEDGED if settled else Verdict(False, "not answered")
            )


# --- helpers --------------------------------------------------------------------------------


def _complete_request(pending: PendingCallback) -> CompleteRequest:
    return CompleteRequest(
        source_transfer_id=_source_id(pending),
        destination_transfer_id=pending.transfer_id,
        store_id=pending.store_id or 0,
    )


def _refusal_verdict(pending: PendingCallback, refused: PeerRefusedError) -> Verdict:
    """A refused completion other than 406: a 400 settles it (with a problem), any other
    status is retried later."""
    if refused.status != 400:
        return Verdict(False, str(refused))
    where = f"incoming transfer {pending.transfer_id} (source transfer {_source_id(pending)})"
    return Verdict(True, f"{pending.source!r} refused clone/complete of {where}: {refused}")


def _verdict_after_406(status: TransferStatus | None) -> Verdict:
    if status is None or status in FINAL:
        return ACKNOWLEDGED
    return Verdict(False, f"clone/complete refused (406): source transfer is {status.name}")


def _owes_callback(pending: PendingCallback) -> bool:
    return pending.source_transfer_id is not None and pending.status in TOLD


def _source_id(pending: PendingCallback) -> int:
    assert pending.source_transfer_id is not None, "only owed callbacks are sent"
    return pending.source_transfer_id


def _retry_times(outcome: Outcome, now: datetime) -> dict[datetime, list[int]]:
    """The deferred ids grouped by when each is to be retried."""
    groups: dict[datetime, list[int]] = {}
    for pending, _ in outcome.deferred.values():
        groups.setdefault(now + retry_delay(pending.attempts), []).append(pending.transfer_id)
    return groups


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def finish_shielded(step: Awaitable[None]) -> None:
    """Run ``step`` (a status write) to its end even if we are cancelled meanwhile, then let
    the cancellation through; its own error, if any, is logged rather than lost."""
    running = asyncio.ensure_future(step)
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({running})
        if not running.cancelled() and running.exception() is not None:
            log.error("write interrupted by cancellation failed", exc_info=running.exception())
        raise
