"""The ``local`` method: the receiver's staging area is a filesystem this machine can write.

Only valid when the receiver lists our hostname (``socket.gethostname()`` or its FQDN): then
its staging paths name the same places here. Each file is copied to a temporary sibling of
its staging location, checked, then renamed over the target, so a staging location holds
either nothing new or a whole file. Many small files are copied per worker-thread hop: one
hop per 4 KiB file would cost more than the copy.

The bytes are hashed once, here, as they are copied (big files are written around the page
cache: :mod:`librarian_async.storage.direct`): a copy whose size or checksum does not match
the transfer fails at once and leaves nothing staged. Each staged file's stat is returned
(:data:`~librarian_async.transfer.base.VerifiedStats`) and sent with the STAGED update, so
the receiver ingests the file without reading it again while it is unchanged (any write,
replacement or touch changes its ctime, and then the receiver hashes it itself). This is
the trust the receiver gives the http method's bytes, which are hashed in memory before they
are written; hashing here instead of at the receiver also means the receiver never reads
back, from the disk, bytes that were never in its cache. No fsync: the receiver makes the
staged files durable when it commits them to its store.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

from librarian_async.errors import ChecksumError, TransferError
from librarian_async.remote.client import PeerClient
from librarian_async.storage.checksum import (
    FileDigest,
    checksums_match,
    copy_and_hash_sync,
    parse_checksum,
    remove_file_or_tree,
    run_interruptible,
    stat_fingerprint,
)
from librarian_async.storage.store import temporary_sibling
from librarian_async.transfer.base import (
    Fields,
    FileMove,
    VerifiedStats,
    group_moves,
    move_groups,
)

GROUP_FILES = 256
GROUP_BYTES = 64 * 1024 * 1024


@functools.cache
def this_host_names() -> frozenset[str]:
    """This machine's names, lowercased: its hostname and FQDN (DNS is asked only once)."""
    return frozenset(name.lower() for name in (socket.gethostname(), socket.getfqdn()) if name)


class LocalMethod:
    """Copy into the receiver's staging area through the filesystem."""

    name = "local"

    def valid(self, fields: Fields) -> bool:
        listed = fields.get("hostnames")
        if not isinstance(listed, list):
            return False
        names = {name.lower() for name in listed if isinstance(name, str)}
        return not names.isdisjoint(this_host_names())

    async def send(
        self, fields: Fields, moves: Sequence[FileMove], peer: PeerClient
    ) -> VerifiedStats:
        groups = group_moves(moves, GROUP_FILES, GROUP_BYTES)
        copied = await move_groups(groups, functools.partial(run_interruptible, copy_group))
        return {transfer: stat for group in copied for transfer, stat in group.items()}


def copy_group(moves: Sequence[FileMove], *, stop: threading.Event | None = None) -> VerifiedStats:
    """Copy each file in the calling thread; ``stop`` interrupts between chunks."""
    verified: VerifiedStats = {}
    for move in moves:
        fingerprint = copy_move(move, stop)
        if fingerprint is not None:
            verified[move.destination_transfer_id] = fingerprint
    return verified


def copy_move(move: FileMove, stop: threading.Event | None) -> str | None:
    """Copy and verify one file at its staging location, or raise TransferError (nothing left
    behind); the staged file's stat fingerprint (None for a tree: the receiver hashes it)."""
    target = Path(move.staging_location)
    try:
        algorithm = parse_checksum(move.checksum)[0]  # malformed: fails here, not at the peer
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_sibling(target)
        try:
            copied = copy_and_hash_sync(move.source, temporary, algorithm, stop, sync=False)
            _require_checksum(move, copied)
            _replace(temporary, target)
        finally:
            remove_file_or_tree(temporary)
        return stat_fingerprint(target)
    except (OSError, ChecksumError) as error:
        message = f"local copy of {move.source} to {target} failed: {error}"
        raise TransferError(message) from error


def _require_checksum(move: FileMove, copied: FileDigest) -> None:
    if copied.size != move.size:
        raise ChecksumError(f"the copy has {copied.size} bytes, expected {move.size}")
    if not checksums_match(copied.checksum, move.checksum):
        raise ChecksumError(f"the copy has {copied.checksum}, expected {move.checksum}")


def _replace(ready: Path, target: Path) -> None:
    """Put ``ready`` at ``target``, replacing what a failed earlier attempt left there."""
    if target.is_dir() and not target.is_symlink():
        remove_file_or_tree(target)
    os.replace(ready, target)
