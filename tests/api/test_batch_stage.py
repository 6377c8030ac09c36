"""``clone/batch_stage``: every rule of PROTOCOL §2.1, status codes, bodies and side effects."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from librarian_async.context import Context
from librarian_async.db.models import IncomingTransfer, Store
from librarian_async.enums import TransferStatus

from .helpers import (
    Disk,
    add_file,
    add_incoming,
    add_store,
    incoming_rows,
    md5,
    post,
    staging_entries,
    status_of,
)

S = TransferStatus
REFUSAL_KEYS = {"reason", "suggested_remedy", "source_transfer_ids", "destination_transfer_ids"}


def is_empty_directory(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def remove_directory(path: str) -> None:
    Path(path).rmdir()


def upload(name: str, content: bytes = b"data", source_id: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "upload_size": len(content),
        "upload_checksum": md5(content),
        "upload_name": name.rsplit("/", 1)[-1],
        "destination_location": name,
        "uploader": "someone",
        "source_transfer_id": source_id,
    } | extra


def batch(*uploads: dict[str, Any], **extra: Any) -> dict[str, Any]:
    total = sum(item["upload_size"] for item in uploads)
    return {"uploads": list(uploads), "source": "peer-a", "total_size": total} | extra


async def stage(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await post(client, "clone/batch_stage", body, "peer-a")


# --- success --------------------------------------------------------------------------------


async def test_creates_initiated_transfers_sharing_a_fresh_staging_dir(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    body = batch(upload("obs/a.uvh5", b"aaa", 11), upload("obs/b.uvh5", b"bb", 12))
    response = await stage(client, body)
    assert response.status_code == 201, response.json()
    reply = response.json()
    assert set(reply) == {
        "available_bytes_on_store",
        "store_name",
        "uploads",
        "async_transfer_providers",
    }
    assert reply["store_name"] == "main"
    assert reply["available_bytes_on_store"] > 0
    rows = await incoming_rows(app)
    assert [row.status for row in rows] == [S.INITIATED, S.INITIATED]
    for row, item, sent in zip(rows, reply["uploads"], body["uploads"], strict=True):
        assert set(item) == {
            "staging_name",
            "staging_location",
            "upload_name",
            "destination_location",
            "source_transfer_id",
            "destination_transfer_id",
        }
        assert item["destination_transfer_id"] == row.id
        assert item["source_transfer_id"] == row.source_transfer_id == sent["source_transfer_id"]
        assert (row.source, row.uploader) == ("peer-a", "peer-a")
        assert row.store_path == sent["destination_location"]
        assert row.transfer_checksum == sent["upload_checksum"]
        assert row.transfer_size == sent["upload_size"]
        directory = Path(row.staging_path or "")
        assert directory.parent == Path(store.staging_path)
        assert is_empty_directory(directory)
        assert item["staging_name"] == directory.name
        assert item["staging_location"] == str(directory / sent["upload_name"])
    assert rows[0].staging_path == rows[1].staging_path  # one directory per request


async def test_upload_names_that_would_collide_get_directories_of_their_own(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    body = batch(
        upload("obs/1.uvh5", source_id=1, upload_name="night/a.uvh5"),
        upload("obs/2.uvh5", source_id=2, upload_name="night"),  # a file where a parent is
        upload("obs/3.uvh5", source_id=3, upload_name="x.uvh5"),
        upload("obs/4.uvh5", source_id=4, upload_name="x.uvh5"),  # the same name again
        upload("obs/5.uvh5", source_id=5, upload_name="day/b.uvh5"),
    )
    response = await stage(client, body)
    assert response.status_code == 201, response.json()
    directory = {row.source_transfer_id: row.staging_path for row in await incoming_rows(app)}
    assert directory[1] == directory[3] == directory[5]
    assert directory[2] != directory[1] and directory[4] != directory[3]
    locations = [item["staging_location"] for item in response.json()["uploads"]]
    assert len(set(locations)) == 5


async def test_ending_one_transfer_keeps_the_files_of_the_others_in_its_directory(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    body = batch(upload("obs/a.uvh5", source_id=1), upload("obs/b.uvh5", source_id=2))
    uploads = (await stage(client, body)).json()["uploads"]
    failed, kept = (Path(item["staging_location"]) for item in uploads)
    failed.write_bytes(b"data")
    kept.write_bytes(b"data")
    ended = [uploads[0]["destination_transfer_id"]]
    failing = int(S.FAILED)
    body = {"destination_transfer_ids": ended, "source_transfer_ids": [], "new_status": failing}
    response = await post(client, "checkin/update", body, "peer-a")
    assert response.json()["modified_destination_transfer_ids"] == ended
    assert not failed.exists()
    assert kept.read_bytes() == b"data"


async def test_nested_upload_names_get_their_parent_directories(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    response = await stage(client, batch(upload("obs/a.uvh5", upload_name="night/a.uvh5")))
    assert response.status_code == 201
    location = Path(response.json()["uploads"][0]["staging_location"])
    assert location.name == "a.uvh5" and location.parent.is_dir()


@pytest.mark.parametrize(
    ("accepts", "expected"),
    [
        (None, ["local", "rsync"]),
        (["http", "local", "rsync"], ["http", "local", "rsync"]),
        (["rsync", "http"], ["rsync", "http"]),
        (["local"], ["local"]),
        ([], []),
    ],
)
async def test_advertised_methods(
    client: httpx.AsyncClient, store: Store, accepts: list[str] | None, expected: list[str]
) -> None:
    extra = {} if accepts is None else {"accepts_providers": accepts}
    response = await stage(client, batch(upload("obs/a.uvh5"), **extra))
    assert response.status_code == 201
    providers = response.json()["async_transfer_providers"]
    assert list(providers) == expected
    if "rsync" in providers:
        assert providers["rsync"] == {"hostname": "receiver.example"}


# --- 400 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (batch(upload("a"), total_size=-1), "total_size: -1 is negative"),
        (batch(upload("a", upload_size=-5)), "uploads.0.upload_size: -5 is negative"),
        (batch(upload("../escape")), "has a '..' component"),
        (batch(upload("obs/../../escape")), "has a '..' component"),
        (batch(upload("/etc/passwd")), "is absolute"),
        (batch(upload("obs/a", upload_name="../../a")), "upload_name"),
        (batch(upload("obs//a")), "empty or '.' component"),
        (batch(), "the batch is empty"),
        (batch(upload("a", source_id=1), upload("a", source_id=2)), "repeated"),
        (batch(upload("a", upload_checksum="sha999:::00")), "upload_checksum"),
    ],
)
async def test_malformed_requests_are_400_and_create_nothing(
    client: httpx.AsyncClient, app: Context, store: Store, body: dict[str, Any], reason: str
) -> None:
    response = await stage(client, body)
    assert response.status_code == 400, response.json()
    assert set(response.json()) == REFUSAL_KEYS
    assert reason in response.json()["reason"]
    assert await incoming_rows(app) == []
    assert staging_entries(store) == []


# --- 413 --------------------------------------------------------------------------------


async def test_no_store_with_room_is_413(
    client: httpx.AsyncClient, app: Context, store: Store, disk: Disk
) -> None:
    disk.free = 100 * 4096
    response = await stage(client, batch(upload("obs/a.uvh5", b"x" * 10), total_size=500_000))
    assert response.status_code == 413
    assert set(response.json()) == REFUSAL_KEYS
    assert response.json()["source_transfer_ids"] == [1]
    assert await incoming_rows(app) == []
    assert staging_entries(store) == []


async def test_bytes_promised_to_live_transfers_count(
    client: httpx.AsyncClient, app: Context, store: Store, disk: Disk
) -> None:
    disk.free = 1000 * 4096
    promised = await add_incoming(app, store, name="other", content=b"p" * 800 * 4096)
    response = await stage(client, batch(upload("obs/a.uvh5"), total_size=300 * 4096))
    assert response.status_code == 413, response.json()
    async with app.sessions.begin() as session:
        row = await session.get_one(IncomingTransfer, promised.id)
        row.status = S.FAILED
    response = await stage(client, batch(upload("obs/a.uvh5"), total_size=300 * 4096))
    assert response.status_code == 201, response.json()
    assert response.json()["available_bytes_on_store"] == 1000 * 4096


async def test_the_sum_of_sizes_counts_when_total_size_understates_it(
    client: httpx.AsyncClient, store: Store, disk: Disk
) -> None:
    disk.free = 10 * 4096
    response = await stage(client, batch(upload("a", b"x" * 20 * 4096), total_size=1))
    assert response.status_code == 413


async def test_disabled_unavailable_and_non_ingestable_stores_are_skipped(
    client: httpx.AsyncClient, app: Context, tmp_path: Path
) -> None:
    await add_store(app, tmp_path / "s", "disabled", enabled=False)
    await add_store(app, tmp_path / "s", "frozen", ingestable=False)
    gone = await add_store(app, tmp_path / "s", "gone")
    remove_directory(gone.staging_path)
    assert (await stage(client, batch(upload("a")))).status_code == 413
    await add_store(app, tmp_path / "s", "good")
    response = await stage(client, batch(upload("a")))
    assert response.status_code == 201
    assert response.json()["store_name"] == "good"


# --- 409 / 425 / 406 and their priority ------------------------------------------------------


async def test_an_existing_file_is_409(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    await add_file(app, "obs/a.uvh5")
    body = batch(upload("obs/a.uvh5", source_id=7), upload("obs/new.uvh5", source_id=8))
    response = await stage(client, body)
    assert response.status_code == 409
    assert response.json()["source_transfer_ids"] == [7]
    assert response.json()["destination_transfer_ids"] == []
    assert "obs/a.uvh5" in response.json()["reason"]
    assert await incoming_rows(app) == []
    assert staging_entries(store) == []


async def test_an_ongoing_transfer_of_the_same_file_is_425(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    ongoing = await add_incoming(app, store, name="obs/a.uvh5", status=S.ONGOING)
    response = await stage(client, batch(upload("obs/a.uvh5", source_id=3)))
    assert response.status_code == 425
    assert set(response.json()) == REFUSAL_KEYS
    assert response.json()["source_transfer_ids"] == [3]
    assert response.json()["destination_transfer_ids"] == [ongoing.id]
    assert await status_of(app, IncomingTransfer, ongoing.id) == S.ONGOING
    assert len(await incoming_rows(app)) == 1


async def test_a_different_checksum_is_not_the_same_file(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    await add_incoming(app, store, name="obs/a.uvh5", content=b"old", status=S.ONGOING)
    response = await stage(client, batch(upload("obs/a.uvh5", b"new")))
    assert response.status_code == 201


@pytest.mark.parametrize("older", [S.INITIATED, S.STAGED])
async def test_an_unfinished_older_transfer_is_406_and_is_failed_and_unstaged(
    client: httpx.AsyncClient, app: Context, store: Store, older: TransferStatus
) -> None:
    directory = Path(store.staging_path) / "older"
    directory.mkdir()
    (directory / "a.uvh5").write_bytes(b"data")  # at its upload name
    stale = await add_incoming(app, store, name="obs/a.uvh5", status=older, staging=directory)
    response = await stage(client, batch(upload("obs/a.uvh5", source_id=4)))
    assert response.status_code == 406
    assert response.json()["source_transfer_ids"] == [4]
    assert response.json()["destination_transfer_ids"] == [stale.id]
    assert await status_of(app, IncomingTransfer, stale.id) == S.FAILED
    assert not directory.exists()
    assert staging_entries(store) == []
    assert len(await incoming_rows(app)) == 1
    again = await stage(client, batch(upload("obs/a.uvh5", source_id=4)))
    assert again.status_code == 201


async def test_priority_425_over_409_over_406(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    await add_file(app, "exists")
    ongoing = await add_incoming(app, store, name="ongoing", status=S.ONGOING)
    stale = await add_incoming(app, store, name="stale", status=S.INITIATED)
    uploads = [upload("stale", source_id=1), upload("exists", source_id=2)]
    all_three = await stage(client, batch(*uploads, upload("ongoing", source_id=3)))
    assert all_three.status_code == 425
    assert all_three.json()["source_transfer_ids"] == [3]
    assert all_three.json()["destination_transfer_ids"] == [ongoing.id]
    # The stale transfer is failed whatever status the batch got.
    assert await status_of(app, IncomingTransfer, stale.id) == S.FAILED
    stale = await add_incoming(app, store, name="stale", status=S.INITIATED)
    two = await stage(client, batch(*uploads))
    assert two.status_code == 409
    assert two.json()["source_transfer_ids"] == [2]
    assert two.json()["destination_transfer_ids"] == []
    assert {row.status for row in await incoming_rows(app)} == {S.ONGOING, S.FAILED}


async def test_uploader_is_the_authenticated_user(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    response = await post(client, "clone/batch_stage", batch(upload("a")), "peer-b")
    assert response.status_code == 201
    [row] = await incoming_rows(app)
    assert (row.source, row.uploader) == ("peer-a", "peer-b")


async def test_concurrent_batches_cannot_both_take_the_same_space(
    client: httpx.AsyncClient, app: Context, store: Store, disk: Disk
) -> None:
    disk.free = 1000 * 4096
    first, second = (
        batch(upload(name, b"x" * 600 * 4096, source_id=n)) for n, name in enumerate("ab")
    )
    replies = await asyncio.gather(stage(client, first), stage(client, second))
    assert sorted(reply.status_code for reply in replies) == [201, 413]
    assert len(await incoming_rows(app)) == 1
