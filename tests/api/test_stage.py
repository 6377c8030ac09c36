"""``clone/stage``: the single-file variant, with single-item bodies (PROTOCOL §2.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from librarian_async.context import Context
from librarian_async.db.models import Store
from librarian_async.enums import TransferStatus

from .helpers import Disk, add_file, add_incoming, incoming_rows, md5, post, staging_entries

S = TransferStatus
REFUSAL_KEYS = {"reason", "suggested_remedy", "source_transfer_id", "destination_transfer_id"}


def single(name: str = "obs/a.uvh5", content: bytes = b"data", **extra: Any) -> dict[str, Any]:
    return {
        "upload_size": len(content),
        "upload_checksum": md5(content),
        "upload_name": name.rsplit("/", 1)[-1],
        "destination_location": name,
        "uploader": "someone",
        "source": "site-a",
        "source_transfer_id": 41,
    } | extra


async def test_stages_one_file(client: httpx.AsyncClient, app: Context, store: Store) -> None:
    response = await post(client, "clone/stage", single(), "peer-a")
    assert response.status_code == 201, response.json()
    reply = response.json()
    assert set(reply) == {
        "available_bytes_on_store",
        "store_name",
        "staging_name",
        "staging_location",
        "upload_name",
        "destination_location",
        "transfer_providers",
        "source_transfer_id",
        "destination_transfer_id",
    }
    [row] = await incoming_rows(app)
    assert reply["destination_transfer_id"] == row.id
    assert reply["source_transfer_id"] == 41
    assert (row.source, row.uploader, row.status) == ("site-a", "peer-a", S.INITIATED)
    assert Path(reply["staging_location"]) == Path(row.staging_path or "") / "a.uvh5"
    assert list(reply["transfer_providers"]) == ["local", "rsync"]


async def test_409_names_no_transfer(client: httpx.AsyncClient, app: Context, store: Store) -> None:
    await add_file(app, "obs/a.uvh5")
    response = await post(client, "clone/stage", single(), "peer-a")
    assert response.status_code == 409
    assert set(response.json()) == REFUSAL_KEYS
    assert response.json()["source_transfer_id"] == 41
    assert response.json()["destination_transfer_id"] == -1


async def test_425_names_the_ongoing_transfer(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    ongoing = await add_incoming(app, store, name="obs/a.uvh5", status=S.ONGOING)
    response = await post(client, "clone/stage", single(), "peer-a")
    assert response.status_code == 425
    assert response.json()["destination_transfer_id"] == ongoing.id


async def test_406_then_a_fresh_stage_succeeds(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    await add_incoming(app, store, name="obs/a.uvh5", status=S.STAGED)
    assert (await post(client, "clone/stage", single(), "peer-a")).status_code == 406
    assert (await post(client, "clone/stage", single(), "peer-a")).status_code == 201


async def test_escaping_names_are_400(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    body = single("../../etc/cron.d/evil")
    response = await post(client, "clone/stage", body, "peer-a")
    assert response.status_code == 400
    assert set(response.json()) == REFUSAL_KEYS
    assert "'..'" in response.json()["reason"]
    assert await incoming_rows(app) == []
    assert staging_entries(store) == []


async def test_413_when_full(
    client: httpx.AsyncClient, app: Context, store: Store, disk: Disk
) -> None:
    disk.free = 0
    response = await post(client, "clone/stage", single(), "peer-a")
    assert response.status_code == 413
    assert set(response.json()) == REFUSAL_KEYS
