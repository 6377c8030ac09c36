"""consume_queue's run: batches queued while it runs start beside the ones in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

from e2e.network import (
    SOURCE_CONFIG,
    add_files,
    outgoing_by_file,
    run_tasks,
    wait_for_staged_bytes,
)
from librarians import librarian_pair

from librarian_async.enums import TransferStatus

S = TransferStatus
BIG = {f"big/{i:02d}.dat": bytes([i]) * (4 << 20) for i in range(40)}  # one 160 MiB batch


async def test_a_batch_queued_during_a_run_starts_before_the_batch_in_flight_ends(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        await add_files(source, BIG)
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")
        consuming = asyncio.create_task(run_tasks(source, SOURCE_CONFIG, "Queue consumer"))
        await wait_for_staged_bytes(dest, 8 << 20)  # the big batch's upload is under way

        await add_files(source, {"late.dat": b"queued while the big batch moves"})
        await run_tasks(source, SOURCE_CONFIG, "Clone sender")  # wakes the running consumer
        while (await outgoing_by_file(source))["late.dat"] != [S.STAGED]:
            assert not consuming.done(), "the run ended before it sent the late batch"
            await asyncio.sleep(0.01)
        big_when_late_staged = {
            s[-1] for n, s in (await outgoing_by_file(source)).items() if n in BIG
        }
        [consumed] = await consuming

    assert big_when_late_staged == {S.ONGOING}  # the late batch did not wait for the big one
    assert consumed.outcome == "ok"
    assert consumed.report.counts["batches_sent"] == 2
    assert consumed.report.counts["staged"] == len(BIG) + 1
