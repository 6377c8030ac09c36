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
    """Fail a live incoming transfer and remove its staging directory.

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
        ended = [transfers.Unstaged(row.id, row.store_id or 0, row.staging_path or "")]
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
        await completer.load([request.source_transfer_id])
        await completer.complete(request)
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
        await completer.load([item.source_transfer_id for item in request.items])
        for item in request.items:
            try:
                await completer.complete(item)
            except ProtocolError as refused:
                reply.refused.append(_refusal(item, refused))
            else:
                reply.completed.append(item.source_transfer_id)
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
    """Completes the caller's outgoing transfers inside one transaction, reading each row
    and each destination librarian once."""

    session: AsyncSession
    caller: Caller
    now: datetime
    rows: dict[int, OutgoingTransfer] = field(default_factory=dict)
    destinations: dict[str, Librarian | None] = field(default_factory=dict)
    completed: set[int] = field(default_factory=set)

    async def load(self, transfer_ids: Sequence[int]) -> None:
        self.rows.update(await transfers.outgoing_by_ids(self.session, set(transfer_ids)))

    async def complete(self, request: CompleteRequest) -> None:
        """Complete one loaded transfer (unless it is already) and record the copy; a
        ProtocolError (400 or 406) is raised before anything is written."""
        row = _checked_outgoing(self.caller, request.source_transfer_id, self.rows)
        peer = await self._destination(row)
        if row.status != S.COMPLETED and row.id not in self.completed:
            await _complete(self.session, row, request, self.now)
            self.completed.add(row.id)
        await transfers.record_remote_instance(
            self.session,
            file_name=row.file_name,
            librarian_id=peer.id,
            store_id=request.store_id,
            copy_time=self.now,
            sender=self.caller.username,
        )

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


async def _complete(
    session: AsyncSession, row: OutgoingTransfer, request: CompleteRequest, now: datetime
) -> None:
    completed = can_complete("outgoing", row.status) and await transfers.complete_outgoing(
        session, row.id, remote_transfer_id=request.destination_transfer_id, at=now
    )
    if not completed:
        reason = f"outgoing transfer {row.id} is {row.status.name}, not ONGOING or STAGED"
        raise ProtocolError.of(406, reason, CHECK_STATUS)


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
