"""The ``http`` method against our real receiver app, served by uvicorn over real HTTP.

Transfers are staged through the receiver's real ``clone/batch_stage`` (so the advertised
``http`` method and its URL are the receiver's own), then sent with the method.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api.helpers import add_store, add_users, incoming_rows, password_of
from remote.serving import closed_port, served

from librarian_async.api import create_app
from librarian_async.context import Context
from librarian_async.db.models import Store
from librarian_async.enums import TransferStatus
from librarian_async.errors import TransferError
from librarian_async.remote import schemas as wire
from librarian_async.remote.client import PeerClient
from librarian_async.transfer import ACCEPTED_PROVIDERS, choose_method, http
from librarian_async.transfer.base import FileMove, group_moves
from librarian_async.transfer.http import REQUEST_BYTES, REQUEST_FILES, HttpMethod

from . import checksum_of, exists, files_under

MiB = 1024 * 1024


@pytest.fixture
async def receiver(app: Context, tmp_path: Path) -> Store:
    """A store that offers ``http`` without a URL: the receiver fills in its own."""
    await add_users(app)
    methods = {"http": {}, "rsync": {"hostname": "receiver.example"}}
    return await add_store(app, tmp_path / "stores", methods=methods)


@pytest.fixture
async def port(app: Context, receiver: Store) -> AsyncIterator[int]:
    async with served(create_app(app)) as port:
        yield port


def peer_client(port: int, user: str = "peer-a") -> PeerClient:
    return PeerClient(
        "http://127.0.0.1", port, user, password_of(user), connect_timeout=2, read_timeout=30
    )


async def stage(
    peer: PeerClient, root: Path, contents: dict[str, bytes]
) -> tuple[list[FileMove], wire.Providers]:
    """Our copies under ``root/source``, staged at the receiver; the moves and its methods."""
    items = []
    for number, (name, content) in enumerate(contents.items(), start=1):
        (root / "source" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "source" / name).write_bytes(content)
        items.append(
            wire.UploadItem(
                upload_size=len(content),
                upload_checksum=checksum_of(content),
                upload_name=name,
                destination_location=f"obs/{name}",
                uploader="someone",
                source_transfer_id=number,
            )
        )
    request = wire.BatchStageRequest(
        uploads=items,
        source="peer-a",
        total_size=sum(map(len, contents.values())),
        accepts_providers=list(ACCEPTED_PROVIDERS),
    )
    staged = await peer.batch_stage(request)
    moves = [
        FileMove(
            source=root / "source" / upload.upload_name,
            staging_location=upload.staging_location,
            size=item.upload_size,
            checksum=item.upload_checksum,
            source_transfer_id=upload.source_transfer_id,
            destination_transfer_id=upload.destination_transfer_id,
        )
        for upload, item in zip(staged.uploads, items, strict=True)
    ]
    return moves, staged.async_transfer_providers


def http_fields(providers: wire.Providers) -> dict[str, Any]:
    return providers["http"]


def staged_bytes(moves: list[FileMove]) -> list[bytes]:
    return [Path(move.staging_location).read_bytes() for move in moves]


def staged_files(receiver: Store) -> list[str]:
    return files_under(Path(receiver.staging_path))


def expected_files(receiver: Store, moves: list[FileMove]) -> list[str]:
    root = Path(receiver.staging_path)
    return sorted(Path(move.staging_location).relative_to(root).as_posix() for move in moves)


async def test_the_receiver_advertises_http_at_its_own_address(port: int, tmp_path: Path) -> None:
    async with peer_client(port) as peer:
        _, providers = await stage(peer, tmp_path, {"a.uvh5": b"alpha"})
    assert list(providers) == ["http", "rsync"]
    assert providers["http"] == {"url": f"http://127.0.0.1:{port}/api/v2/upload"}
    choice = choose_method(providers)
    assert choice is not None and choice[0].name == "http"


async def test_a_batch_of_mixed_sizes_lands_byte_identical(
    port: int, app: Context, receiver: Store, tmp_path: Path
) -> None:
    contents = {
        "empty.uvh5": b"",
        "one.uvh5": b"1",
        "night/big.uvh5": os.urandom(5 * MiB + 17),
        **{f"night/many/{n:03d}.uvh5": os.urandom(n * 13) for n in range(300)},
    }
    async with peer_client(port) as peer:
        moves, providers = await stage(peer, tmp_path, contents)
        before = peer.calls
        await HttpMethod().send(http_fields(providers), moves, peer)
        requests = peer.calls - before
    assert staged_bytes(moves) == [move.source.read_bytes() for move in moves]
    assert staged_files(receiver) == expected_files(receiver, moves)  # no temporaries
    assert requests == len(group_moves(moves, REQUEST_FILES, REQUEST_BYTES)) == 2
    assert {row.status for row in await incoming_rows(app)} == {TransferStatus.INITIATED}


async def test_a_corrupt_source_is_refused_by_the_receiver(
    port: int, receiver: Store, tmp_path: Path
) -> None:
    async with peer_client(port) as peer:
        moves, providers = await stage(
            peer, tmp_path, {"a.uvh5": b"alpha", "b.uvh5": b"beta", "c.uvh5": b"gamma"}
        )
        moves[1].source.write_bytes(b"BETA")  # same size, different bytes
        with pytest.raises(TransferError) as raised:
            await HttpMethod().send(http_fields(providers), moves, peer)
    message = str(raised.value)
    assert "HTTP 422" in message and "checksum mismatch" in message
    assert f"refused transfers: {moves[1].destination_transfer_id}" in message
    assert not exists(moves[1].staging_location)
    assert staged_files(receiver) == expected_files(receiver, [moves[0], moves[2]])


async def test_a_source_shorter_than_its_size_fails_and_stages_nothing_for_it(
    port: int, tmp_path: Path
) -> None:
    async with peer_client(port) as peer:
        moves, providers = await stage(peer, tmp_path, {"a.uvh5": b"alpha" * 1000})
        moves[0].source.write_bytes(b"alpha")
        with pytest.raises(TransferError, match=r"a\.uvh5 has 5 bytes, expected 5000"):
            await HttpMethod().send(http_fields(providers), moves, peer)
    assert not exists(moves[0].staging_location)


async def test_another_peers_transfers_are_refused(port: int, tmp_path: Path) -> None:
    async with peer_client(port) as peer:
        moves, providers = await stage(peer, tmp_path, {"a.uvh5": b"alpha"})
    async with peer_client(port, "peer-b") as other:
        with pytest.raises(TransferError, match="HTTP 404"):
            await HttpMethod().send(http_fields(providers), moves, other)
    assert not exists(moves[0].staging_location)


async def test_an_unreachable_receiver_is_a_transfer_error(port: int, tmp_path: Path) -> None:
    async with peer_client(port) as peer:
        moves, _ = await stage(peer, tmp_path, {"a.uvh5": b"alpha"})
        fields = {"url": f"http://127.0.0.1:{closed_port()}/api/v2/upload"}
        peer.retry = dataclasses.replace(peer.retry, attempts=1)
        with pytest.raises(TransferError, match="unreachable"):
            await HttpMethod().send(fields, moves, peer)


async def test_a_directory_cannot_be_sent(port: int, tmp_path: Path) -> None:
    async with peer_client(port) as peer:
        moves, providers = await stage(peer, tmp_path, {"d.tar": b""})
        moves[0].source.unlink()
        moves[0].source.mkdir()
        with pytest.raises(TransferError, match="directory"):
            await HttpMethod().send(http_fields(providers), moves, peer)


def piece_moves(tmp_path: Path, count: int) -> tuple[list[FileMove], bytes]:
    contents = [os.urandom(http.PIECE_SIZE // 2 + n) for n in range(count)]
    moves = []
    for n, content in enumerate(contents):
        (tmp_path / f"{n}.bin").write_bytes(content)
        moves.append(FileMove(tmp_path / f"{n}.bin", f"s/{n}", len(content), "", n, n))
    return moves, b"".join(contents)


async def test_pieces_read_ahead_carry_the_files_in_order(tmp_path: Path) -> None:
    moves, expected = piece_moves(tmp_path, 5)
    received = [part async for part in http.read_pieces(moves)]
    assert b"".join(received) == expected


async def test_closing_the_stream_early_waits_for_the_piece_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next piece is read while one is sent; files are closed only after that read."""
    moves, _ = piece_moves(tmp_path, 6)
    reading = threading.Event()
    read_during_close: list[bool] = []
    real_read, real_close = http.ConcatenatedReader.read_piece, http.ConcatenatedReader.close

    def slow_read(self: http.ConcatenatedReader, size: int, **kwargs: Any) -> list[bytes]:
        reading.set()
        try:
            time.sleep(0.05)
            return real_read(self, size, **kwargs)
        finally:
            reading.clear()

    def watched_close(self: http.ConcatenatedReader) -> None:
        if threading.current_thread() is threading.main_thread():  # not _next's, inside a read
            read_during_close.append(reading.is_set())
        real_close(self)

    monkeypatch.setattr(http.ConcatenatedReader, "read_piece", slow_read)
    monkeypatch.setattr(http.ConcatenatedReader, "close", watched_close)
    pieces = http.read_pieces(moves)
    await anext(pieces)
    assert await asyncio.to_thread(reading.wait, 10)  # the second piece is being read
    await pieces.aclose()
    assert read_during_close == [False]
