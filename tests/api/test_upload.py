"""``POST /api/v2/upload``: the receiver's side of the ``http`` transfer method.

Transfers are staged through the real ``clone/batch_stage``; the bytes then arrive as the
concatenation of the files, in the order of ``ids``. Checksums come from hashlib and xxhash.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import xxhash
from direct_io import record_opens

from librarian_async.api import upload as upload_module
from librarian_async.context import Context
from librarian_async.db.models import IncomingTransfer, Store
from librarian_async.enums import TransferStatus
from librarian_async.storage.checksum import stat_fingerprint
from librarian_async.storage.direct import DIRECT_CHUNK, DIRECT_MIN_BYTES

from .helpers import add_incoming, add_store, auth, incoming_rows, post, status_of

S = TransferStatus
MiB = 1024 * 1024
REFUSAL_KEYS = {"reason", "suggested_remedy", "destination_transfer_ids"}


def checksum_of(content: bytes, algorithm: str = "md5") -> str:
    if algorithm == "xxh3":
        return f"xxh3:::{xxhash.xxh3_128(content).hexdigest()}"
    return f"{algorithm}:::{hashlib.new(algorithm, content).hexdigest()}"


@dataclass(frozen=True)
class Staged:
    transfer_id: int
    location: Path
    content: bytes


async def stage(
    client: httpx.AsyncClient,
    contents: dict[str, bytes],
    *,
    algorithm: str = "md5",
    user: str = "peer-a",
) -> list[Staged]:
    uploads = [
        {
            "upload_size": len(content),
            "upload_checksum": checksum_of(content, algorithm),
            "upload_name": name,
            "destination_location": f"obs/{name}",
            "uploader": "someone",
            "source_transfer_id": number,
        }
        for number, (name, content) in enumerate(contents.items(), start=1)
    ]
    body = {"uploads": uploads, "source": user, "total_size": sum(map(len, contents.values()))}
    response = await post(client, "clone/batch_stage", body | {"accepts_providers": ["http"]}, user)
    assert response.status_code == 201, response.json()
    return [
        Staged(item["destination_transfer_id"], Path(item["staging_location"]), content)
        for item, content in zip(response.json()["uploads"], contents.values(), strict=True)
    ]


async def chunked(data: bytes, size: int = 7919) -> AsyncIterator[bytes]:
    """The body without a Content-Length (chunked), in odd-sized chunks."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def upload(
    client: httpx.AsyncClient,
    ids: list[int] | str,
    body: bytes | AsyncIterator[bytes],
    user: str | None = "peer-a",
) -> httpx.Response:
    query = ids if isinstance(ids, str) else ",".join(map(str, ids))
    return await client.post(
        "/api/v2/upload",
        params={"ids": query},
        content=body,
        auth=auth(user) if user else None,
    )


def ids_of(staged: list[Staged]) -> list[int]:
    return [item.transfer_id for item in staged]


def body_of(staged: list[Staged]) -> bytes:
    return b"".join(item.content for item in staged)


def staging_files(store: Store) -> list[str]:
    """Every file below the staging area, temporaries included."""
    root = Path(store.staging_path)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def expected_files(store: Store, staged: list[Staged]) -> list[str]:
    root = Path(store.staging_path)
    return sorted(item.location.relative_to(root).as_posix() for item in staged)


def refusal(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == REFUSAL_KEYS
    return body


# --- success ---------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_batch_of_mixed_sizes_is_staged_byte_identical(
    client: httpx.AsyncClient, app: Context, store: Store, streamed: bool
) -> None:
    contents = {
        "empty.uvh5": b"",
        "one.uvh5": b"1",
        "night/small.uvh5": os.urandom(3000),
        "night/deep/big.uvh5": os.urandom(5 * MiB + 3),
        **{f"many/{n:03d}.uvh5": os.urandom(n) for n in range(40)},
        "last-empty.uvh5": b"",
    }
    staged = await stage(client, contents)
    body = body_of(staged)
    response = await upload(client, ids_of(staged), chunked(body) if streamed else body)
    assert response.status_code == 200, response.json()
    assert response.json() == {"destination_transfer_ids": ids_of(staged), "bytes": len(body)}
    assert [item.location.read_bytes() for item in staged] == [item.content for item in staged]
    assert staging_files(store) == expected_files(store, staged)  # no temporaries
    assert {row.status for row in await incoming_rows(app)} == {S.INITIATED}


@pytest.mark.parametrize("algorithm", ["xxh3", "sha256"])
async def test_the_transfers_checksum_algorithm_is_used(
    client: httpx.AsyncClient, store: Store, algorithm: str
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta"}, algorithm=algorithm)
    response = await upload(client, ids_of(staged), body_of(staged))
    assert response.status_code == 200, response.json()
    assert [item.location.read_bytes() for item in staged] == [b"alpha", b"beta"]


async def test_the_order_of_ids_is_the_order_of_the_body(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"aaaa", "b.uvh5": b"bb"})
    reordered = staged[::-1]
    response = await upload(client, ids_of(reordered), body_of(reordered))
    assert response.json()["destination_transfer_ids"] == ids_of(reordered)
    assert [item.location.read_bytes() for item in staged] == [b"aaaa", b"bb"]


async def test_an_ongoing_transfer_takes_bytes_and_a_retry_overwrites(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    [item] = await stage(client, {"a.uvh5": b"alpha"})
    update = {"destination_transfer_ids": [item.transfer_id], "new_status": int(S.ONGOING)}
    assert (await post(client, "checkin/update", update, "peer-a")).status_code == 200
    item.location.write_bytes(b"junk left by an earlier attempt")
    response = await upload(client, [item.transfer_id], b"alpha")
    assert response.status_code == 200, response.json()
    assert item.location.read_bytes() == b"alpha"
    assert await status_of(app, IncomingTransfer, item.transfer_id) == S.ONGOING


async def test_an_admin_may_upload_for_anyone(client: httpx.AsyncClient, store: Store) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha"})
    response = await upload(client, ids_of(staged), b"alpha", user="admin")
    assert response.status_code == 200, response.json()


async def verified_stats(app: Context) -> dict[int, str | None]:
    return {row.id: row.verified_stat for row in await incoming_rows(app)}


async def test_the_stat_of_each_verified_file_is_recorded(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "sub/b.uvh5": b"beta", "c.uvh5": b""})
    response = await upload(client, ids_of(staged), body_of(staged))
    assert response.status_code == 200, response.json()
    assert await verified_stats(app) == {
        item.transfer_id: stat_fingerprint(item.location) for item in staged
    }


async def test_no_stat_is_recorded_for_a_mismatch_and_a_retry_records_the_new_file(
    client: httpx.AsyncClient, app: Context, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta"})
    refusal(await upload(client, ids_of(staged), b"alpha" + b"BETA"), 422)
    first = await verified_stats(app)
    assert first == {staged[0].transfer_id: stat_fingerprint(staged[0].location),
                     staged[1].transfer_id: None}  # fmt: skip

    response = await upload(client, ids_of(staged), body_of(staged))
    assert response.status_code == 200, response.json()
    second = await verified_stats(app)
    assert second == {item.transfer_id: stat_fingerprint(item.location) for item in staged}
    assert second[staged[0].transfer_id] != first[staged[0].transfer_id]  # a new file


# --- bodies that do not fit ------------------------------------------------------------------


async def test_a_declared_length_other_than_the_sizes_is_refused_before_writing(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta"})
    body = refusal(await upload(client, ids_of(staged), body_of(staged)[:-1]), 400)
    assert body["destination_transfer_ids"] == ids_of(staged)
    assert "8 bytes" in body["reason"] and "9" in body["reason"]
    assert staging_files(store) == []


async def test_a_short_body_stages_only_the_complete_files(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"a" * 100, "b.uvh5": b"b" * 100, "c.uvh5": b"c"})
    staged[2].location.write_bytes(b"c")  # left by an earlier attempt
    response = await upload(client, ids_of(staged), chunked(body_of(staged)[:150], 40))
    body = refusal(response, 400)
    assert body["destination_transfer_ids"] == ids_of(staged[1:])
    assert "150 of 201 bytes" in body["reason"]
    assert staging_files(store) == expected_files(store, staged[:1])
    assert staged[0].location.read_bytes() == b"a" * 100


async def test_a_longer_body_stages_nothing(client: httpx.AsyncClient, store: Store) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta"})
    response = await upload(client, ids_of(staged), chunked(body_of(staged) + b"more"))
    body = refusal(response, 400)
    assert body["destination_transfer_ids"] == ids_of(staged)
    assert "longer" in body["reason"]
    assert staging_files(store) == []


async def test_a_checksum_mismatch_leaves_no_file_for_that_transfer(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta", "c.uvh5": b"gamma"})
    staged[1].location.write_bytes(b"beta")  # a good copy from an earlier attempt
    response = await upload(client, ids_of(staged), b"alpha" + b"BETA" + b"gamma")
    body = refusal(response, 422)
    assert body["destination_transfer_ids"] == [staged[1].transfer_id]
    assert f"transfer {staged[1].transfer_id}" in body["reason"]
    assert checksum_of(b"BETA") in body["reason"]
    assert staging_files(store) == expected_files(store, [staged[0], staged[2]])
    assert [staged[0].location.read_bytes(), staged[2].location.read_bytes()] == [
        b"alpha",
        b"gamma",
    ]


async def test_a_write_error_is_500_and_names_the_transfer(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta", "c.uvh5": b"gamma"})
    staged[1].location.mkdir()  # a directory where the file must go: the rename fails
    body = refusal(await upload(client, ids_of(staged), body_of(staged)), 500)
    assert body["destination_transfer_ids"] == ids_of(staged[1:])
    assert f"transfer {staged[1].transfer_id}" in body["reason"]
    assert staging_files(store) == expected_files(store, staged[:1])
    assert not staged[1].location.exists()


# --- big files, written around the page cache -------------------------------------------------


def big_contents() -> dict[str, bytes]:
    return {
        "a.uvh5": os.urandom(DIRECT_MIN_BYTES + 1),
        "b.uvh5": os.urandom(2 * DIRECT_CHUNK),
        "c.uvh5": os.urandom(DIRECT_CHUNK + 3),
    }


async def test_big_files_are_written_directly_and_a_bad_one_is_dropped(
    client: httpx.AsyncClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = await stage(client, big_contents())
    flags_seen = record_opens(monkeypatch)
    body = bytearray(body_of(staged))
    body[len(staged[0].content) + DIRECT_CHUNK + 5] ^= 1  # one bit of b
    response = await upload(client, ids_of(staged), chunked(bytes(body), 65_521))
    assert refusal(response, 422)["destination_transfer_ids"] == [staged[1].transfer_id]
    assert any(flags & os.O_DIRECT for flags in flags_seen)
    assert staging_files(store) == expected_files(store, [staged[0], staged[2]])
    assert staged[0].location.read_bytes() == staged[0].content
    assert staged[2].location.read_bytes() == staged[2].content


async def test_a_body_ending_inside_a_big_file_stages_the_files_before_it(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, big_contents())
    cut = len(staged[0].content) + DIRECT_CHUNK + 100
    response = await upload(client, ids_of(staged), chunked(body_of(staged)[:cut], 65_521))
    assert refusal(response, 400)["destination_transfer_ids"] == ids_of(staged[1:])
    assert staging_files(store) == expected_files(store, staged[:1])
    assert staged[0].location.read_bytes() == staged[0].content


async def test_big_files_are_staged_where_the_filesystem_refuses_direct_writes(
    client: httpx.AsyncClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = await stage(client, big_contents())
    flags_seen = record_opens(monkeypatch, refuse_direct=True)
    response = await upload(client, ids_of(staged), body_of(staged))
    assert response.status_code == 200, response.json()
    assert any(flags & os.O_DIRECT for flags in flags_seen)
    assert [item.location.read_bytes() for item in staged] == [item.content for item in staged]
    assert staging_files(store) == expected_files(store, staged)


# --- who and which transfers -----------------------------------------------------------------


async def test_another_peers_transfers_do_not_exist_for_it(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha"})
    body = refusal(await upload(client, ids_of(staged), b"alpha", user="peer-b"), 404)
    assert body["destination_transfer_ids"] == ids_of(staged)
    assert staging_files(store) == []


@pytest.mark.parametrize("user", ["reader", "callback", None])
async def test_uploading_needs_readappend(
    client: httpx.AsyncClient, store: Store, user: str | None
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha"})
    response = await upload(client, ids_of(staged), b"alpha", user=user)
    assert response.status_code == 401
    assert staging_files(store) == []


async def test_unknown_ids_are_404_and_nothing_is_written(
    client: httpx.AsyncClient, store: Store
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha"})
    body = refusal(await upload(client, [*ids_of(staged), 999_999], b"alpha"), 404)
    assert body["destination_transfer_ids"] == [999_999]
    assert staging_files(store) == []


@pytest.mark.parametrize("status", [S.STAGED, S.FAILED])
async def test_only_initiated_or_ongoing_transfers_take_bytes(
    client: httpx.AsyncClient, store: Store, status: TransferStatus
) -> None:
    staged = await stage(client, {"a.uvh5": b"alpha", "b.uvh5": b"beta"})
    update = {"destination_transfer_ids": [staged[1].transfer_id], "new_status": int(status)}
    assert (await post(client, "checkin/update", update, "peer-a")).status_code == 200
    body = refusal(await upload(client, ids_of(staged), body_of(staged)), 406)
    assert body["destination_transfer_ids"] == [staged[1].transfer_id]
    assert status.name in body["reason"]
    assert not staged[0].location.exists()


@pytest.mark.parametrize("ids", ["", "1,,2", "a", "1,1", "-1", "1;2", "\N{FULLWIDTH DIGIT ONE}"])
async def test_malformed_ids_are_400(client: httpx.AsyncClient, store: Store, ids: str) -> None:
    refusal(await upload(client, ids, b""), 400)


async def test_missing_ids_are_400(client: httpx.AsyncClient, store: Store) -> None:
    response = await client.post("/api/v2/upload", content=b"", auth=auth("peer-a"))
    assert response.status_code == 400
    assert "ids" in response.json()["reason"]


# --- staging paths stay in the staging area --------------------------------------------------


async def test_a_staging_directory_outside_the_staging_area_is_refused(
    client: httpx.AsyncClient, app: Context, store: Store, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    row = await add_incoming(app, store, content=b"alpha", staging=elsewhere)
    body = refusal(await upload(client, [row.id], b"alpha"), 406)
    assert body["destination_transfer_ids"] == [row.id]
    assert list(elsewhere.iterdir()) == []


async def test_a_symlink_at_the_staging_name_is_not_followed(
    client: httpx.AsyncClient, store: Store, tmp_path: Path
) -> None:
    [item] = await stage(client, {"a.uvh5": b"alpha"})
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    item.location.symlink_to(outside)
    refusal(await upload(client, [item.transfer_id], b"alpha"), 406)
    assert outside.read_bytes() == b"precious"


async def test_a_transfer_whose_staging_directory_is_gone_is_refused(
    client: httpx.AsyncClient, store: Store
) -> None:
    [item] = await stage(client, {"a.uvh5": b"alpha"})
    item.location.parent.rmdir()
    body = refusal(await upload(client, [item.transfer_id], b"alpha"), 406)
    assert "gone" in body["reason"]
    assert not item.location.parent.exists()


# --- the advertised http method --------------------------------------------------------------


def single(name: str = "a.uvh5", content: bytes = b"data") -> dict[str, Any]:
    return {
        "upload_size": len(content),
        "upload_checksum": checksum_of(content),
        "upload_name": name,
        "destination_location": f"obs/{name}",
        "uploader": "someone",
        "source_transfer_id": 7,
        "source": "site-a",
    }


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ({}, "http://receiver/api/v2/upload"),
        ({"url": ""}, "http://receiver/api/v2/upload"),
        ({"url": "https://uploads.example/api/v2/upload"}, "https://uploads.example/api/v2/upload"),
    ],
)
async def test_http_without_a_url_advertises_our_upload_endpoint(
    client: httpx.AsyncClient, app: Context, tmp_path: Path, offered: dict[str, str], expected: str
) -> None:
    await add_store(app, tmp_path / "stores", methods={"http": offered, "rsync": {"hostname": "r"}})
    item = single()
    batch = {"uploads": [item], "source": "site-a", "total_size": 4}
    accepting = {"accepts_providers": ["http", "rsync"]}
    response = await post(client, "clone/batch_stage", batch | accepting, "peer-a")
    assert response.json()["async_transfer_providers"]["http"] == {"url": expected}
    response = await post(client, "clone/stage", single("b.uvh5") | accepting, "peer-a")
    assert response.json()["transfer_providers"]["http"] == {"url": expected}
    response = await post(client, "clone/batch_stage", batch | {"uploads": [single("c")]}, "peer-a")
    assert list(response.json()["async_transfer_providers"]) == ["rsync"]


async def test_a_cancelled_upload_stops_its_writer_before_the_cleanup(tmp_path: Path) -> None:
    """Cancelled while a piece is in a worker thread and the next is being gathered: the
    cancellation returns only once the thread is done, so the cleanup that follows
    (``fail_rest``, as ``receive`` does) leaves nothing in staging."""
    path = tmp_path / "staging" / "a.uvh5"
    path.parent.mkdir()
    size = 3 * upload_module.PIECE_SIZE
    target = upload_module.Target(1, path, size, checksum_of(b"x" * size), "md5")
    gathering = asyncio.Event()

    class StalledBody:
        async def stream(self) -> AsyncIterator[bytes]:
            yield b"x" * upload_module.PIECE_SIZE  # handed to a worker thread at once
            gathering.set()
            yield b"x" * 1000
            await asyncio.Event().wait()  # the sender stalls: the loop is cancelled here

    writer = upload_module.StagingWriter([target])
    body = upload_module.write_body(StalledBody(), writer)  # type: ignore[arg-type]
    writing = asyncio.create_task(body)
    await gathering.wait()
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    await asyncio.to_thread(writer.fail_rest)
    assert os.listdir(path.parent) == []
    assert writer.failed_ids() == [1]
