"""Progress reports on single transfers: ``clone/ongoing``, ``staged``, ``fail``, ``complete``.

The first three arrive at the receiver and change an incoming transfer; ``clone/complete``
arrives at the sender and completes an outgoing one. Only the transfer's counterpart (or an
ADMIN) may change it; to anyone else the transfer does not exist.
"""

from __future__ import annotations

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
    now = api.context.now()
    async with api.context.sessions.begin() as session:
        row = await outgoing_of(session, caller, request.source_transfer_id)
        peer = await destination_of(session, row)
        if row.status != S.COMPLETED:
            await _complete(session, row, request, now)
        await transfers.record_remote_instance(
            session,
            file_name=row.file_name,
            librarian_id=peer.id,
            store_id=request.store_id,
            copy_time=now,
            sender=caller.username,
        )
    return CompleteResponse(
        source_transfer_id=request.source_transfer_id,
        destination_transfer_id=request.destination_transfer_id,
    )


async def _complete(
    session: AsyncSession, row: OutgoingTransfer, request: CompleteRequest, now: datetime
) -> None:
    completed = can_complete("outgoing", row.status) and await transfers.complete_outgoing(
        session, row.id, remote_transfer_id=request.destination_transfer_id, at=now
    )
    if not completed:
        reason = f"outgoing transfer {row.id} is {row.status.name}, not ONGOING or STAGED"
        raise ProtocolError.of(406, reason, CHECK_STATUS)


async def outgoing_of(session: AsyncSession, caller: Caller, transfer_id: int) -> OutgoingTransfer:
    row = (await transfers.outgoing_by_ids(session, [transfer_id])).get(transfer_id)
    if row is None or not may_change_outgoing(caller, row):
        reason = f"no outgoing transfer {transfer_id} to {caller.username!r}"
        raise ProtocolError.of(400, reason, "Check the transfer ids.")
    return row


async def destination_of(session: AsyncSession, row: OutgoingTransfer) -> Librarian:
    try:
        return await peers.librarian_by_name(session, row.destination)
    except NotFoundError as error:
        reason = f"outgoing transfer {row.id}: unknown destination librarian {row.destination!r}"
        raise ProtocolError.of(400, reason, "Add the librarian (librarian add).") from error
