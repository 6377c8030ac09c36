"""``ingest_manifest`` on both backends, at a destination named ``test-librarian`` that
receives a drive exported by a librarian named ``far``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import update

from librarian_async.api.auth import Caller
from librarian_async.api.staging import StagingRequest, stage_batch
from librarian_async.api.state import ApiState
from librarian_async.context import Context
from librarian_async.db.models import IncomingTransfer, Store
from librarian_async.enums import AuthLevel, TransferStatus
from librarian_async.errors import NotFoundError
from librarian_async.ingest import IngestOptions, add_local_file
from librarian_async.remote.schemas import UploadItem
from librarian_async.sneakernet import ManifestError, ingest_manifest
from librarian_async.sneakernet.ingest import SKIPPED_HERE, SKIPPED_RECEIVED, SKIPPED_STAGED
from librarian_async.storage.checksum import stat_fingerprint
from librarian_async.storage.convert import local_store

from .helpers import (
    EXPORTED_ROOT,
    entry,
    header,
    incoming_rows,
    make_store,
    md5_of,
    sample,
    shipment,
    write_drive,
    write_manifest,
)

S = TransferStatus
FILES = sample(6)
ME = "test-librarian"


@pytest.fixture
async def store(app: Context, tmp_path: Path) -> Store:
    return await make_store(app, tmp_path, "main")


@pytest.fixture
def drive(tmp_path: Path) -> Path:
    return write_drive(tmp_path / "mnt" / "drive", FILES)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "drive.json", header(ME), shipment(FILES))


def staged_file(row: IncomingTransfer) -> Path:
    assert row.staging_path is not None
    return Path(row.staging_path, *row.upload_name.split("/"))


def staged_content(row: IncomingTransfer) -> bytes:
    return staged_file(row).read_bytes()


def leave_partial_copies(rows: list[IncomingTransfer]) -> None:
    """What a kill during the copy leaves: partial bytes (the last one: not even a file)."""
    paths = [Path(row.staging_path or "", *row.upload_name.split("/")) for row in rows]
    for path in paths:
        path.write_bytes(b"part")
    paths[-1].unlink()


def staging_entries(store: Store) -> list[str]:
    return os.listdir(store.staging_path)


async def test_every_entry_is_staged_for_its_source_transfer(
    app: Context, store: Store, drive: Path, manifest: Path
) -> None:
    calls: list[tuple[int, int]] = []

    summary = await ingest_manifest(app, manifest, drive, lambda *done: calls.append(done))

    rows = await incoming_rows(app)
    assert [row.status for row in rows] == [S.STAGED] * len(FILES)
    for (name, content), row, transfer_id in zip(
        FILES.items(), rows, range(100, 200), strict=False
    ):
        assert (row.source, row.uploader, row.source_transfer_id) == ("far", "far", transfer_id)
        assert (row.store_path, row.store_id) == (name, store.id)
        assert (row.transfer_size, row.transfer_checksum) == (len(content), md5_of(content))
        assert staged_content(row) == content
        assert row.verified_stat == stat_fingerprint(staged_file(row))  # not hashed again
    assert (summary.entries, summary.staged, summary.failed) == (6, 6, [])
    assert summary.exit_code == 0 and calls == [(0, 6), (6, 6)]


async def test_damaged_and_missing_files_fail_and_owe_their_source_a_callback(
    app: Context, store: Store, drive: Path, manifest: Path
) -> None:
    damaged, missing, *_ = FILES
    path = drive.joinpath(*damaged.split("/"))
    path.write_bytes(b"X" + path.read_bytes()[1:])
    drive.joinpath(*missing.split("/")).unlink()

    summary = await ingest_manifest(app, manifest, drive)

    rows = {row.store_path: row for row in await incoming_rows(app)}
    for name in (damaged, missing):
        assert (rows[name].status, rows[name].callback_pending) == (S.FAILED, True)
    assert "damaged on the drive" in (rows[damaged].failure_reason or "")
    assert "missing on the drive" in (rows[missing].failure_reason or "")
    assert [row.status for row in rows.values()].count(S.STAGED) == 4
    assert [row.verified_stat is None for row in rows.values()].count(True) == 2
    assert summary.exit_code == 1 and summary.staged == 4
    assert [line.split(":")[0] for line in summary.failed] == [damaged, missing]
    for row in rows.values():  # the failed transfers were unstaged, the others kept
        assert staged_file(row).exists() == (row.status == S.STAGED)  # type: ignore[union-attr]


async def test_a_rerun_skips_what_is_staged_received_or_failed(
    app: Context, store: Store, drive: Path, manifest: Path
) -> None:
    first_name = next(iter(FILES))
    drive.joinpath(*first_name.split("/")).unlink()
    await ingest_manifest(app, manifest, drive)
    rows = await incoming_rows(app)
    async with app.sessions.begin() as session:
        await session.execute(
            update(IncomingTransfer)
            .where(IncomingTransfer.id == rows[1].id)
            .values(status=S.COMPLETED)
        )

    again = await ingest_manifest(app, manifest, drive)

    assert len(await incoming_rows(app)) == len(FILES)
    assert again.skipped == {SKIPPED_RECEIVED: 1, SKIPPED_STAGED: 4}
    assert again.staged == 0 and again.exit_code == 1
    assert again.failed == [f"{first_name}: failed earlier (incoming transfer {rows[0].id}): "
                            f"{rows[0].failure_reason}"]  # fmt: skip


async def test_a_rerun_copies_again_what_a_killed_run_staged_but_did_not_finish(
    app: Context, store: Store, drive: Path, manifest: Path
) -> None:
    await ingest_manifest(app, manifest, drive)
    rows = await incoming_rows(app)
    unfinished = rows[:3]  # as a kill during the copy leaves them: INITIATED, partial bytes
    async with app.sessions.begin() as session:
        await session.execute(
            update(IncomingTransfer)
            .where(IncomingTransfer.id.in_([row.id for row in unfinished]))
            .values(status=S.INITIATED)
        )
    leave_partial_copies(unfinished)

    again = await ingest_manifest(app, manifest, drive)

    after = await incoming_rows(app)
    assert [row.id for row in after] == [row.id for row in rows]
    assert [row.status for row in after] == [S.STAGED] * len(FILES)
    assert [staged_content(row) for row in after] == list(FILES.values())
    assert (again.staged, again.skipped) == (3, {SKIPPED_STAGED: 3})


async def test_files_already_catalogued_are_skipped_and_their_source_is_told(
    app: Context, store: Store, drive: Path, tmp_path: Path
) -> None:
    same, different = "same.dat", "different.dat"
    write_drive(drive, {same: b"same", different: b"new"})
    for name, content in ((same, b"same"), (different, b"old")):
        outside = write_drive(tmp_path / "outside", {name: content}) / name
        await add_local_file(app, store, local_store(store), outside, name, IngestOptions())
    manifest = write_manifest(
        tmp_path / "m.json", header(ME), [entry(same, b"same", 7), entry(different, b"new", 8)]
    )

    summary = await ingest_manifest(app, manifest, drive)

    rows = {row.store_path: row for row in await incoming_rows(app)}
    assert (rows[same].status, rows[same].store_id, rows[same].callback_pending) == (
        S.COMPLETED, store.id, True,
    )  # fmt: skip
    assert (rows[different].status, rows[different].callback_pending) == (S.FAILED, True)
    assert summary.skipped == {SKIPPED_HERE: 1} and len(summary.failed) == 1
    assert "catalogued here with another checksum" in summary.failed[0]
    assert staging_entries(store) == []
    rerun = await ingest_manifest(app, manifest, drive)
    assert len(await incoming_rows(app)) == 2 and rerun.skipped == {SKIPPED_RECEIVED: 1}


async def test_paths_that_leave_the_drive_are_refused(
    app: Context, store: Store, drive: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_bytes(b"secret")
    (drive / "link.dat").symlink_to(tmp_path / "secret")
    entries = [
        entry("escape.dat", b"secret", 1, instance_path=f"{EXPORTED_ROOT}/../../secret"),
        entry("elsewhere.dat", b"secret", 2, instance_path="/somewhere/else/secret"),
        entry("link.dat", b"secret", 3),
    ]
    manifest = write_manifest(tmp_path / "m.json", header(ME), entries)

    summary = await ingest_manifest(app, manifest, drive)

    assert [line.split(":")[0] for line in summary.failed] == [
        "escape.dat",
        "elsewhere.dat",
        "link.dat",
    ]
    assert "has a '..' component" in summary.failed[0]
    assert "is not under the store path" in summary.failed[1]
    assert "leads outside" in summary.failed[2]
    assert {row.status for row in await incoming_rows(app)} == {S.FAILED}
    assert staging_entries(store) == []


async def test_a_name_another_transfer_delivers_is_left_for_later(
    app: Context, store: Store, drive: Path, manifest: Path
) -> None:
    busy, content = next(iter(FILES.items()))
    item = UploadItem(
        upload_size=len(content), upload_checksum=md5_of(content), upload_name=busy,
        destination_location=busy, uploader="other", source_transfer_id=1,
    )  # fmt: skip
    await stage_batch(
        ApiState.create(app),
        Caller("other", AuthLevel.READAPPEND),
        StagingRequest("other", len(content), [item], None),
    )

    summary = await ingest_manifest(app, manifest, drive)

    assert summary.failed == [
        f"{busy}: another transfer is delivering this name; run the ingest again later"
    ]
    rows = await incoming_rows(app)
    assert [(row.source, row.status) for row in rows].count(("other", S.INITIATED)) == 1
    assert [row.status for row in rows if row.source == "far"] == [S.STAGED] * 5


async def test_a_manifest_for_someone_else_changes_nothing(
    app: Context, store: Store, drive: Path, tmp_path: Path
) -> None:
    for name, destination in (("other.json", "someone-else"), ("none.json", None)):
        path = write_manifest(tmp_path / name, header(destination), shipment(FILES))
        with pytest.raises(ManifestError) as raised:
            await ingest_manifest(app, path, drive)
        expected = "is for librarian 'someone-else'" if destination else "has no destination"
        assert expected in str(raised.value)
    with pytest.raises(NotFoundError, match="is not a directory"):
        await ingest_manifest(
            app, write_manifest(tmp_path / "m.json", header(ME), []), tmp_path / "nowhere"
        )
    assert await incoming_rows(app) == []


async def test_an_unknown_source_is_a_warning(
    app: Context, store: Store, drive: Path, manifest: Path
) -> None:
    summary = await ingest_manifest(app, manifest, drive)

    assert summary.warnings and "librarian 'far' is not known here" in summary.warnings[0]
