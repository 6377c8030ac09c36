"""send_clone's decisions, against a real destination librarian on both backends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from e2e.network import (
    SOURCE_CONFIG,
    Clock,
    add_files,
    outgoing_by_file,
    queue_rows,
    remote_copies,
    run_tasks,
    statuses,
)
from librarians import librarian_pair
from sqlalchemy import update

from librarian_async.db.models import IncomingTransfer, OutgoingTransfer
from librarian_async.enums import TransferStatus
from librarian_async.tasks.consume_queue import backoff

S = TransferStatus
FILES = {"a.dat": b"alpha", "sub/b.dat": b"bravo", "sub/c.dat": b"charlie"}


async def test_a_file_the_peer_already_holds_becomes_a_remote_copy(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, FILES)
        await dest.add_file("a.dat", FILES["a.dat"])  # same bytes: already there
        await dest.add_file("sub/b.dat", b"not bravo")  # same name, other bytes

        [sent] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert sent.outcome == "problems"
        assert "holds a different file named 'sub/b.dat'" in sent.report.problems[0]
        assert await outgoing_by_file(source) == {
            "a.dat": [S.COMPLETED],
            "sub/b.dat": [S.FAILED],
            "sub/c.dat": [S.INITIATED],
        }
        assert await remote_copies(source) == {"a.dat"}
        [item] = await queue_rows(source)
        assert [f["source_transfer_id"] for f in item.transfer_data["files"]] == [3]


async def test_queueing_a_batch_wakes_the_queue_consumer(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, _):
        with source.app.wakeups.listening("consume_queue") as woken:
            [idle] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")
            assert idle.outcome == "ok" and not woken.is_set()  # nothing queued, no wake-up

            await add_files(source, FILES)
            [sent] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert sent.report.counts["queued"] == 3
        assert woken.is_set()


async def test_no_usable_transfer_method_fails_the_batch_on_both_sides(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    globus_only = {"globus": {"endpoint": "somewhere"}}
    async with librarian_pair(
        database_url, second_database_url, tmp_path, destination_methods=globus_only
    ) as (source, dest):
        await add_files(source, FILES)

        [sent] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert sent.outcome == "problems"
        assert "no usable transfer method" in sent.report.problems[0]
        assert await statuses(source, OutgoingTransfer) == {S.FAILED: 3}
        assert await statuses(dest, IncomingTransfer) == {S.FAILED: 3}
        assert await queue_rows(source) == []


async def test_a_file_the_peer_is_receiving_already_is_cancelled(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, FILES)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender", "Queue consumer")
        async with dest.app.sessions.begin() as session:  # the destination is mid-receive
            await session.execute(update(IncomingTransfer).values(status=S.ONGOING))
        async with source.app.sessions.begin() as session:  # and we lost our rows' state
            await session.execute(update(OutgoingTransfer).values(status=S.FAILED))

        [sent] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert sent.report.counts.get("skipped_in_progress") == 3
        histories = await outgoing_by_file(source)
        assert all(history[-1] == S.CANCELLED for history in histories.values())


async def test_rows_a_dead_run_left_unqueued_are_cancelled_later(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, _):
        clock = Clock(source)
        await add_files(source, FILES)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        async with source.app.sessions.begin() as session:  # as if killed before queueing
            await session.execute(update(OutgoingTransfer).values(send_queue_id=None))

        [soon] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        clock.advance(timedelta(minutes=11))
        [later] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert soon.report.counts.get("queued", 0) == 0, "still INITIATED: not sent twice"
        assert later.report.counts["abandoned_cancelled"] == 3
        histories = await outgoing_by_file(source)
        assert {name: h[0] for name, h in histories.items()} == dict.fromkeys(FILES, S.CANCELLED)
        assert later.report.counts["queued"] == 3


def test_backoff_doubles_up_to_a_ceiling() -> None:
    waits = [backoff(attempts).total_seconds() for attempts in range(1, 12)]
    assert waits[:4] == [60, 120, 240, 480]
    assert max(waits) == 6 * 3600
    assert waits == sorted(waits)
