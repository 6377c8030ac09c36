"""receive_clone between two real librarians (uvicorn on loopback), on SQLite and PostgreSQL.

The destination runs the task through the real scheduler; the source is a real librarian
whose own API handles the callbacks (``clone/complete``, ``checkin/update``).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from librarians import Librarian, add_store, librarian_pair
from remote.serving import closed_port
from sqlalchemy import update

from librarian_async.api import create_app
from librarian_async.context import Context
from librarian_async.db import peers
from librarian_async.db.models import (
    File,
    IncomingTransfer,
    Instance,
    OutgoingTransfer,
    RemoteInstance,
    User,
)
from librarian_async.enums import AuthLevel, DeletionPolicy, TransferStatus
from librarian_async.scheduler import Scheduler
from librarian_async.storage.checksum import hash_file_sync, stat_fingerprint, sync_files
from librarian_async.storage.convert import local_store
from librarian_async.tasks import receive_clone

from .receive_fixtures import (
    BATCH_COMPLETE_PATH,
    Clock,
    CountingApp,
    Sent,
    by_id,
    checksum_of,
    config,
    counts,
    deployed_app,
    incoming,
    outgoing,
    peer_row,
    receive,
    rows,
    serve_instead,
    set_peer_port,
    stage_files,
)

S = TransferStatus
MiB = 1024 * 1024


@pytest.fixture
async def pair(
    database_url: str, second_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Librarian, Librarian]]:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, destination):
        yield source, destination


@pytest.fixture
def clock(pair: tuple[Librarian, Librarian]) -> Clock:
    """The destination's wall clock, moved by hand."""
    clock = Clock()
    pair[1].app.now = clock
    return clock


def staging_dir(sent: Sent, destination: Librarian) -> Path:
    """The transfer's own directory: the child of the staging area holding the bytes."""
    staging = Path(destination.store.staging_path)
    return staging / sent.staged.relative_to(staging).parts[0]


async def instances_of(app_owner: Librarian, name: str) -> list[Instance]:
    return [row for row in await rows(app_owner.app, Instance) if row.file_name == name]


# --- the normal case -------------------------------------------------------------------------


async def test_files_land_catalogued_and_the_source_is_told(
    pair: tuple[Librarian, Librarian], clock: Clock
) -> None:
    source, destination = pair
    contents = {
        "empty.dat": b"",
        "small.txt": b"hello, librarian\n",
        "a/b/c.dat": os.urandom(5000),
        "night/big.uvh5": os.urandom(3 * MiB + 17),
    }
    algorithms = {"small.txt": "xxh3", "a/b/c.dat": "sha256", "night/big.uvh5": "legacy"}
    sent = await stage_files(source, destination, contents, algorithms)

    result = await receive(destination.app)

    size = sum(map(len, contents.values()))
    assert result.report.problems == []
    assert result.report.counts == counts(received=4, bytes=size, callbacks_sent=4)
    files = {row.name: row for row in await rows(destination.app, File)}
    for item in sent:
        stored = destination.stored(item.name)
        assert stored.read_bytes() == item.content
        assert (files[item.name].size, files[item.name].checksum) == (
            len(item.content),
            item.checksum,
        )
        assert (files[item.name].uploader, files[item.name].source) == ("source", "source")
        [instance] = await instances_of(destination, item.name)
        assert (instance.path, instance.store_id) == (str(stored), destination.store.id)
        assert instance.deletion_policy == DeletionPolicy.ALLOWED
        assert not staging_dir(item, destination).exists()
    for row in await incoming(destination.app, sent):
        assert (row.status, row.callback_pending, row.end_time) == (S.COMPLETED, False, clock())
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED] * 4
    remote = await rows(source.app, RemoteInstance)
    destination_row = await peer_row(source.app, "destination")
    assert sorted((r.file_name, r.librarian_id, r.store_id) for r in remote) == sorted(
        (name, destination_row.id, destination.store.id) for name in contents
    )


async def test_deletion_policy_comes_from_the_parameters(pair: tuple[Librarian, Librarian]) -> None:
    source, destination = pair
    await stage_files(source, destination, {"kept.dat": b"keep me"})

    await receive(destination.app, deletion_policy="DISALLOWED")

    [instance] = await instances_of(destination, "kept.dat")
    assert instance.deletion_policy == DeletionPolicy.DISALLOWED


async def test_a_second_run_finds_nothing_to_do(pair: tuple[Librarian, Librarian]) -> None:
    source, destination = pair
    await stage_files(source, destination, {"once.dat": b"once"})
    await receive(destination.app)

    again = await receive(destination.app)

    assert (again.outcome, again.report.counts) == ("ok", counts())
    assert len(await rows(destination.app, File)) == 1
    assert len(await rows(destination.app, Instance)) == 1


async def test_files_per_run_takes_the_oldest_first(pair: tuple[Librarian, Librarian]) -> None:
    source, destination = pair
    sent = await stage_files(source, destination, {f"f{n}.dat": bytes([n]) * 10 for n in range(5)})

    first = await receive(destination.app, files_per_run=2)

    assert first.report.counts["received"] == 2
    statuses = [row.status for row in await incoming(destination.app, sent)]
    assert statuses == [S.COMPLETED] * 2 + [S.STAGED] * 3
    second = await receive(destination.app, files_per_run=2)
    assert second.report.counts["received"] == 2
    statuses = [row.status for row in await incoming(destination.app, sent)]
    assert statuses == [S.COMPLETED] * 4 + [S.STAGED]


async def test_a_spent_budget_leaves_the_rest_staged_for_the_next_run(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    size = receive_clone.BATCH_BYTES * 5 // 8  # one file a batch
    contents = {f"t{n}.dat": os.urandom(size) for n in range(6)}
    sent = await stage_files(source, destination, contents)
    area = destination.store.store_path
    destination.app.monotonic = lambda: 10.0 * files_below(area)  # 10 s per file received

    cut = await receive(destination.app, soft_timeout=timedelta(seconds=5), concurrency=1)

    destination.app.monotonic = lambda: 0.0
    statuses = [row.status for row in await incoming(destination.app, sent)]
    assert statuses == [S.COMPLETED] + [S.STAGED] * 5
    assert cut.report.counts == counts(received=1, bytes=size, callbacks_pending=1)
    rest = await receive(destination.app)
    assert rest.report.counts == counts(received=5, bytes=5 * size, callbacks_sent=6)
    assert [row.status for row in await incoming(destination.app, sent)] == [S.COMPLETED] * 6
    assert len(await rows(destination.app, Instance)) == 6


def files_below(directory: str) -> int:
    return sum(len(names) for _, _, names in os.walk(directory))


async def test_two_runs_at_once_receive_each_file_once(pair: tuple[Librarian, Librarian]) -> None:
    source, destination = pair
    contents = {f"both/{n:02}.dat": os.urandom(300 * 1024 + n) for n in range(24)}
    sent = await stage_files(source, destination, contents)
    entries = [config(task_name=name, concurrency=3) for name in ("receiver-a", "receiver-b")]
    scheduler = Scheduler(destination.app, entries, {"receive_clone": receive_clone.run})

    results = await scheduler.run_once()

    assert [result.outcome for result in results] != ["error", "error"]
    assert all(result.error is None for result in results)
    assert sum(result.report.counts["received"] for result in results) == 24
    assert sum(result.report.counts["failed"] for result in results) == 0
    assert [row.status for row in await incoming(destination.app, sent)] == [S.COMPLETED] * 24
    assert len(await rows(destination.app, File)) == 24
    assert len(await rows(destination.app, Instance)) == 24
    for item in sent:
        assert destination.stored(item.name).read_bytes() == item.content
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED] * 24


# --- bad staged files ------------------------------------------------------------------------


async def test_bad_or_missing_staged_files_fail_and_the_source_is_told(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    contents = {
        "good.dat": b"good" * 100,
        "corrupt.dat": b"abcd" * 100,
        "short.dat": b"x" * 50,
        "gone/missing.dat": b"m" * 10,
    }
    sent = {item.name: item for item in await stage_files(source, destination, contents)}
    sent["corrupt.dat"].staged.write_bytes(b"abce" * 100)
    sent["short.dat"].staged.write_bytes(b"x" * 49)
    sent["gone/missing.dat"].staged.unlink()

    result = await receive(destination.app)

    assert result.outcome == "problems"
    assert result.report.counts == counts(received=1, bytes=400, failed=3, callbacks_sent=4)
    problems = "\n".join(result.report.problems)
    assert len(result.report.problems) == 3
    for name in ("corrupt.dat", "short.dat", "gone/missing.dat"):
        assert name in problems
    bad = [sent[name] for name in ("corrupt.dat", "short.dat", "gone/missing.dat")]
    reasons = [row.failure_reason or "" for row in await incoming(destination.app, bad)]
    assert (
        "checksum" in reasons[0]
        and "size 49 bytes, expected 50" in reasons[1]
        and "missing" in reasons[2]
    )
    for row in await incoming(destination.app, bad):
        assert (row.status, row.callback_pending) == (S.FAILED, False)
    for item in bad:
        assert not staging_dir(item, destination).exists()
        assert not destination.stored(item.name).exists()
    assert [row.status for row in await outgoing(source.app, bad)] == [S.FAILED] * 3
    assert [row.status for row in await outgoing(source.app, [sent["good.dat"]])] == [S.COMPLETED]
    assert [row.name for row in await rows(destination.app, File)] == ["good.dat"]


async def test_a_file_verified_on_arrival_is_not_read_again_unless_it_changed(
    pair: tuple[Librarian, Librarian], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the http upload endpoint records (tests/api/test_upload.py) spares the second
    hash; a file written since, even with its size kept, is hashed and fails."""
    source, destination = pair
    contents = {"kept.dat": b"k" * 1000, "changed.dat": b"c" * 1000, "never.dat": b"n" * 10}
    sent = {item.name: item for item in await stage_files(source, destination, contents)}
    async with destination.app.sessions.begin() as session:
        for name in ("kept.dat", "changed.dat"):
            await session.execute(
                update(IncomingTransfer)
                .where(IncomingTransfer.id == sent[name].incoming_id)
                .values(verified_stat=stat_fingerprint(sent[name].staged))
            )
    sent["changed.dat"].staged.write_bytes(b"C" * 1000)
    hashed: list[str] = []

    def spying_hash(path: Path, *args: object, **kwargs: object) -> object:
        hashed.append(path.name)
        return hash_file_sync(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(receive_clone, "hash_file_sync", spying_hash)

    result = await receive(destination.app)

    assert sorted(hashed) == ["changed.dat", "never.dat"]
    assert result.report.counts == counts(received=2, bytes=1010, failed=1, callbacks_sent=3)
    [changed] = await incoming(destination.app, [sent["changed.dat"]])
    assert changed.status == S.FAILED and "checksum" in (changed.failure_reason or "")
    assert destination.stored("kept.dat").read_bytes() == contents["kept.dat"]


@pytest.mark.parametrize("verified", [True, False], ids=["verified", "to-hash"])
async def test_files_verified_on_arrival_share_a_batch_whatever_their_bytes(
    pair: tuple[Librarian, Librarian], monkeypatch: pytest.MonkeyPatch, verified: bool
) -> None:
    """The batch's byte cap counts the bytes to hash: 40 verified files of 300 KiB (12 MiB)
    are one batch (one sync), the same files unverified more than one."""
    source, destination = pair
    contents = {f"f{n:02d}.dat": bytes([n]) * 300 * 1024 for n in range(40)}
    sent = await stage_files(source, destination, contents)
    if verified:
        async with destination.app.sessions.begin() as session:
            for item in sent:
                await session.execute(
                    update(IncomingTransfer)
                    .where(IncomingTransfer.id == item.incoming_id)
                    .values(verified_stat=stat_fingerprint(item.staged))
                )
    batches: list[int] = []

    def counting_sync(paths: list[Path]) -> None:
        batches.append(len(paths))
        sync_files(paths)

    monkeypatch.setattr(receive_clone, "sync_files", counting_sync)

    result = await receive(destination.app)

    assert result.report.counts["received"] == 40
    assert sum(batches) == 40
    assert (len(batches) == 1) is verified, batches


@pytest.mark.parametrize("inside", [False, True], ids=["to-outside", "to-staging"])
async def test_a_staged_symlink_is_refused(
    pair: tuple[Librarian, Librarian], tmp_path: Path, inside: bool
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"link.dat": b"secret bytes"})
    where = Path(destination.store.staging_path) if inside else tmp_path
    pointed = where / "pointed.dat"
    pointed.write_bytes(b"secret bytes")
    item.staged.unlink()
    item.staged.symlink_to(pointed)

    result = await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert (row.status, result.report.counts["failed"]) == (S.FAILED, 1)
    assert "symlink" in (row.failure_reason or "")
    assert not destination.stored("link.dat").exists()
    assert pointed.read_bytes() == b"secret bytes"


async def test_a_staging_path_outside_the_staging_area_is_refused(
    pair: tuple[Librarian, Librarian], tmp_path: Path
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"escape.dat": b"escape"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "escape.dat").write_bytes(b"escape")
    async with destination.app.sessions.begin() as session:
        await session.execute(
            update(IncomingTransfer)
            .where(IncomingTransfer.id == item.incoming_id)
            .values(staging_path=str(elsewhere))
        )

    await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert row.status == S.FAILED and "outside the staging area" in (row.failure_reason or "")
    assert (elsewhere / "escape.dat").exists()  # never removed: it is not ours
    assert not destination.stored("escape.dat").exists()


# --- names already catalogued ----------------------------------------------------------------


async def test_a_name_catalogued_with_another_checksum_fails_and_keeps_the_original(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"taken.dat": b"new bytes"})
    await destination.add_file("taken.dat", b"the original")
    [before] = await rows(destination.app, File)

    result = await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert row.status == S.FAILED and "already catalogued" in (row.failure_reason or "")
    assert result.report.counts["failed"] == 1 and "taken.dat" in result.report.problems[0]
    assert destination.stored("taken.dat").read_bytes() == b"the original"
    [after] = await rows(destination.app, File)
    assert (after.checksum, after.size) == (before.checksum, before.size)
    assert len(await instances_of(destination, "taken.dat")) == 1
    assert not staging_dir(item, destination).exists()
    assert [row.status for row in await outgoing(source.app, [item])] == [S.FAILED]


async def test_a_name_catalogued_elsewhere_with_another_checksum_is_not_written(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"other.dat": b"new bytes"})
    other = await add_store(destination.app, destination.root, "other", {})
    await destination.add_file("other.dat", b"the original", store=other)

    await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert row.status == S.FAILED
    assert not destination.stored("other.dat").exists()
    assert destination.stored("other.dat", other).read_bytes() == b"the original"


async def test_a_file_catalogued_with_the_same_checksum_gains_an_instance(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    await stage_files(source, destination, {"shared.dat": b"same bytes"})
    other = await add_store(destination.app, destination.root, "other", {})
    await destination.add_file("shared.dat", b"same bytes", store=other)
    [before] = await rows(destination.app, File)

    result = await receive(destination.app)

    assert result.report.counts["received"] == 1
    [after] = await rows(destination.app, File)
    assert after.create_time == before.create_time  # adopted, not replaced
    stores = sorted(instance.store_id for instance in await instances_of(destination, "shared.dat"))
    assert stores == sorted([destination.store.id, other.id])
    assert destination.stored("shared.dat").read_bytes() == b"same bytes"


async def test_a_catalogued_checksum_of_another_algorithm_is_compared_by_content(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    sent = await stage_files(
        source,
        destination,
        {"same.dat": b"same", "differs.dat": b"new"},
        {"same.dat": "xxh3", "differs.dat": "xxh3"},
    )
    other = await add_store(destination.app, destination.root, "other", {})
    await destination.add_file("same.dat", b"same", store=other)  # catalogued as md5
    await destination.add_file("differs.dat", b"old", store=other)

    await receive(destination.app)

    assert [row.status for row in await incoming(destination.app, sent)] == [S.COMPLETED, S.FAILED]


# --- crash safety ----------------------------------------------------------------------------


async def test_a_file_moved_into_the_store_before_a_crash_is_adopted(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"d/crash.dat": os.urandom(2000)})
    target = destination.stored("d/crash.dat")
    target.parent.mkdir(parents=True)
    os.replace(item.staged, target)  # the commit happened, the transaction did not

    result = await receive(destination.app)

    assert (result.report.problems, result.report.counts["received"]) == ([], 1)
    [row] = await incoming(destination.app, [item])
    assert row.status == S.COMPLETED
    assert target.read_bytes() == item.content
    assert len(await rows(destination.app, File)) == 1
    assert len(await instances_of(destination, "d/crash.dat")) == 1
    assert not staging_dir(item, destination).exists()


async def test_an_identical_leftover_at_the_target_is_adopted_with_no_duplicate(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"left.dat": os.urandom(3000)})
    shutil.copyfile(item.staged, destination.stored("left.dat"))  # both copies exist

    result = await receive(destination.app)

    assert result.report.counts["received"] == 1
    assert destination.stored("left.dat").read_bytes() == item.content
    assert len(await instances_of(destination, "left.dat")) == 1
    assert not staging_dir(item, destination).exists()


async def test_a_different_leftover_at_the_target_is_never_overwritten(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"clash.dat": b"incoming"})
    destination.stored("clash.dat").write_bytes(b"something else")

    result = await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert (row.status, result.report.counts["failed"]) == (S.FAILED, 1)
    assert destination.stored("clash.dat").read_bytes() == b"something else"
    assert await rows(destination.app, File) == []


async def test_a_missing_staged_file_with_other_bytes_at_the_target_fails(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"half.dat": b"incoming"})
    item.staged.unlink()
    destination.stored("half.dat").write_bytes(b"unrelated")

    await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert row.status == S.FAILED and "missing" in (row.failure_reason or "")
    assert destination.stored("half.dat").read_bytes() == b"unrelated"


async def test_transfers_on_a_missing_store_area_stay_staged(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    [item] = await stage_files(source, destination, {"wait.dat": b"wait"})
    area = destination.store.store_path
    os.rename(area, f"{area}-unmounted")

    result = await receive(destination.app)

    [row] = await incoming(destination.app, [item])
    assert row.status == S.STAGED and item.staged.exists()
    assert "store 'store'" in result.report.problems[0]
    os.rename(f"{area}-unmounted", area)
    await receive(destination.app)
    assert [row.status for row in await incoming(destination.app, [item])] == [S.COMPLETED]


# --- callbacks --------------------------------------------------------------------------------


async def test_a_callback_to_an_unreachable_source_is_retried_after_its_backoff(
    pair: tuple[Librarian, Librarian], clock: Clock
) -> None:
    source, destination = pair
    sent = await stage_files(source, destination, {"later.dat": b"later"})
    await set_peer_port(destination.app, "source", closed_port())

    down = await receive(destination.app)

    assert down.report.counts == counts(
        received=1, bytes=5, callbacks_failed=1, callbacks_pending=1
    )
    assert "unreachable" in down.report.problems[0]
    [row] = await incoming(destination.app, sent)
    assert (row.status, row.callback_pending, row.callback_attempts) == (S.COMPLETED, True, 1)
    assert row.next_callback_at == clock() + timedelta(seconds=30)
    await set_peer_port(destination.app, "source", source.port)
    clock.advance(29)
    early = await receive(destination.app)
    assert early.report.counts == counts(callbacks_pending=1)
    assert [row.status for row in await outgoing(source.app, sent)] == [S.ONGOING]
    clock.advance(1)
    up = await receive(destination.app)
    assert (up.outcome, up.report.counts) == ("ok", counts(callbacks_sent=1))
    [row] = await incoming(destination.app, sent)
    assert row.callback_pending is False
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED]
    assert [r.file_name for r in await rows(source.app, RemoteInstance)] == ["later.dat"]


async def test_the_backoff_doubles_with_each_failed_attempt(
    pair: tuple[Librarian, Librarian], clock: Clock
) -> None:
    source, destination = pair
    sent = await stage_files(source, destination, {"down.dat": b"down"})
    await set_peer_port(destination.app, "source", closed_port())
    waits = []
    for _ in range(9):
        await receive(destination.app)
        [row] = await incoming(destination.app, sent)
        assert row.next_callback_at is not None
        waits.append((row.next_callback_at - clock()).total_seconds())
        clock.current = row.next_callback_at
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert row.callback_attempts == 9


@pytest.mark.parametrize("deployed", [False, True], ids=["batch", "file-by-file"])
async def test_a_failed_callback_does_not_stop_the_others(
    pair: tuple[Librarian, Librarian], deployed: bool
) -> None:
    source, destination = pair
    if deployed:
        await serve_instead(source, deployed_app(source, 404))
    sent = await stage_files(
        source, destination, {"ok.dat": b"ok", "lost.dat": b"lost", "fine.dat": b"fine"}
    )
    async with destination.app.sessions.begin() as session:  # the source never heard of this one
        await session.execute(
            update(IncomingTransfer)
            .where(IncomingTransfer.id == sent[1].incoming_id)
            .values(source_transfer_id=999999)
        )
    async with source.app.sessions.begin() as session:  # this one ends before the callback
        await session.execute(
            update(OutgoingTransfer)
            .where(OutgoingTransfer.id == sent[2].outgoing_id)
            .values(status=S.FAILED)
        )

    result = await receive(destination.app)

    assert result.report.counts == counts(received=3, bytes=10, callbacks_sent=3)
    assert (
        len(result.report.problems) == 1 and "refused clone/complete" in result.report.problems[0]
    )
    assert [row.callback_pending for row in await incoming(destination.app, sent)] == [False] * 3
    assert [row.status for row in await outgoing(source.app, sent)] == [
        S.COMPLETED,
        S.ONGOING,
        S.FAILED,
    ]


@pytest.mark.parametrize("deployed", [False, True], ids=["batch", "file-by-file"])
async def test_a_source_transfer_not_yet_ongoing_is_asked_again_later(
    pair: tuple[Librarian, Librarian], clock: Clock, deployed: bool
) -> None:
    source, destination = pair
    if deployed:
        await serve_instead(source, deployed_app(source, 405))
    sent = await stage_files(source, destination, {"early.dat": b"early"})
    async with source.app.sessions.begin() as session:
        await session.execute(update(OutgoingTransfer).values(status=S.INITIATED))

    result = await receive(destination.app)

    assert result.report.counts["callbacks_failed"] == 1
    [row] = await incoming(destination.app, sent)
    assert (row.callback_pending, row.next_callback_at) == (True, clock() + timedelta(seconds=30))
    async with source.app.sessions.begin() as session:
        await session.execute(update(OutgoingTransfer).values(status=S.STAGED))
    clock.advance(30)
    await receive(destination.app)
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED]


async def test_completions_reach_the_source_in_one_batch_call(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    counting = CountingApp(create_app(source.app))
    await serve_instead(source, counting)
    contents = {f"many/{n:02}.dat": bytes([n]) * 100 for n in range(40)}
    sent = await stage_files(source, destination, contents)

    result = await receive(destination.app)

    assert result.report.counts == counts(received=40, bytes=4000, callbacks_sent=40)
    assert counting.requests == Counter({BATCH_COMPLETE_PATH: 1})
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED] * 40
    assert len(await rows(source.app, RemoteInstance)) == 40


@pytest.mark.parametrize("answer", [404, 405])
async def test_a_source_without_batch_complete_is_told_file_by_file_for_the_whole_run(
    pair: tuple[Librarian, Librarian], answer: int
) -> None:
    source, destination = pair
    earlier = await stage_files(source, destination, {"earlier1.dat": b"e1", "earlier2.dat": b"e2"})
    await set_peer_port(destination.app, "source", closed_port())
    await receive(destination.app)  # received; callbacks deferred
    async with destination.app.sessions.begin() as session:
        await session.execute(update(IncomingTransfer).values(next_callback_at=None))
    later = await stage_files(source, destination, {"later.dat": b"later"})
    counting = CountingApp(deployed_app(source, answer))
    await serve_instead(source, counting)
    await set_peer_port(destination.app, "source", source.port)

    result = await receive(destination.app)  # due callbacks first, this run's at its end

    assert (result.report.problems, result.report.counts) == (
        [],
        counts(received=1, bytes=5, callbacks_sent=3),
    )
    assert counting.requests == Counter({BATCH_COMPLETE_PATH: 1, "/api/v2/clone/complete": 3})
    assert [row.status for row in await outgoing(source.app, earlier + later)] == [S.COMPLETED] * 3
    assert len(await rows(source.app, RemoteInstance)) == 3


async def test_a_batch_refused_as_a_whole_is_retried_later_without_a_fallback(
    pair: tuple[Librarian, Librarian], clock: Clock
) -> None:
    source, destination = pair
    sent = await stage_files(source, destination, {"a.dat": b"a", "b.dat": b"b"})
    await set_auth_level(source.app, "destination", AuthLevel.READONLY)
    counting = CountingApp(create_app(source.app))
    await serve_instead(source, counting)

    result = await receive(destination.app)

    assert result.report.counts == counts(
        received=2, bytes=2, callbacks_failed=2, callbacks_pending=2
    )
    assert "HTTP 401" in result.report.problems[0]
    assert counting.requests == Counter({BATCH_COMPLETE_PATH: 1})
    for row in await incoming(destination.app, sent):
        assert (row.callback_pending, row.next_callback_at) == (
            True,
            clock() + timedelta(seconds=30),
        )
    await set_auth_level(source.app, "destination", AuthLevel.CALLBACK)
    clock.advance(30)
    again = await receive(destination.app)
    assert again.report.counts == counts(callbacks_sent=2)
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED] * 2


async def set_auth_level(app: Context, username: str, level: AuthLevel) -> None:
    async with app.sessions.begin() as session:
        await session.execute(
            update(User).where(User.username == username).values(auth_level=level)
        )


async def test_an_unknown_source_keeps_its_callbacks_pending(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    sent = await stage_files(
        source, destination, {"orphan.dat": b"orphan", "orphan2.dat": b"orphan2"}
    )
    async with destination.app.sessions.begin() as session:
        await peers.remove_librarian(session, "source")

    result = await receive(destination.app)

    assert result.report.counts == counts(
        received=2, bytes=13, callbacks_failed=2, callbacks_pending=2
    )
    assert result.report.problems == [
        "callbacks to 'source' deferred (2 transfers): not a known librarian"
    ]
    assert [row.status for row in await incoming(destination.app, sent)] == [S.COMPLETED] * 2
    assert [row.callback_pending for row in await incoming(destination.app, sent)] == [True] * 2


async def test_a_transfer_without_a_source_transfer_needs_no_callback(
    pair: tuple[Librarian, Librarian],
) -> None:
    _, destination = pair
    disk = local_store(destination.store)
    directory = disk.make_staging_dir("manual")
    (directory / "manual.dat").write_bytes(b"by hand")
    async with destination.app.sessions.begin() as session:
        row = IncomingTransfer(
            status=S.STAGED,
            uploader="operator",
            source="operator",
            upload_name="manual.dat",
            transfer_size=7,
            transfer_checksum=checksum_of(b"by hand"),
            store_id=destination.store.id,
            staging_path=str(directory),
            store_path="manual.dat",
        )
        session.add(row)
    result = await receive(destination.app)

    assert result.report.counts == counts(received=1, bytes=7)
    [found] = await by_id(destination.app, IncomingTransfer, [row.id])
    assert (found.status, found.callback_pending) == (S.COMPLETED, False)
    assert not directory.exists()


async def test_a_pending_callback_is_sent_even_with_nothing_staged(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    sent = await stage_files(source, destination, {"x.dat": b"x"})
    await set_peer_port(destination.app, "source", closed_port())
    await receive(destination.app)
    await set_peer_port(destination.app, "source", source.port)
    async with destination.app.sessions.begin() as session:
        await session.execute(update(IncomingTransfer).values(next_callback_at=None))

    result = await receive(destination.app)

    assert result.report.counts == counts(callbacks_sent=1)
    assert [row.status for row in await outgoing(source.app, sent)] == [S.COMPLETED]


async def test_callbacks_of_earlier_runs_go_first_so_a_backlog_cannot_starve_them(
    pair: tuple[Librarian, Librarian],
) -> None:
    source, destination = pair
    earlier = await stage_files(source, destination, {"earlier.dat": b"earlier"})
    await set_peer_port(destination.app, "source", closed_port())
    await receive(destination.app)
    await set_peer_port(destination.app, "source", source.port)
    async with destination.app.sessions.begin() as session:
        await session.execute(update(IncomingTransfer).values(next_callback_at=None))
    size = receive_clone.BATCH_BYTES * 5 // 8  # one file a batch
    backlog = {f"backlog{n}.dat": os.urandom(size) for n in range(3)}
    await stage_files(source, destination, backlog)
    area, baseline = destination.store.store_path, files_below(destination.store.store_path)
    destination.app.monotonic = lambda: 10.0 * (files_below(area) - baseline)

    result = await receive(destination.app, soft_timeout=timedelta(seconds=5), concurrency=1)

    assert result.report.counts["received"] == 1  # the budget was spent by the backlog
    assert result.report.counts["callbacks_sent"] == 1
    assert [row.status for row in await outgoing(source.app, earlier)] == [S.COMPLETED]
