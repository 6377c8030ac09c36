"""``clone/ongoing``, ``clone/staged``, ``clone/fail`` (receiver) and ``clone/complete``
(sender): status rules, who may call them, staging clean-up and idempotency."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from librarian_async.context import Context
from librarian_async.db.models import IncomingTransfer, OutgoingTransfer, RemoteInstance, Store
from librarian_async.enums import TransferStatus

from .helpers import add_file, add_incoming, add_librarian, add_outgoing, post, status_of

S = TransferStatus


def pair(row: IncomingTransfer) -> dict[str, int]:
    return {"source_transfer_id": row.source_transfer_id or 0, "destination_transfer_id": row.id}


async def staged_dir(store: Store, name: str = "t1") -> Path:
    directory = Path(store.staging_path) / name
    directory.mkdir()
    (directory / "a.uvh5").write_bytes(b"data")
    return directory


# --- clone/ongoing and clone/staged ----------------------------------------------------------


async def test_ongoing_then_staged(client: httpx.AsyncClient, app: Context, store: Store) -> None:
    row = await add_incoming(app, store)
    ongoing = await post(client, "clone/ongoing", pair(row), "peer-a")
    assert ongoing.status_code == 200
    assert ongoing.json() == pair(row)
    assert await status_of(app, IncomingTransfer, row.id) == S.ONGOING
    staged = await post(client, "clone/staged", pair(row), "peer-a")
    assert staged.status_code == 200
    assert staged.json() == pair(row) | {"success": True}
    assert await status_of(app, IncomingTransfer, row.id) == S.STAGED


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("clone/ongoing", S.ONGOING),
        ("clone/ongoing", S.STAGED),
        ("clone/ongoing", S.COMPLETED),
        ("clone/staged", S.INITIATED),
        ("clone/staged", S.STAGED),
        ("clone/staged", S.FAILED),
    ],
)
async def test_wrong_status_is_406_and_changes_nothing(
    client: httpx.AsyncClient, app: Context, store: Store, path: str, status: TransferStatus
) -> None:
    row = await add_incoming(app, store, status=status)
    response = await post(client, path, pair(row), "peer-a")
    assert response.status_code == 406
    assert status.name in response.json()["reason"]
    assert await status_of(app, IncomingTransfer, row.id) == status


@pytest.mark.parametrize("path", ["clone/ongoing", "clone/staged", "clone/fail"])
async def test_unknown_or_someone_elses_transfer_is_404(
    client: httpx.AsyncClient, app: Context, store: Store, path: str
) -> None:
    row = await add_incoming(app, store, status=S.ONGOING)
    body = pair(row) | {"reason": "r"}
    unknown = await post(client, path, body | {"destination_transfer_id": row.id + 99}, "peer-a")
    assert unknown.status_code == 404
    assert set(unknown.json()) == {"reason", "suggested_remedy"}
    assert (await post(client, path, body, "peer-b")).status_code == 404
    mismatch = body | {"source_transfer_id": 12345}
    assert (await post(client, path, mismatch, "peer-a")).status_code == 404
    assert await status_of(app, IncomingTransfer, row.id) == S.ONGOING


async def test_an_admin_may_report_for_anyone(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    row = await add_incoming(app, store)
    assert (await post(client, "clone/ongoing", pair(row), "admin")).status_code == 200


# --- clone/fail ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.INITIATED, S.ONGOING, S.STAGED])
async def test_fail_fails_and_unstages(
    client: httpx.AsyncClient, app: Context, store: Store, status: TransferStatus
) -> None:
    directory = await staged_dir(store)
    row = await add_incoming(app, store, status=status, staging=directory)
    body = pair(row) | {"reason": "method gave up"}
    response = await post(client, "clone/fail", body, "peer-a")
    assert response.status_code == 200
    assert response.json() == pair(row) | {"success": True}
    assert await status_of(app, IncomingTransfer, row.id) == S.FAILED
    assert not directory.exists()
    async with app.sessions() as session:
        failed = await session.get_one(IncomingTransfer, row.id)
    assert "method gave up" in (failed.failure_reason or "")
    assert failed.end_time is not None
    again = await post(client, "clone/fail", body, "peer-a")
    assert again.json()["success"] is True


@pytest.mark.parametrize("status", [S.COMPLETED, S.CANCELLED])
async def test_fail_never_regresses_a_final_status(
    client: httpx.AsyncClient, app: Context, store: Store, status: TransferStatus
) -> None:
    directory = await staged_dir(store)
    row = await add_incoming(app, store, status=status, staging=directory)
    response = await post(client, "clone/fail", pair(row) | {"reason": "late"}, "peer-a")
    assert response.status_code == 200
    assert response.json()["success"] is False
    assert await status_of(app, IncomingTransfer, row.id) == status
    assert directory.exists()


# --- clone/complete (on the sender) -------------------------------------------------------


async def remote_instances(app: Context) -> list[RemoteInstance]:
    async with app.sessions() as session:
        return list((await session.scalars(select(RemoteInstance))).all())


@pytest.mark.parametrize("status", [S.ONGOING, S.STAGED])
async def test_complete_records_the_remote_copy_and_is_idempotent(
    client: httpx.AsyncClient, app: Context, status: TransferStatus
) -> None:
    peer = await add_librarian(app, "callback")
    file = await add_file(app, "obs/a.uvh5")
    row = await add_outgoing(app, file, status=status)
    body = {"source_transfer_id": row.id, "destination_transfer_id": 77, "store_id": 5}
    for _ in range(2):
        response = await post(client, "clone/complete", body, "callback")
        assert response.status_code == 200
        assert response.json() == {"source_transfer_id": row.id, "destination_transfer_id": 77}
    async with app.sessions() as session:
        done = await session.get_one(OutgoingTransfer, row.id)
    assert done.status == S.COMPLETED
    assert done.remote_transfer_id == 77
    assert done.end_time is not None
    [copy] = await remote_instances(app)
    assert (copy.file_name, copy.librarian_id, copy.store_id) == (file.name, peer.id, 5)
    assert copy.sender == "callback"


@pytest.mark.parametrize("status", [S.INITIATED, S.FAILED, S.CANCELLED])
async def test_complete_refuses_other_statuses_with_406(
    client: httpx.AsyncClient, app: Context, status: TransferStatus
) -> None:
    await add_librarian(app, "callback")
    row = await add_outgoing(app, await add_file(app, "a"), status=status)
    body = {"source_transfer_id": row.id, "destination_transfer_id": 1, "store_id": 1}
    response = await post(client, "clone/complete", body, "callback")
    assert response.status_code == 406
    assert await status_of(app, OutgoingTransfer, row.id) == status
    assert await remote_instances(app) == []


async def test_complete_unknown_transfer_or_librarian_is_400(
    client: httpx.AsyncClient, app: Context
) -> None:
    row = await add_outgoing(app, await add_file(app, "a"))
    body = {"source_transfer_id": row.id, "destination_transfer_id": 1, "store_id": 1}
    no_peer = await post(client, "clone/complete", body, "callback")
    assert no_peer.status_code == 400
    assert "unknown destination librarian" in no_peer.json()["reason"]
    await add_librarian(app, "callback")
    unknown = await post(client, "clone/complete", body | {"source_transfer_id": 999}, "callback")
    assert unknown.status_code == 400
    not_theirs = await post(client, "clone/complete", body, "peer-a")
    assert not_theirs.status_code == 400
    assert await status_of(app, OutgoingTransfer, row.id) == S.ONGOING


async def test_complete_needs_callback_level(client: httpx.AsyncClient, app: Context) -> None:
    body = {"source_transfer_id": 1, "destination_transfer_id": 1, "store_id": 1}
    assert (await post(client, "clone/complete", body, "reader")).status_code == 401
