"""PeerClient against our real app served by uvicorn over real HTTP (and in process)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from librarian_async.api import create_app
from librarian_async.context import Context
from librarian_async.db.models import File, Librarian
from librarian_async.enums import TransferStatus
from librarian_async.errors import ConfigError, PeerRefusedError, PeerUnreachableError
from librarian_async.remote import client as client_module
from librarian_async.remote import schemas as wire
from librarian_async.remote.client import PeerClient
from librarian_async.remote.ping import check_peer
from librarian_async.security import encrypt_secret

from .conftest import password_of
from .serving import closed_port

S = TransferStatus
KEY = b"a test passphrase for peer credentials"


def peer_client(port: int, user: str = "peer-a", password: str | None = None) -> PeerClient:
    password = password_of(user) if password is None else password
    return PeerClient("http://127.0.0.1", port, user, password, connect_timeout=2, read_timeout=10)


def upload(name: str, source_id: int) -> wire.UploadItem:
    content = name.encode()
    return wire.UploadItem(
        upload_size=len(content),
        upload_checksum="md5:::" + hashlib.md5(content).hexdigest(),
        upload_name=name,
        destination_location=f"obs/{name}",
        uploader="someone",
        source_transfer_id=source_id,
    )


async def test_ping_logged(port: int, app: Context) -> None:
    async with peer_client(port) as peer:
        reply = await peer.ping_logged()
    assert reply == wire.PingResponse(name="test-librarian", description=reply.description)


async def test_batch_stage_then_checkin_update_and_status(port: int) -> None:
    request = wire.BatchStageRequest(
        uploads=[upload("a.uvh5", 1), upload("b.uvh5", 2)],
        source="peer-a",
        total_size=12,
        accepts_providers=["http", "rsync"],
    )
    async with peer_client(port) as peer:
        staged = await peer.batch_stage(request)
        assert staged.store_name == "main"
        assert list(staged.async_transfer_providers) == ["http", "rsync"]
        ids = [item.destination_transfer_id for item in staged.uploads]
        assert [item.source_transfer_id for item in staged.uploads] == [1, 2]
        updated = await peer.checkin_update(
            wire.CheckinUpdateRequest(destination_transfer_ids=[*ids, 999], new_status=S.ONGOING)
        )
        assert updated.modified_destination_transfer_ids == ids
        assert updated.unmodified_destination_transfer_ids == [999]
        status = await peer.checkin_status(wire.CheckinStatusRequest(destination_transfer_ids=ids))
        assert status.destination_transfer_status == dict.fromkeys(ids, S.ONGOING)


async def test_a_refused_batch_carries_its_body(port: int) -> None:
    request = wire.BatchStageRequest(uploads=[upload("a.uvh5", 5)], source="peer-a", total_size=7)
    async with peer_client(port) as peer:
        first = await peer.batch_stage(request)
        await peer.clone_ongoing(
            wire.OngoingRequest(
                source_transfer_id=5,
                destination_transfer_id=first.uploads[0].destination_transfer_id,
            )
        )
        with pytest.raises(PeerRefusedError) as refused:
            await peer.batch_stage(request)
    assert refused.value.status == 425
    assert refused.value.body is not None
    assert refused.value.body["source_transfer_ids"] == [5]
    assert peer.calls == 3


async def test_wrong_password_is_a_refusal_not_retried(port: int) -> None:
    async with peer_client(port, password="wrong") as peer:
        with pytest.raises(PeerRefusedError) as refused:
            await peer.ping_logged()
    assert refused.value.status == 401
    assert "wrong password" in refused.value.reason
    assert peer.calls == 1


async def test_search_with_no_match_is_an_empty_list(port: int, app: Context) -> None:
    async with peer_client(port, "reader") as peer:
        assert await peer.search_file(wire.SearchFileRequest(name="nothing")) == []
        async with app.sessions.begin() as session:
            session.add(
                File(
                    name="x", create_time=app.now(), size=1, checksum="c", uploader="u", source="s"
                )
            )
        [found] = await peer.search_file(wire.SearchFileRequest(name="x"))
    assert found.name == "x" and found.instances == []


async def test_from_a_librarian_row_with_encrypted_credentials(port: int, app: Context) -> None:
    row = Librarian(
        name="receiver",
        url="http://127.0.0.1/",
        port=port,
        authenticator=encrypt_secret(KEY, f"reader:{password_of('reader')}"),
    )
    async with PeerClient.from_librarian(row, KEY, app.settings) as peer:
        assert (await peer.ping_logged()).name == "test-librarian"
    with pytest.raises(ConfigError, match="cannot decrypt"):
        PeerClient.from_librarian(row, b"another key", app.settings)


async def test_in_process_through_an_asgi_transport(app: Context, receiver: object) -> None:
    transport = httpx.ASGITransport(app=create_app(app))
    peer = PeerClient("http://receiver", 80, "reader", password_of("reader"), transport=transport)
    async with peer:
        assert (await peer.ping_logged()).name == "test-librarian"


async def test_check_peer(port: int) -> None:
    credentials = f"reader:{password_of('reader')}"
    await check_peer("http://127.0.0.1", port, credentials, expected_name="test-librarian")
    with pytest.raises(PeerRefusedError, match="calls itself 'test-librarian'"):
        await check_peer("http://127.0.0.1", port, credentials, expected_name="other")
    with pytest.raises(PeerRefusedError) as refused:
        await check_peer("http://127.0.0.1", port, "reader:bad", expected_name="test-librarian")
    assert refused.value.status == 401
    with pytest.raises(PeerUnreachableError):
        await check_peer("http://127.0.0.1", closed_port(), credentials, expected_name="x")


async def test_clients_share_the_tls_settings_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle took 17-37 ms; a client is made for every task run."""
    built: list[object] = []
    real = httpx.create_ssl_context

    def counting(*args: object, **kwargs: object) -> object:
        built.append(1)
        return real()

    client_module._tls_context.cache_clear()
    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    try:
        for _ in range(3):
            await PeerClient("https://peer.invalid", 443, "user", "secret").aclose()
    finally:
        client_module._tls_context.cache_clear()
    assert len(built) == 1
