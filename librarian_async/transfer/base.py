"""What every transfer method is: how a sender moves a batch's bytes into a peer's staging.

A receiving store advertises methods with their fields (PROTOCOL §4), e.g.
``{"http": {"url": ...}, "local": {"hostnames": [...]}, "rsync": {"hostname": ...}}``.
The sender takes the first advertised method whose :meth:`TransferMethod.valid` says it can
work from here (really checked, never assumed), and records it on the queued batch.
``consume_queue`` later calls :meth:`TransferMethod.send` with the batch's moves; a method
either moves every file of the batch or raises :class:`TransferError` (a retry moves the
whole batch again, so sending must be safe to repeat: it overwrites what a failed attempt
left in staging).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from librarian_async.remote.client import PeerClient

T = TypeVar("T")
Fields = Mapping[str, Any]
GROUPS_AT_ONCE = 2
"""Groups of one batch moved at the same time (see :func:`move_groups`)."""
VerifiedStats = dict[int, str]
"""Staged files whose bytes the sender hashed against their checksum as it wrote them: the
peer's transfer id -> the file's ``stat_fingerprint`` once in place. Sent with the STAGED
update (``checkin/update``'s ``verified_stats``), so that the receiver does not hash them
again while they are unchanged."""


@dataclass(frozen=True)
class FileMove:
    """One file of a batch: our copy at ``source``, the peer's ``staging_location``."""

    source: Path
    staging_location: str
    size: int
    checksum: str
    source_transfer_id: int
    destination_transfer_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "staging_location": self.staging_location,
            "size": self.size,
            "checksum": self.checksum,
            "source_transfer_id": self.source_transfer_id,
            "destination_transfer_id": self.destination_transfer_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileMove:
        return cls(
            source=Path(data["source"]),
            staging_location=str(data["staging_location"]),
            size=int(data["size"]),
            checksum=str(data["checksum"]),
            source_transfer_id=int(data["source_transfer_id"]),
            destination_transfer_id=int(data["destination_transfer_id"]),
        )


class TransferMethod(Protocol):
    """A way to move bytes into a peer's staging area."""

    name: str

    def valid(self, fields: Fields) -> bool:
        """True when this method, with the receiver's advertised ``fields``, can work from
        where we run (e.g. ``local`` only when our hostname is listed)."""
        ...

    async def send(
        self, fields: Fields, moves: Sequence[FileMove], peer: PeerClient
    ) -> VerifiedStats:
        """Move every file to its staging location, or raise TransferError; the files it
        verified itself (none where the receiver verifies). Never blocks the event loop;
        cancellation stops it within one chunk and leaves no partial file at a
        ``staging_location`` (a temporary sibling, if any, is removed)."""
        ...


def group_moves(moves: Sequence[FileMove], max_files: int, max_bytes: int) -> list[list[FileMove]]:
    """Consecutive groups of at most ``max_files`` files and about ``max_bytes`` bytes.

    A group is one unit of work (one worker-thread hop, one upload request): many small files
    share one, so that the fixed cost per unit does not dominate; a file bigger than
    ``max_bytes`` goes alone. The order of ``moves`` is kept.
    """
    groups: list[list[FileMove]] = []
    current: list[FileMove] = []
    size = 0
    for move in moves:
        if current and (len(current) >= max_files or size + move.size > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(move)
        size += move.size
    if current:
        groups.append(current)
    return groups


async def move_groups(
    groups: Sequence[list[FileMove]],
    move: Callable[[list[FileMove]], Awaitable[T]],
    at_once: int = GROUPS_AT_ONCE,
) -> list[T]:
    """``move(group)`` for every group, ``at_once`` of them at a time; their results in order.

    Moving a batch is CPU-bound (its bytes are hashed as they go), so a batch moved alone,
    as the first and last of a queue are, would otherwise keep one core busy of several. The
    first failure cancels the other groups (each waits for its worker thread) and is raised
    as it is, not wrapped in an ExceptionGroup.
    """
    limit = asyncio.Semaphore(at_once)

    async def limited(group: list[FileMove]) -> T:
        async with limit:
            return await move(group)

    try:
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(limited(group)) for group in groups]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in running]
