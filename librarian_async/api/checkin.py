"""``checkin/update`` and ``checkin/status``: many transfers at once, judged one by one.

On the callee, ``source_transfer_ids`` name its outgoing transfers and
``destination_transfer_ids`` its incoming ones. An update never fails as a whole: every id
ends in a ``modified`` or an ``unmodified`` list, with a reason for each unmodified one.
An id that is unknown, or whose transfer is not the caller's, is unmodified (and has a null
status); a transfer already in the asked status counts as modified, so a retried call
succeeds without changing anything. Incoming transfers moved to FAILED or CANCELLED lose
their staging directory. With STAGED, the ``verified_stats`` of the incoming transfers that
move are recorded (``IncomingTransfer.verified_stat``: receive_clone then trusts those files
while they are unchanged); others are ignored.
"""

# No ``from __future__ import annotations``: FastAPI must see the handlers' annotations,
# which name dependencies local to ``router()``.

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, NamedTuple, TypeVar

from fastapi import APIRouter, Depends

from librarian_async.api.auth import Caller, may_change_incoming, may_change_outgoing
from librarian_async.api.errors import ProtocolRoute
from librarian_async.api.state import ApiState
from librarian_async.api.unstaging import unstage
from librarian_async.db import transfers
from librarian_async.db.models import IncomingTransfer, OutgoingTransfer
from librarian_async.enums import AuthLevel, TransferStatus
from librarian_async.remote.schemas import (
    CheckinStatusRequest,
    CheckinStatusResponse,
    CheckinUpdateRequest,
    CheckinUpdateResponse,
)
from librarian_async.transfer_states import ends_staging, refusal

Row = TypeVar("Row", IncomingTransfer, OutgoingTransfer)


class Outcome(NamedTuple):
    modified: list[int]
    unmodified: list[int]
    reasons: list[str]


@dataclass
class Plan:
    """What to do with the ids of one direction (in request order, without repeats)."""

    kind: str
    ids: list[int] = field(default_factory=list)
    to_move: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)

    def outcome(self, moved: Sequence[int]) -> Outcome:
        """Where every id ends once ``moved`` were really moved (others changed meanwhile)."""
        lost = set(self.to_move) - set(moved)
        reasons = {**self.refused, **dict.fromkeys(lost, "changed meanwhile; check its status")}
        unmodified = [i for i in self.ids if i in reasons]
        return Outcome(
            modified=[i for i in self.ids if i not in reasons],
            unmodified=unmodified,
            reasons=[f"{self.kind} {i}: {reasons[i]}" for i in unmodified],
        )


def plan(
    kind: str,
    ids: Sequence[int],
    rows: Mapping[int, Row],
    allowed: Callable[[Row], bool],
    new: TransferStatus,
) -> Plan:
    result = Plan(kind, ids=list(dict.fromkeys(ids)))
    for transfer_id in result.ids:
        row = rows.get(transfer_id)
        if row is None or not allowed(row):
            result.refused[transfer_id] = "unknown, or not a transfer of yours"
        elif (why := refusal(row.status, new)) is not None:
            result.refused[transfer_id] = why
        elif row.status != new:
            result.to_move.append(transfer_id)
    return result


async def update(
    api: ApiState, caller: Caller, request: CheckinUpdateRequest
) -> CheckinUpdateResponse:
    new, now = request.new_status, api.context.now()
    reason = f"set {new.name} by {caller.username} (checkin/update)"
    async with api.context.sessions.begin() as session:
        outgoing = plan(
            "outgoing transfer",
            request.source_transfer_ids,
            await transfers.outgoing_by_ids(session, request.source_transfer_ids),
            lambda row: may_change_outgoing(caller, row),
            new,
        )
        incoming = plan(
            "incoming transfer",
            request.destination_transfer_ids,
            await transfers.incoming_by_ids(session, request.destination_transfer_ids),
            lambda row: may_change_incoming(caller, row),
            new,
        )
        if new == TransferStatus.STAGED:
            stats = request.verified_stats or {}
            verified = {i: stats[i] for i in incoming.to_move if i in stats}
            await transfers.record_verified_stats(session, verified)
        moved_out = await transfers.move_outgoing(
            session, outgoing.to_move, new, at=now, reason=reason
        )
        moved_in = await transfers.move_incoming(
            session, incoming.to_move, new, at=now, reason=reason
        )
    if ends_staging(new):
        await unstage(api, moved_in)
    if new == TransferStatus.STAGED and moved_in:
        api.context.wakeups.wake("receive_clone")  # under serve: ingest now, not next tick
    return _update_response(
        outgoing.outcome(moved_out), incoming.outcome([m.transfer_id for m in moved_in])
    )


def _update_response(source: Outcome, destination: Outcome) -> CheckinUpdateResponse:
    return CheckinUpdateResponse(
        modified_source_transfer_ids=source.modified,
        modified_destination_transfer_ids=destination.modified,
        unmodified_source_transfer_ids=source.unmodified,
        unmodified_destination_transfer_ids=destination.unmodified,
        reasons=source.reasons + destination.reasons,
    )


async def status(
    api: ApiState, caller: Caller, request: CheckinStatusRequest
) -> CheckinStatusResponse:
    async with api.context.sessions() as session:
        outgoing = await transfers.outgoing_by_ids(session, request.source_transfer_ids)
        incoming = await transfers.incoming_by_ids(session, request.destination_transfer_ids)
    return CheckinStatusResponse(
        source_transfer_status=_statuses(
            request.source_transfer_ids, outgoing, lambda row: may_change_outgoing(caller, row)
        ),
        destination_transfer_status=_statuses(
            request.destination_transfer_ids, incoming, lambda row: may_change_incoming(caller, row)
        ),
    )


def _statuses(
    ids: Sequence[int], rows: Mapping[int, Row], allowed: Callable[[Row], bool]
) -> dict[int, TransferStatus | None]:
    found: dict[int, TransferStatus | None] = {}
    for transfer_id in ids:
        row = rows.get(transfer_id)
        found[transfer_id] = row.status if row is not None and allowed(row) else None
    return found


def router(api: ApiState) -> APIRouter:
    routes = APIRouter(route_class=ProtocolRoute, tags=["checkin"])
    callback = api.auth.require(AuthLevel.CALLBACK)

    @routes.post("/checkin/update")
    async def checkin_update(
        request: CheckinUpdateRequest, caller: Annotated[Caller, Depends(callback)]
    ) -> CheckinUpdateResponse:
        return await update(api, caller, request)

    @routes.post("/checkin/status")
    async def checkin_status(
        request: CheckinStatusRequest, caller: Annotated[Caller, Depends(callback)]
    ) -> CheckinStatusResponse:
        return await status(api, caller, request)

    return routes
