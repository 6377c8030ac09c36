"""move_groups: a batch's groups moved a few at a time; the first failure stops the rest."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from librarian_async.errors import TransferError
from librarian_async.storage.checksum import run_interruptible
from librarian_async.transfer.base import FileMove, move_groups


def group(*ids: int) -> list[FileMove]:
    return [FileMove(Path(f"/s/{i}"), f"/t/{i}", 1, "md5:0", i, 100 + i) for i in ids]


async def test_groups_move_at_most_at_once_and_results_keep_their_order() -> None:
    running = most = 0

    async def move(moves: list[FileMove]) -> list[int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (4 - moves[0].source_transfer_id))  # later ones end first
        running -= 1
        return [m.destination_transfer_id for m in moves]

    groups = [group(1, 2), group(3), group(4), group(5)]
    assert await move_groups(groups, move, at_once=2) == [[101, 102], [103], [104], [105]]
    assert most == 2


async def test_the_first_failure_is_raised_as_is_and_stops_the_other_groups() -> None:
    stopped = threading.Event()
    started = threading.Event()

    def copy_until_stopped(moves: list[FileMove], *, stop: threading.Event) -> None:
        started.set()
        stop.wait(timeout=30)
        if stop.is_set():
            stopped.set()

    async def move(moves: list[FileMove]) -> None:
        if moves[0].source_transfer_id == 1:
            await run_interruptible(copy_until_stopped, moves)
            return
        await asyncio.to_thread(started.wait, 30)
        raise TransferError("local copy of /s/2 failed: disk full")

    with pytest.raises(TransferError, match="disk full"):  # not an ExceptionGroup
        await move_groups([group(1), group(2)], move)
    assert stopped.is_set()  # the other group's thread was told to stop and had returned
