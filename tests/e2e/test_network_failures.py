"""Network cloning when things go wrong: every test ends with nothing lost and every row in
a legal state, on two real librarians and both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from librarians import Librarian, librarian_pair
from remote.serving import closed_port
from sqlalchemy import update

from librarian_async.db.models import IncomingTransfer, OutgoingTransfer, SendQueueItem
from librarian_async.enums import TransferStatus

from .network import (
    DESTINATION_CONFIG,
    SOURCE_CONFIG,
    Clock,
    add_files,
    clone_round,
    corrupt_staged,
    digest,
    file_names,
    flip_store_files,
    outgoing_by_file,
    point_peer_at,
    queue_rows,
    remote_copies,
    run_tasks,
    sample_files,
    set_authenticator,
    set_transfers_enabled,
    staging_entries,
    statuses,
    stored_digests,
    wait_for_staged_bytes,
)

S = TransferStatus
LATER = timedelta(hours=7)  # past any backoff


def expected_digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: digest(content) for name, content in files.items()}


async def assert_all_delivered(
    source: Librarian, destination: Librarian, files: dict[str, bytes]
) -> None:
    assert stored_digests(destination, files) == expected_digests(files)
    assert await remote_copies(source) == set(files)
    latest = {name: history[-1] for name, history in (await outgoing_by_file(source)).items()}
    assert latest == dict.fromkeys(files, S.COMPLETED)
    assert staging_entries(destination) == []


async def test_destination_down_then_back(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(30)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, files)
        await point_peer_at(source, "destination", closed_port())

        [sent] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert sent.outcome == "ok"
        assert sent.report.counts == {"skipped_unreachable": 1}
        assert await outgoing_by_file(source) == {}
        await point_peer_at(source, "destination", dest.port)
        results = await clone_round(source, dest)
        assert [r.outcome for r in results] == ["ok"] * 4
        await assert_all_delivered(source, dest, files)


async def test_destination_unreachable_at_hand_off_is_retried_with_backoff(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(30)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        clock = Clock(source)
        await add_files(source, files)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        await point_peer_at(source, "destination", closed_port())

        [first] = await run_tasks(source, SOURCE_CONFIG, "Queue consumer")
        [again] = await run_tasks(source, SOURCE_CONFIG, "Queue consumer")

        assert first.report.counts == {"retry_later": 1}
        assert again.report.counts == {}, "backing off: not retried at once"
        [item] = await queue_rows(source)
        assert (item.retries, item.consumed, item.failed) == (1, False, False)
        assert item.last_error and "unreachable" in item.last_error
        await point_peer_at(source, "destination", dest.port)
        clock.advance(LATER)
        await clone_round(source, dest)
        await assert_all_delivered(source, dest, files)


async def test_batch_fails_on_both_sides_after_the_retries(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(5)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        clock = Clock(source)
        source.app.settings.max_queue_retries = 1
        await add_files(source, files)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        flip_store_files(source)  # damaged sources: every hand-off fails

        for _ in range(2):
            [consumed] = await run_tasks(source, SOURCE_CONFIG, "Queue consumer")
            clock.advance(LATER)

        assert consumed.outcome == "problems"
        assert await statuses(source, OutgoingTransfer) == {S.FAILED: len(files)}
        assert await statuses(dest, IncomingTransfer) == {S.FAILED: len(files)}
        assert staging_entries(dest) == []
        flip_store_files(source)
        await clone_round(source, dest)
        await assert_all_delivered(source, dest, files)


async def test_corrupted_staged_file_fails_both_sides_and_is_sent_again(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(10)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, files)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender", "Queue consumer")
        victim = next(name for name, content in files.items() if len(content) > 10)
        corrupt_staged(dest, victim)

        [received] = await run_tasks(dest, DESTINATION_CONFIG, "Clone receiver")

        assert received.outcome == "problems"
        assert (await outgoing_by_file(source))[victim] == [S.FAILED]
        assert victim not in await file_names(dest)
        await clone_round(source, dest)
        assert (await outgoing_by_file(source))[victim] == [S.FAILED, S.COMPLETED]
        await assert_all_delivered(source, dest, files)


async def test_failed_callback_is_retried_until_it_succeeds(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(10)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        clock = Clock(dest)
        await add_files(source, files)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender", "Queue consumer")
        await point_peer_at(dest, "source", closed_port())

        await run_tasks(dest, DESTINATION_CONFIG, "Clone receiver")

        assert await statuses(dest, IncomingTransfer) == {S.COMPLETED: len(files)}
        assert await statuses(source, OutgoingTransfer) == {S.STAGED: len(files)}
        await point_peer_at(dest, "source", source.port)
        clock.advance(LATER)
        await run_tasks(dest, DESTINATION_CONFIG, "Clone receiver")
        await assert_all_delivered(source, dest, files)


async def test_disabled_peer_gets_nothing_until_enabled(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(10)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, dict(list(files.items())[:5]))
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        await set_transfers_enabled(source, "destination", False)
        await add_files(source, dict(list(files.items())[5:]))

        results = await run_tasks(
            source, SOURCE_CONFIG, "Clone sender", "Queue consumer", "Queue checker"
        )

        assert results[0].report.counts == {"skipped_disabled": 1}
        assert results[1].report.counts == {}, "a queued batch to a disabled peer waits"
        assert await statuses(dest, IncomingTransfer) == {S.INITIATED: 5}
        await set_transfers_enabled(source, "destination", True)
        await clone_round(source, dest)
        await assert_all_delivered(source, dest, files)


async def test_wrong_credentials_send_nothing(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(3)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, files)
        await set_authenticator(source, "destination", "source:wrong-password")

        [sent] = await run_tasks(source, SOURCE_CONFIG, "Clone sender")

        assert sent.outcome == "problems"
        assert "credentials" in sent.report.problems[0]
        assert await outgoing_by_file(source) == {}
        assert await statuses(dest, IncomingTransfer) == {}


async def test_destination_dies_in_the_middle_of_a_batch(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    """The destination crashes while the http upload of a 160 MiB batch is under way."""
    files = {f"big/{i:02d}.dat": bytes([i]) * (4 << 20) for i in range(40)}
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        clock = Clock(source)
        await add_files(source, files)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        consuming = asyncio.create_task(run_tasks(source, SOURCE_CONFIG, "Queue consumer"))

        await wait_for_staged_bytes(dest, 8 << 20)
        await dest.stop_serving(abrupt=True)
        [consumed] = await consuming

        assert consumed.outcome == "ok", consumed.report
        assert consumed.report.counts in (
            {"retry_later": 1},
            {"batches_sent": 1, "bytes": 40 * (4 << 20), "awaiting_check": 1},
        )
        assert set(await statuses(source, OutgoingTransfer)) <= {S.INITIATED, S.ONGOING}
        await dest.start_serving()
        clock.advance(LATER)
        for _ in range(2):
            await clone_round(source, dest)
        await assert_all_delivered(source, dest, files)


async def test_the_queue_checker_waits_for_the_consumers_lease(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    """A consumed batch whose STAGED call was never confirmed (a consumer killed right after
    the hand-off) is the checker's only once the consumer's lease has ended: run beside a
    live consumer, it must not ask STAGED a second time while the receiver ingests."""
    files = sample_files(6)
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        clock = Clock(source)
        await add_files(source, files)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender", "Queue consumer")
        async with source.app.sessions.begin() as session:  # as the killed consumer left it
            await session.execute(
                update(SendQueueItem).values(
                    completed=False, next_attempt_at=source.app.now() + timedelta(minutes=30)
                )
            )

        [leased] = await run_tasks(source, SOURCE_CONFIG, "Queue checker")
        clock.advance(timedelta(hours=1))
        [expired] = await run_tasks(source, SOURCE_CONFIG, "Queue checker")

        assert leased.report.counts == {}
        assert expired.report.counts == {"batches_completed": 1, "staged": len(files)}
        await run_tasks(dest, DESTINATION_CONFIG, "Clone receiver")
        await assert_all_delivered(source, dest, files)
