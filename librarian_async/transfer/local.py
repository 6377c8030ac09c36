"""The ``local`` method: the receiver's staging area is a filesystem this machine can write.

Only valid when the receiver lists our hostname (``socket.gethostname()`` or its FQDN): then
its staging paths name the same places here. Each file is copied to a temporary sibling of
its staging location, checked for its catalogued size, then renamed over the target, so a
staging location holds either nothing new or a whole file. Many small files are copied per
worker-thread hop: one hop per 4 KiB file would cost more than the copy.

The bytes are verified once, where it matters: the receiver hashes every staged file
against the checksum before it ingests it, and a mismatch fails the transfer on both sides
with the reason. A second hash here would double the CPU of every transfer (md5 runs at
about the speed of the copy itself) and add no safety at the destination. No fsync either:
the receiver fsyncs the staged bytes when it commits them to its store; each copy only
starts its writeback, so the disk writes while the next files are copied.
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
    copy_file_sync,
    parse_checksum,
    remove_file_or_tree,
    run_interruptible,
)
from librarian_async.storage.store import temporary_sibling
from librarian_async.transfer.base import Fields, FileMove, group_moves

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

    async def send(self, fields: Fields, moves: Sequence[FileMove], peer: PeerClient) -> None:
        for group in group_moves(moves, GROUP_FILES, GROUP_BYTES):
            await run_interruptible(copy_group, group)


def copy_group(moves: Sequence[FileMove], *, stop: threading.Event | None = None) -> None:
    """Copy each file in the calling thread; ``stop`` interrupts between chunks."""
    for move in moves:
        copy_move(move, stop)


def copy_move(move: FileMove, stop: threading.Event | None) -> None:
    """Copy one file to its staging location, or raise TransferError (nothing left behind)."""
    target = Path(move.staging_location)
    try:
        parse_checksum(move.checksum)  # a malformed checksum fails here, not at the peer
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_sibling(target)
        try:
            _require_size(move, _copy(move, temporary, stop))
            _replace(temporary, target)
        finally:
            remove_file_or_tree(temporary)
    except (OSError, ChecksumError) as error:
        message = f"local copy of {move.source} to {target} failed: {error}"
        raise TransferError(message) from error


def _copy(move: FileMove, target: Path, stop: threading.Event | None) -> int:
    """Copy ``move.source`` to the new path ``target``; the bytes copied."""
    if move.source.is_dir():  # a tree is checked here: its checksum is over its whole listing
        algorithm = parse_checksum(move.checksum)[0]
        copied = copy_and_hash_sync(move.source, target, algorithm, stop)
        _require_checksum(move, copied)
        return copied.size
    return copy_file_sync(move.source, target, stop)


def _require_size(move: FileMove, size: int) -> None:
    if size != move.size:
        raise ChecksumError(f"the copy has {size} bytes, expected {move.size}")


def _require_checksum(move: FileMove, copied: FileDigest) -> None:
    if copied.size != move.size or not checksums_match(copied.checksum, move.checksum):
        found = f"{copied.checksum} ({copied.size} bytes)"
        raise ChecksumError(f"the copy has {found}, expected {move.checksum} ({move.size} bytes)")


def _replace(ready: Path, target: Path) -> None:
    """Put ``ready`` at ``target``, replacing what a failed earlier attempt left there."""
    if target.is_dir() and not target.is_symlink():
        remove_file_or_tree(target)
    os.replace(ready, target)
