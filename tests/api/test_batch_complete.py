"""``clone/batch_complete`` (on the sender, a librarian_async extension): ``clone/complete``
for many transfers in one call, with a verdict per item; never failing as a whole."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from librarian_async.context import Context
from librarian_async.db import transfers
from librarian_async.db.models import OutgoingTransfer, RemoteInstance
from librarian_async.enums import TransferStatus
from librarian_async.remote.schemas import MAX_BATCH_COMPLETE

from .helpers import add_file, add_librarian, add_outgoing, post, status_of

S = TransferStatus
STORE_ID = 5


def item(row: OutgoingTransfer, destination_id: int = 0) -> dict[str, int]:
    return {
        "source_transfer_id": row.id,
        "destination_transfer_id": destination_id or 1000 + row.id,
        "store_id": STORE_ID,
    }


async def outgoing_rows(
    app: Context, count: int, *, status: TransferStatus = S.ONGOING, destination: str = "callback"
) -> list[OutgoingTransfer]:
    rows = []
    for n in range(count):
        file = await add_file(app, f"{destination}/{status.name}/{n}.dat")
        rows.append(await add_outgoing(app, file, destination=destination, status=status))
    return rows


async def remote_instances(app: Context) -> list[RemoteInstance]:
    async with app.sessions() as session:
        return list((await session.scalars(select(RemoteInstance))).all())


async def statuses(app: Context, rows: list[OutgoingTransfer]) -> list[TransferStatus]:
    return [await status_of(app, OutgoingTransfer, row.id) for row in rows]


async def batch_complete(
    client: httpx.AsyncClient, items: list[dict[str, int]], user: str = "callback"
) -> httpx.Response:
    return await post(client, "clone/batch_complete", {"items": items}, user)


def refused_by_id(reply: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {refusal["source_transfer_id"]: refusal for refusal in reply["refused"]}


async def test_completes_every_item_and_records_the_remote_copies(
    client: httpx.AsyncClient, app: Context
) -> None:
    peer = await add_librarian(app, "callback")
    ongoing = await outgoing_rows(app, 20)
    staged = await outgoing_rows(app, 5, status=S.STAGED)
    rows = ongoing + staged

    response = await batch_complete(client, [item(row) for row in rows])

    assert response.status_code == 200
    assert response.json() == {"completed": [row.id for row in rows], "refused": []}
    assert await statuses(app, rows) == [S.COMPLETED] * 25
    async with app.sessions() as session:
        done = {row.id: row for row in await session.scalars(select(OutgoingTransfer))}
    assert all(done[row.id].remote_transfer_id == 1000 + row.id for row in rows)
    assert all(done[row.id].end_time is not None for row in rows)
    copies = await remote_instances(app)
    assert sorted((c.file_name, c.librarian_id, c.store_id, c.sender) for c in copies) == sorted(
        (row.file_name, peer.id, STORE_ID, "callback") for row in rows
    )


async def test_a_repeat_is_idempotent(client: httpx.AsyncClient, app: Context) -> None:
    await add_librarian(app, "callback")
    rows = await outgoing_rows(app, 3)
    body = [item(row) for row in rows]

    first = await batch_complete(client, body)
    again = await batch_complete(client, body + body[:1])  # an item twice in one call, too

    assert first.json() == {"completed": [row.id for row in rows], "refused": []}
    assert again.json() == {"completed": [row.id for row in rows] + [rows[0].id], "refused": []}
    assert await statuses(app, rows) == [S.COMPLETED] * 3
    assert len(await remote_instances(app)) == 3


async def test_a_batch_longer_than_one_statement_is_completed_in_chunks(
    client: httpx.AsyncClient, app: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfers, "COMPLETE_CHUNK", 3)
    await add_librarian(app, "callback")
    rows = await outgoing_rows(app, 8)
    failed = await outgoing_rows(app, 2, status=S.FAILED)
    mixed = rows[:4] + failed[:1] + rows[4:] + failed[1:]

    reply = (await batch_complete(client, [item(row) for row in mixed])).json()

    assert reply["completed"] == [row.id for row in rows]
    assert sorted(refused_by_id(reply)) == sorted(row.id for row in failed)
    assert await statuses(app, rows) == [S.COMPLETED] * 8
    assert await statuses(app, failed) == [S.FAILED] * 2
    assert sorted(copy.file_name for copy in await remote_instances(app)) == sorted(
        row.file_name for row in rows
    )


async def test_an_empty_batch_completes_nothing(client: httpx.AsyncClient) -> None:
    response = await batch_complete(client, [])
    assert (response.status_code, response.json()) == (200, {"completed": [], "refused": []})


async def test_unknown_or_someone_elses_transfers_are_refused_per_item_with_400(
    client: httpx.AsyncClient, app: Context
) -> None:
    await add_librarian(app, "callback")
    await add_librarian(app, "peer-a")
    [mine] = await outgoing_rows(app, 1)
    [theirs] = await outgoing_rows(app, 1, destination="peer-a")
    unknown = item(mine) | {"source_transfer_id": 999_999}

    response = await batch_complete(client, [unknown, item(theirs), item(mine)])

    assert response.status_code == 200
    reply = response.json()
    assert reply["completed"] == [mine.id]
    refused = refused_by_id(reply)
    assert set(refused) == {999_999, theirs.id}
    assert refused[999_999]["destination_transfer_id"] == unknown["destination_transfer_id"]
    assert all(refusal["status"] == 400 for refusal in refused.values())
    assert "no outgoing transfer" in refused[theirs.id]["reason"]
    assert set(refused[theirs.id]) == {
        "source_transfer_id",
        "destination_transfer_id",
        "status",
        "reason",
        "suggested_remedy",
    }
    assert await statuses(app, [mine, theirs]) == [S.COMPLETED, S.ONGOING]
    assert [copy.file_name for copy in await remote_instances(app)] == [mine.file_name]


async def test_an_unknown_destination_librarian_is_refused_per_item_with_400(
    client: httpx.AsyncClient, app: Context
) -> None:
    rows = await outgoing_rows(app, 2)  # no librarian named "callback"

    reply = (await batch_complete(client, [item(row) for row in rows])).json()

    assert reply["completed"] == []
    assert [
        (r["status"], "unknown destination librarian" in r["reason"]) for r in reply["refused"]
    ] == [
        (400, True),
        (400, True),
    ]
    assert await statuses(app, rows) == [S.ONGOING] * 2


@pytest.mark.parametrize("status", [S.INITIATED, S.FAILED, S.CANCELLED])
async def test_a_transfer_in_another_state_is_refused_per_item_with_406(
    client: httpx.AsyncClient, app: Context, status: TransferStatus
) -> None:
    await add_librarian(app, "callback")
    [other] = await outgoing_rows(app, 1, status=status)
    [fine] = await outgoing_rows(app, 1)

    reply = (await batch_complete(client, [item(other), item(fine)])).json()

    assert reply["completed"] == [fine.id]
    [refusal] = reply["refused"]
    assert (refusal["source_transfer_id"], refusal["status"]) == (other.id, 406)
    assert status.name in refusal["reason"]
    assert await statuses(app, [other, fine]) == [status, S.COMPLETED]
    assert [copy.file_name for copy in await remote_instances(app)] == [fine.file_name]


async def test_an_admin_may_complete_anyones_transfers(
    client: httpx.AsyncClient, app: Context
) -> None:
    await add_librarian(app, "callback")
    rows = await outgoing_rows(app, 2)
    reply = (await batch_complete(client, [item(row) for row in rows], "admin")).json()
    assert reply == {"completed": [row.id for row in rows], "refused": []}


@pytest.mark.parametrize("user", ["reader", "nobody", None])
async def test_needs_callback_level(
    client: httpx.AsyncClient, app: Context, user: str | None
) -> None:
    await add_librarian(app, "callback")
    rows = await outgoing_rows(app, 1)
    response = await post(client, "clone/batch_complete", {"items": [item(rows[0])]}, user)
    assert response.status_code == 401
    assert await statuses(app, rows) == [S.ONGOING]


async def test_too_many_items_are_refused_as_a_whole_with_400(
    client: httpx.AsyncClient, app: Context
) -> None:
    await add_librarian(app, "callback")
    [row] = await outgoing_rows(app, 1)

    response = await batch_complete(client, [item(row)] * (MAX_BATCH_COMPLETE + 1))

    assert response.status_code == 400
    assert "items" in response.json()["reason"]
    assert await statuses(app, [row]) == [S.ONGOING]


async def test_a_malformed_item_is_refused_as_a_whole_with_400(client: httpx.AsyncClient) -> None:
    response = await batch_complete(client, [{"source_transfer_id": 1}])
    assert response.status_code == 400
    assert set(response.json()) == {"reason", "suggested_remedy"}
