"""``checkin/update`` and ``checkin/status``: the transition table per id, who may change
what, staging clean-up, and the id-keyed status objects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from librarian_async.context import Context
from librarian_async.db.models import IncomingTransfer, OutgoingTransfer, Store
from librarian_async.enums import TransferStatus
from librarian_async.transfer_states import can_move

from .helpers import add_file, add_incoming, add_outgoing, post, status_of

S = TransferStatus


def update(
    new: TransferStatus,
    incoming: Sequence[int] = (),
    outgoing: Sequence[int] = (),
    verified_stats: dict[int, str] | None = None,
) -> dict[str, object]:
    body: dict[str, object] = {
        "source_transfer_ids": list(outgoing),
        "destination_transfer_ids": list(incoming),
        "new_status": int(new),
    }
    if verified_stats is not None:
        body["verified_stats"] = {str(key): value for key, value in verified_stats.items()}
    return body


@pytest.mark.parametrize("new", list(S))
async def test_incoming_follows_the_transition_table(
    client: httpx.AsyncClient, app: Context, store: Store, new: TransferStatus
) -> None:
    rows = {
        current: await add_incoming(app, store, status=current, name=current.name) for current in S
    }
    ids = [row.id for row in rows.values()]
    response = await post(client, "checkin/update", update(new, incoming=ids), "peer-a")
    assert response.status_code == 200
    reply = response.json()
    allowed = {c: c == new or can_move(c, new) for c in S}
    assert reply["modified_destination_transfer_ids"] == [rows[c].id for c in S if allowed[c]]
    assert reply["unmodified_destination_transfer_ids"] == [rows[c].id for c in S if not allowed[c]]
    assert len(reply["reasons"]) == len(reply["unmodified_destination_transfer_ids"])
    for current, row in rows.items():
        expected = new if allowed[current] else current
        assert await status_of(app, IncomingTransfer, row.id) == expected


@pytest.mark.parametrize("new", list(S))
async def test_outgoing_follows_the_transition_table(
    client: httpx.AsyncClient, app: Context, new: TransferStatus
) -> None:
    file = await add_file(app, "f")
    rows = {c: await add_outgoing(app, file, destination="peer-a", status=c) for c in S}
    body = update(new, outgoing=[row.id for row in rows.values()])
    reply = (await post(client, "checkin/update", body, "peer-a")).json()
    moved = [rows[c].id for c in S if c == new or can_move(c, new)]
    assert reply["modified_source_transfer_ids"] == moved
    for current, row in rows.items():
        expected = new if row.id in moved else current
        assert await status_of(app, OutgoingTransfer, row.id) == expected


def test_the_table_is_the_protocols() -> None:
    moves = {(a, b) for a in S for b in S if can_move(a, b)}
    assert moves == {
        (S.INITIATED, S.ONGOING),
        (S.INITIATED, S.STAGED),
        (S.INITIATED, S.FAILED),
        (S.INITIATED, S.CANCELLED),
        (S.ONGOING, S.STAGED),
        (S.ONGOING, S.FAILED),
        (S.ONGOING, S.CANCELLED),
        (S.STAGED, S.FAILED),
        (S.STAGED, S.CANCELLED),
    }


async def test_completed_never_regresses_in_a_mixed_batch(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    done = await add_incoming(app, store, status=S.COMPLETED, name="done")
    live = await add_incoming(app, store, status=S.ONGOING, name="live")
    body = update(S.FAILED, incoming=[done.id, live.id])
    reply = (await post(client, "checkin/update", body, "peer-a")).json()
    assert reply["modified_destination_transfer_ids"] == [live.id]
    assert reply["unmodified_destination_transfer_ids"] == [done.id]
    assert reply["reasons"] == [f"incoming transfer {done.id}: COMPLETED is final"]
    assert await status_of(app, IncomingTransfer, done.id) == S.COMPLETED
    assert await status_of(app, IncomingTransfer, live.id) == S.FAILED


@pytest.mark.parametrize("new", [S.FAILED, S.CANCELLED])
async def test_failing_or_cancelling_removes_staging(
    client: httpx.AsyncClient, app: Context, store: Store, new: TransferStatus
) -> None:
    directory = Path(store.staging_path) / "t"
    directory.mkdir()
    row = await add_incoming(app, store, status=S.ONGOING, staging=directory)
    (directory / row.upload_name).write_bytes(b"partial")
    reply = (await post(client, "checkin/update", update(new, [row.id]), "peer-a")).json()
    assert reply["modified_destination_transfer_ids"] == [row.id]
    assert not directory.exists()


async def test_staged_keeps_staging(client: httpx.AsyncClient, app: Context, store: Store) -> None:
    directory = Path(store.staging_path) / "t"
    directory.mkdir()
    row = await add_incoming(app, store, status=S.ONGOING, staging=directory)
    await post(client, "checkin/update", update(S.STAGED, [row.id]), "peer-a")
    assert directory.exists()


async def test_a_staged_update_wakes_receive_clone_when_a_transfer_moved(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    ongoing = await add_incoming(app, store, status=S.ONGOING, name="ongoing")
    fresh = await add_incoming(app, store, status=S.INITIATED, name="fresh")
    theirs = await add_incoming(app, store, status=S.ONGOING, source="peer-b", name="theirs")
    with app.wakeups.listening("receive_clone") as woken:
        await post(client, "checkin/update", update(S.ONGOING, [fresh.id]), "peer-a")
        await post(client, "checkin/update", update(S.STAGED, [theirs.id]), "peer-a")
        assert not woken.is_set()  # nothing became STAGED: nothing to receive
        await post(client, "checkin/update", update(S.STAGED, [ongoing.id]), "peer-a")
        assert woken.is_set()


async def verified_stat_of(app: Context, transfer_id: int) -> str | None:
    async with app.sessions() as session:
        return (await session.get_one(IncomingTransfer, transfer_id)).verified_stat


async def test_staged_records_the_verified_stats_of_the_callers_moving_transfers(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    """The sender's stats (``local`` method) are kept only for transfers it may change that
    move to STAGED now; receive_clone trusts them (tests/tasks/test_receive_clone.py)."""
    moving = await add_incoming(app, store, status=S.ONGOING, name="moving")
    staged = await add_incoming(app, store, status=S.STAGED, name="staged")
    theirs = await add_incoming(app, store, status=S.ONGOING, source="peer-b", name="theirs")
    failed = await add_incoming(app, store, status=S.FAILED, name="failed")
    rows = (moving, staged, theirs, failed)
    stats = {row.id: f"1:2:3:4:{row.id}" for row in rows}
    body = update(S.STAGED, [row.id for row in rows], verified_stats=stats)
    reply = (await post(client, "checkin/update", body, "peer-a")).json()
    assert reply["modified_destination_transfer_ids"] == [moving.id, staged.id]
    assert await verified_stat_of(app, moving.id) == f"1:2:3:4:{moving.id}"
    for row in (staged, theirs, failed):
        assert await verified_stat_of(app, row.id) is None


async def test_verified_stats_are_ignored_with_other_statuses(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    row = await add_incoming(app, store, status=S.INITIATED)
    body = update(S.ONGOING, [row.id], verified_stats={row.id: "1:2:3:4:5"})
    reply = (await post(client, "checkin/update", body, "peer-a")).json()
    assert reply["modified_destination_transfer_ids"] == [row.id]
    assert await verified_stat_of(app, row.id) is None


async def test_an_overlong_verified_stat_is_400(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    row = await add_incoming(app, store, status=S.ONGOING)
    body = update(S.STAGED, [row.id], verified_stats={row.id: "9" * 129})
    response = await post(client, "checkin/update", body, "peer-a")
    assert response.status_code == 400
    assert await status_of(app, IncomingTransfer, row.id) == S.ONGOING


async def test_unknown_and_unauthorised_ids_are_unmodified(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    theirs = await add_incoming(app, store, source="peer-b")
    mine = await add_incoming(app, store, source="peer-a", name="mine")
    file = await add_file(app, "f")
    sent_to_b = await add_outgoing(app, file, destination="peer-b")
    sent_to_a = await add_outgoing(app, file, destination="peer-a")
    body = update(
        S.FAILED, incoming=[theirs.id, mine.id, 999], outgoing=[sent_to_b.id, sent_to_a.id, 998]
    )
    reply = (await post(client, "checkin/update", body, "peer-a")).json()
    assert reply["modified_destination_transfer_ids"] == [mine.id]
    assert reply["unmodified_destination_transfer_ids"] == [theirs.id, 999]
    assert reply["modified_source_transfer_ids"] == [sent_to_a.id]
    assert reply["unmodified_source_transfer_ids"] == [sent_to_b.id, 998]
    assert len(reply["reasons"]) == 4
    assert await status_of(app, IncomingTransfer, theirs.id) == S.INITIATED
    assert await status_of(app, OutgoingTransfer, sent_to_b.id) == S.ONGOING


async def test_an_admin_may_change_any_row(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    row = await add_incoming(app, store, source="peer-b")
    reply = (await post(client, "checkin/update", update(S.CANCELLED, [row.id]), "admin")).json()
    assert reply["modified_destination_transfer_ids"] == [row.id]


async def test_completed_cannot_be_set_by_request(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    row = await add_incoming(app, store, status=S.STAGED)
    file = await add_file(app, "f")
    out = await add_outgoing(app, file, destination="peer-a", status=S.STAGED)
    body = update(S.COMPLETED, [row.id], [out.id])
    reply = (await post(client, "checkin/update", body, "peer-a")).json()
    assert reply["unmodified_destination_transfer_ids"] == [row.id]
    assert reply["unmodified_source_transfer_ids"] == [out.id]
    assert all("cannot set COMPLETED" in reason for reason in reply["reasons"])


async def test_an_invalid_status_is_400(client: httpx.AsyncClient) -> None:
    response = await post(client, "checkin/update", update(S.FAILED) | {"new_status": 9}, "peer-a")
    assert response.status_code == 400
    assert "new_status" in response.json()["reason"]


async def test_status_reports_mine_and_nulls_for_others(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    mine = await add_incoming(app, store, status=S.STAGED)
    theirs = await add_incoming(app, store, source="peer-b", name="b")
    out = await add_outgoing(app, await add_file(app, "f"), destination="peer-a")
    body = {"source_transfer_ids": [out.id, 555], "destination_transfer_ids": [mine.id, theirs.id]}
    response = await post(client, "checkin/status", body, "peer-a")
    assert response.status_code == 200
    assert response.json() == {
        "source_transfer_status": {str(out.id): int(S.ONGOING), "555": None},
        "destination_transfer_status": {str(mine.id): int(S.STAGED), str(theirs.id): None},
    }
