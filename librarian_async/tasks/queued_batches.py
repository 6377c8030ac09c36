"""What consume_queue and check_consumed_queue share: clients per peer, and the two ends of
a queued batch (PROTOCOL §3): staged on the peer, or failed on both sides.

Per-row states stay consistent: the peer's answer is applied transfer by transfer, so a
row the peer confirms moves on while a row it refuses fails alone, and a COMPLETED row
never regresses (every move is conditional on the transition table).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from types import TracebackType

from librarian_async.context import Context
from librarian_async.db import peers, queue, transfers
from librarian_async.db.models import Librarian, OutgoingTransfer, SendQueueItem
from librarian_async.enums import TransferStatus
from librarian_async.errors import NotFoundError, PeerError
from librarian_async.remote import schemas as wire
from librarian_async.remote.client import PeerClient
from librarian_async.remote.peers import peer_client
from librarian_async.transfer.base import VerifiedStats

log = logging.getLogger(__name__)
S = TransferStatus
LIVE_AFTER_HAND_OFF = (S.ONGOING, S.STAGED)


class PeerClients:
    """One client per peer for the length of a run (``async with``)."""

    def __init__(self, app: Context) -> None:
        self.app = app
        self._stack = AsyncExitStack()
        self._clients: dict[str, PeerClient] = {}

    async def __aenter__(self) -> PeerClients:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(kind, error, traceback)

    async def client_for(self, name: str) -> PeerClient:
        """The client of the peer named ``name`` (NotFoundError if it is not ours)."""
        if name not in self._clients:
            librarian = await self._librarian(name)
            client = peer_client(self.app, librarian)
            self._clients[name] = await self._stack.enter_async_context(client)
        return self._clients[name]

    async def _librarian(self, name: str) -> Librarian:
        async with self.app.sessions() as session:
            return await peers.librarian_by_name(session, name)


async def finish_batch(
    app: Context, item_id: int, client: PeerClient, verified: VerifiedStats | None = None
) -> int:
    """Tell the peer the batch is STAGED (with the stats of the files the method ``verified``),
    apply its answer per row, complete the batch.

    Returns how many transfers are now STAGED. A PeerError leaves the batch consumed and
    unfinished, for check_consumed_queue to try again.
    """
    rows = await _rows(app, item_id, LIVE_AFTER_HAND_OFF)
    if rows:
        ids = [_remote_id(row) for row in rows]
        stats = {i: verified[i] for i in ids if i in verified} if verified else {}
        request = wire.CheckinUpdateRequest(
            destination_transfer_ids=ids, new_status=S.STAGED, verified_stats=stats or None
        )
        answer = await client.checkin_update(request)
        await _apply_staged(app, rows, set(answer.modified_destination_transfer_ids), answer)
    async with app.sessions.begin() as session:
        item = await session.get(SendQueueItem, item_id, populate_existing=True)
        if item is not None:
            await queue.mark_completed(session, item, now=app.now())
    return len(rows)


async def _apply_staged(
    app: Context,
    rows: list[OutgoingTransfer],
    confirmed: set[int],
    answer: wire.CheckinUpdateResponse,
) -> None:
    staged = [row.id for row in rows if _remote_id(row) in confirmed]
    refused = [row.id for row in rows if _remote_id(row) not in confirmed]
    reason = "the peer refused STAGED: " + "; ".join(answer.reasons)[:500]
    async with app.sessions.begin() as session:
        await transfers.move_outgoing(session, staged, S.STAGED, at=app.now())
        await transfers.move_outgoing(session, refused, S.FAILED, at=app.now(), reason=reason)


async def fail_batch(app: Context, item_id: int, reason: str, client: PeerClient | None) -> int:
    """Fail the batch and its live transfers here, then tell the peer (best effort: a peer
    that cannot be told fails its copies itself when they are staged again). Returns how
    many transfers were failed."""
    async with app.sessions.begin() as session:
        await queue.mark_failed(session, item_id, error=reason, now=app.now())
        rows = await queue.live_transfers_of(session, item_id, (S.INITIATED, *LIVE_AFTER_HAND_OFF))
        failed = await transfers.move_outgoing(
            session, [row.id for row in rows], S.FAILED, at=app.now(), reason=reason
        )
    remote = [_remote_id(row) for row in rows if row.id in set(failed)]
    if client is not None and remote:
        await tell_peer_failed(client, remote)
    return len(failed)


async def tell_peer_failed(client: PeerClient, destination_ids: list[int]) -> None:
    request = wire.CheckinUpdateRequest(
        destination_transfer_ids=destination_ids, new_status=S.FAILED
    )
    try:
        await client.checkin_update(request)
    except PeerError as error:
        log.warning("could not tell %s to fail its copies: %s", client.base_url, error)


async def _rows(
    app: Context, item_id: int, statuses: tuple[TransferStatus, ...]
) -> list[OutgoingTransfer]:
    async with app.sessions() as session:
        return list(await queue.live_transfers_of(session, item_id, statuses))


def _remote_id(row: OutgoingTransfer) -> int:
    if row.remote_transfer_id is None:  # queue_batch always sets it
        raise NotFoundError(f"outgoing transfer {row.id} has no peer transfer id")
    return row.remote_transfer_id
