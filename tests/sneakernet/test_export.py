"""``export_manifest`` on both backends: the entries, the outgoing transfers, the switches."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from librarian_async.context import Context
from librarian_async.db import peers, sending
from librarian_async.db.models import Librarian, OutgoingTransfer, RemoteInstance, Store
from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.errors import NotFoundError
from librarian_async.sneakernet import check_manifest, export_manifest, read_entries
from librarian_async.sneakernet.export import (
    LEFT_OUT_HELD,
    LEFT_OUT_IN_FLIGHT,
    LEFT_OUT_UNAVAILABLE,
    PAGE_SIZE,
    ExportSummary,
)

from .helpers import catalogue, instances_on, make_store, md5_of, outgoing_rows, sample, store_row

S = TransferStatus
PEER = "peer"


@pytest.fixture
async def drive(app: Context, tmp_path: Path) -> Store:
    return await make_store(app, tmp_path, "drive", ingestable=False)


@pytest.fixture
async def peer_id(app: Context) -> int:
    async with app.sessions.begin() as session:
        row = Librarian(name=PEER, url="http://127.0.0.1", port=9, authenticator="unused")
        return (await peers.add_librarian(session, row)).id


async def export(
    app: Context, output: Path, destination: str | None = PEER, **switches: bool
) -> ExportSummary:
    return await export_manifest(
        app,
        store_name="drive",
        output=output,
        destination=destination,
        disable_store=switches.get("disable_store", False),
        mark_unavailable=switches.get("mark_unavailable", False),
    )


async def test_without_destination_every_instance_is_listed_and_nothing_changes(
    app: Context, drive: Store, tmp_path: Path
) -> None:
    files = sample(3)
    await catalogue(app, drive, files, policy=DeletionPolicy.ALLOWED)
    await catalogue(app, drive, {"gone.dat": b"gone"}, available=False)
    output = tmp_path / "drive.json"

    summary = await export(app, output, destination=None)

    info = check_manifest(output)
    assert (info.header.librarian_name, info.header.store_name) == ("test-librarian", "drive")
    assert info.header.store_path == drive.store_path and info.header.destination is None
    entries = {item.name: item for item in read_entries(output)}
    assert set(entries) == {*files, "gone.dat"}
    name = next(iter(files))
    assert entries[name].instance_path == str(Path(drive.store_path, *name.split("/")))
    assert entries[name].checksum == md5_of(files[name]) and entries[name].size == len(files[name])
    assert entries[name].deletion_policy == DeletionPolicy.ALLOWED
    assert entries["gone.dat"].instance_available is False
    assert {item.outgoing_transfer_id for item in entries.values()} == {None}
    assert (summary.entries, summary.transfers_created) == (4, 0)
    assert await outgoing_rows(app) == []
    assert (await store_row(app, "drive")).enabled is True


async def test_with_destination_each_file_gets_an_ongoing_transfer_send_clone_skips(
    app: Context, drive: Store, peer_id: int, tmp_path: Path
) -> None:
    files = sample(4)
    await catalogue(app, drive, files)

    summary = await export(app, tmp_path / "drive.json")

    rows = {row.file_name: row for row in await outgoing_rows(app)}
    assert set(rows) == set(files)
    for name, row in rows.items():
        assert (row.status, row.destination) == (S.ONGOING, PEER)
        assert (row.transfer_size, row.transfer_checksum) == (len(files[name]), md5_of(files[name]))
        assert row.instance_id is not None and row.send_queue_id is None
        assert row.transfer_data == {"method": "sneakernet", "store_name": "drive"}
    listed = {
        item.name: item.outgoing_transfer_id for item in read_entries(tmp_path / "drive.json")
    }
    assert listed == {name: row.id for name, row in rows.items()}
    assert (summary.entries, summary.transfers_created, summary.left_out) == (4, 4, {})
    async with app.sessions() as session:
        candidates = await sending.send_candidates(
            session,
            destination=PEER,
            librarian_id=peer_id,
            created_after=app.now() - timedelta(days=1),
            after=(app.now() - timedelta(days=1), ""),
            preferred_store_id=None,
            limit=100,
        )
    assert candidates == []


async def test_exporting_again_reuses_the_transfers_even_after_marking_unavailable(
    app: Context, drive: Store, peer_id: int, tmp_path: Path
) -> None:
    await catalogue(app, drive, sample(3))
    first = await export(app, tmp_path / "first.json", mark_unavailable=True)

    second = await export(app, tmp_path / "second.json")

    assert (first.transfers_created, second.transfers_created) == (3, 0)
    assert second.transfers_reused == 3
    assert len(await outgoing_rows(app)) == 3
    ids = [
        [e.outgoing_transfer_id for e in read_entries(tmp_path / f"{n}.json")]
        for n in ("first", "second")
    ]
    assert ids[0] == ids[1]


async def test_files_held_or_in_flight_or_unavailable_are_left_out(
    app: Context, drive: Store, peer_id: int, tmp_path: Path
) -> None:
    await catalogue(app, drive, {"held.dat": b"h", "flying.dat": b"f", "new.dat": b"n"})
    await catalogue(app, drive, {"gone.dat": b"g"}, available=False)
    async with app.sessions.begin() as session:
        session.add(
            RemoteInstance(file_name="held.dat", librarian_id=peer_id, store_id=1, sender="x")
        )
        session.add(
            OutgoingTransfer(
                status=S.INITIATED, destination=PEER, file_name="flying.dat",
                transfer_size=1, transfer_checksum=md5_of(b"f"),
            )
        )  # fmt: skip

    summary = await export(app, tmp_path / "drive.json")

    assert [item.name for item in read_entries(tmp_path / "drive.json")] == ["new.dat"]
    assert summary.left_out == {LEFT_OUT_HELD: 1, LEFT_OUT_IN_FLIGHT: 1, LEFT_OUT_UNAVAILABLE: 1}
    assert any("left out: 1 (already held" in line for line in summary.lines())
    assert len(await outgoing_rows(app)) == 2


async def test_disable_store_and_mark_unavailable(
    app: Context, drive: Store, peer_id: int, tmp_path: Path
) -> None:
    await catalogue(app, drive, sample(3))

    summary = await export(app, tmp_path / "drive.json", disable_store=True, mark_unavailable=True)

    assert (await store_row(app, "drive")).enabled is False
    assert set((await instances_on(app, drive)).values()) == {False}
    assert summary.store_disabled and summary.instances_marked_unavailable == 3
    manifest = json.loads((tmp_path / "drive.json").read_text())
    assert {item["instance_available"] for item in manifest["store_files"]} == {True}


async def test_pages_cover_a_store_bigger_than_one_page(
    app: Context, drive: Store, peer_id: int, tmp_path: Path
) -> None:
    files = {f"f{index:05d}": str(index).encode() for index in range(PAGE_SIZE * 2 + 3)}
    await catalogue(app, drive, files)

    summary = await export(app, tmp_path / "drive.json", mark_unavailable=True)

    listed = [item.name for item in read_entries(tmp_path / "drive.json")]
    assert sorted(listed) == sorted(files) and summary.transfers_created == len(files)
    assert summary.instances_marked_unavailable == len(files)


async def test_unknown_store_or_destination_writes_nothing(
    app: Context, drive: Store, tmp_path: Path
) -> None:
    output = tmp_path / "drive.json"
    with pytest.raises(NotFoundError, match="no librarian named 'peer'"):
        await export(app, output)
    with pytest.raises(NotFoundError, match="no store named 'nope'"):
        await export_manifest(
            app, store_name="nope", output=output, destination=None,
            disable_store=False, mark_unavailable=False,
        )  # fmt: skip
    assert json_files(tmp_path) == []


def json_files(folder: Path) -> list[Path]:
    return list(folder.glob("*.json"))


async def test_a_failed_write_leaves_no_partial_manifest(
    app: Context, drive: Store, tmp_path: Path
) -> None:
    await catalogue(app, drive, sample(2))
    async with app.sessions.begin() as session:
        await session.execute(
            insert(Librarian), [{"name": PEER, "url": "u", "port": 1, "authenticator": "a"}]
        )

    with pytest.raises(FileNotFoundError):
        await export(app, tmp_path / "missing-folder" / "drive.json")

    assert await outgoing_rows(app) == []
