"""Progress reports on transfers: ``clone/ongoing``, ``staged``, ``fail``, ``complete`` and
``batch_complete``.

The first three arrive at the receiver and change an incoming transfer; ``clone/complete``
arrives at the sender and completes an outgoing one. Only the transfer's counterpart (or an
ADMIN) may change it; to anyone else the transfer does not exist.

``clone/batch_complete`` (a librarian_async extension) applies ``clone/complete`` to each of
its items in one transaction. Every check of an item is made before it writes anything, so
a refused item leaves nothing behind and never fails the others: it is listed with the
status the single call would have answered (400 or 406).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.api.auth import Caller, may_change_incoming, may_change_outgoing
from librarian_async.api.errors import ProtocolError
from librarian_async.api.state import ApiState
from librarian_async.api.unstaging import unstage
from librarian_async.db import peers, transfers
from librarian_async.db.models import IncomingTransfer, Librarian, OutgoingTransfer
from librarian_async.enums import TransferStatus
from librarian_async.errors import NotFoundError
from librarian_async.remote.schemas import (
    BatchCompleteRequest,
    BatchCompleteResponse,
    CompleteRefusal,
    CompleteRequest,
    CompleteResponse,
    FailRequest,
    FailResponse,
    TransferPair,
)
from librarian_async.transfer_states import can_complete

S = TransferStatus
Outcome = tuple[CompleteRequest, ProtocolError | None]
CHECK_STATUS = "Check the transfer's status (checkin/status) before reporting progress."


async def report_progress(
    api: ApiState, caller: Caller, pair: TransferPair, expected: S, new: S
) -> None:
    """Move an incoming transfer from ``expected`` to ``new``; 404 unknown, 406 otherwise."""
    async with api.context.sessions.begin() as session:
        row = await incoming_of(session, caller, pair)
        moved = row.status == expected and await transfers.move_incoming(
            session, [row.id], new, at=api.context.now()
        )
        if not moved:
            reason = f"incoming transfer {row.id} is {row.status.name}, not {expected.name}"
            raise ProtocolError.of(406, reason, CHECK_STATUS)


async def fail_incoming(api: ApiState, caller: Caller, request: FailRequest) -> FailResponse:
    """Fail a live incoming transfer and remove its staged file.

    Failing a FAILED transfer again succeeds (and unstages again); COMPLETED and CANCELLED
    transfers are left as they are and the answer says ``success: false``.
    """
    reason = f"failed by {caller.username}: {request.reason}"
    async with api.context.sessions.begin() as session:
        row = await incoming_of(session, caller, request)
        ended = await transfers.move_incoming(
            session, [row.id], S.FAILED, at=api.context.now(), reason=reason
        )
    if row.status == S.FAILED:
        path, name = row.staging_path or "", row.upload_name
        ended = [transfers.Unstaged(row.id, row.store_id or 0, path, name)]
    await unstage(api, ended)
    return FailResponse(
        source_transfer_id=request.source_transfer_id,
        destination_transfer_id=request.destination_transfer_id,
        success=bool(ended),
    )


async def incoming_of(
    session: AsyncSession, caller: Caller, pair: TransferPair
) -> IncomingTransfer:
    """The caller's incoming transfer named by ``pair``, or 404."""
    row = (await transfers.incoming_by_ids(session, [pair.destination_transfer_id])).get(
        pair.destination_transfer_id
    )
    if (
        row is None
        or not may_change_incoming(caller, row)
        or row.source_transfer_id not in (None, pair.source_transfer_id)
    ):
        reason = (
            f"no incoming transfer {pair.destination_transfer_id} for source transfer "
            f"{pair.source_transfer_id} from {caller.username!r}"
        )
        raise ProtocolError.of(404, reason, "Check the transfer ids.")
    return row


async def complete_outgoing(
    api: ApiState, caller: Caller, request: CompleteRequest
) -> CompleteResponse:
    """Mark an outgoing transfer COMPLETED and record the receiver's copy; idempotent."""
    async with api.context.sessions.begin() as session:
        completer = Completer(session, caller, api.context.now())
        [(_, refused)] = await completer.complete([request])
    if refused is not None:
        raise refused
    return CompleteResponse(
        source_transfer_id=request.source_transfer_id,
        destination_transfer_id=request.destination_transfer_id,
    )


async def complete_outgoing_batch(
    api: ApiState, caller: Caller, request: BatchCompleteRequest
) -> BatchCompleteResponse:
    """:func:`complete_outgoing` for every item, in one transaction. A refused item changes
    nothing and is listed with the status ``clone/complete`` would have answered for it."""
    reply = BatchCompleteResponse(completed=[], refused=[])
    async with api.context.sessions.begin() as session:
        completer = Completer(session, caller, api.context.now())
        for item, refused in await completer.complete(request.items):
            if refused is None:
                reply.completed.append(item.source_transfer_id)
            else:
                reply.refused.append(_refusal(item, refused))
    return reply


def _refusal(item: CompleteRequest, refused: ProtocolError) -> CompleteRefusal:
    return CompleteRefusal(
        source_transfer_id=item.source_transfer_id,
        destination_transfer_id=item.destination_transfer_id,
        status=refused.status,
        reason=refused.body.reason,
        suggested_remedy=refused.body.suggested_remedy,
    )


@dataclass(eq=False)
class Completer:
    """Completes the caller's outgoing transfers inside one transaction: the rows are read
    with one query, completed with one UPDATE (per :data:`transfers.COMPLETE_CHUNK`) and
    their copies recorded with one INSERT, whatever the number of items."""

    session: AsyncSession
    caller: Caller
    now: datetime
    destinations: dict[str, Librarian | None] = field(default_factory=dict)

    async def complete(self, items: Sequence[CompleteRequest]) -> list[Outcome]:
        """Complete each item's transfer (unless it is already) and record the copy; each
        item comes back, in order, with None or the refusal (400 or 406) that left it
        unchanged."""
        accepted, refusals = await self._check(items)
        pending = {
            row.id: items[position].destination_transfer_id
            for position, row, _ in accepted
            if row.status != S.COMPLETED and can_complete("outgoing", row.status)
        }
        completed = await transfers.complete_outgoing(self.session, pending, at=self.now)
        copies = []
        for position, row, peer in accepted:
            if row.status == S.COMPLETED or row.id in completed:
                store_id = items[position].store_id
                copies.append(transfers.RemoteCopy(row.file_name, peer.id, store_id))
            else:
                reason = f"outgoing transfer {row.id} is {row.status.name}, not ONGOING or STAGED"
                refusals[position] = ProtocolError.of(406, reason, CHECK_STATUS)
        await transfers.record_remote_instances(
            self.session, copies, copy_time=self.now, sender=self.caller.username
        )
        return [(item, refusals.get(position)) for position, item in enumerate(items)]

    async def _check(
        self, items: Sequence[CompleteRequest]
    ) -> tuple[list[tuple[int, OutgoingTransfer, Librarian]], dict[int, ProtocolError]]:
        """The items (by position) naming the caller's transfers to a known peer, and the
        refusals of the others."""
        ids = {item.source_transfer_id for item in items}
        rows = await transfers.outgoing_by_ids(self.session, ids)
        accepted = []
        refusals: dict[int, ProtocolError] = {}
        for position, item in enumerate(items):
            try:
                row = _checked_outgoing(self.caller, item.source_transfer_id, rows)
                accepted.append((position, row, await self._destination(row)))
            except ProtocolError as refusal:
                refusals[position] = refusal
        return accepted, refusals

    async def _destination(self, row: OutgoingTransfer) -> Librarian:
        if row.destination not in self.destinations:
            try:
                found = await peers.librarian_by_name(self.session, row.destination)
            except NotFoundError:
                found = None
            self.destinations[row.destination] = found
        peer = self.destinations[row.destination]
        if peer is None:
            raise _unknown_destination(row)
        return peer


def _checked_outgoing(
    caller: Caller, transfer_id: int, rows: Mapping[int, OutgoingTransfer]
) -> OutgoingTransfer:
    row = rows.get(transfer_id)
    if row is None or not may_change_outgoing(caller, row):
        reason = f"no outgoing transfer {transfer_id} to {caller.username!r}"
        raise ProtocolError.of(400, reason, "Check the transfer ids.")
    return row


def _unknown_destination(row: OutgoingTransfer) -> ProtocolError:
    reason = f"outgoing transfer {row.id}: unknown destination librarian {row.destination!r}"
    return ProtocolError.of(400, reason, "Add the librarian (librarian add).")
