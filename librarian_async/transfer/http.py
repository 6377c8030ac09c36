"""The ``http`` method (a librarian_async extension): stream the bytes to the receiver's API.

Needs no shared filesystem and no SSH, only the peer's HTTP endpoint that it advertises as
``{"url": ...}``. A batch is sent as a few upload requests (at most :data:`REQUEST_FILES`
files and about :data:`REQUEST_BYTES` bytes each; a big file goes alone) whose body is the
files' bytes concatenated (wire format: :class:`librarian_async.remote.schemas.UploadRequest`).
The receiver splits the body by size and checks every size and checksum as the bytes
arrive, so a corrupt copy of ours is refused there. Files are read in pieces of
:data:`PIECE_SIZE` bytes in a worker thread; a piece spans as many small files as fit, so
10,000 small files do not cost 10,000 thread hops. Only regular files can be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from librarian_async.errors import PeerError, PeerRefusedError, TransferError
from librarian_async.remote.client import PeerClient
from librarian_async.storage.checksum import Interrupted, cancel_and_wait, run_interruptible
from librarian_async.transfer.base import Fields, FileMove, VerifiedStats, group_moves

REQUEST_FILES = 256
REQUEST_BYTES = 64 * 1024 * 1024
PIECE_SIZE = 4 * 1024 * 1024


class HttpMethod:
    """Upload to the receiver's ``upload`` endpoint over HTTP(S)."""

    name = "http"

    def valid(self, fields: Fields) -> bool:
        url = fields.get("url")
        if not isinstance(url, str):
            return False
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)

    async def send(
        self, fields: Fields, moves: Sequence[FileMove], peer: PeerClient
    ) -> VerifiedStats:
        url = str(fields["url"])
        for group in group_moves(moves, REQUEST_FILES, REQUEST_BYTES):
            await upload_group(peer, url, group)
        return {}  # the receiver verified every byte as it arrived


async def upload_group(peer: PeerClient, url: str, moves: Sequence[FileMove]) -> None:
    """One upload request for ``moves``; TransferError if the peer does not take them all."""
    ids = [move.destination_transfer_id for move in moves]
    total = sum(move.size for move in moves)
    what = f"http upload of {len(ids)} files (transfers {_span(ids)}) to {url}"
    try:
        async with contextlib.aclosing(read_pieces(moves)) as pieces:
            reply = await peer.upload(url, ids, pieces, total)
    except PeerError as error:
        raise TransferError(f"{what} failed: {_problem(error)}") from error
    if reply.destination_transfer_ids != ids or reply.bytes != total:
        got = f"{reply.bytes} bytes for {_span(reply.destination_transfer_ids)}"
        raise TransferError(f"{what}: the peer acknowledged {got}, not {total} bytes")


def _span(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids)) if len(ids) <= 3 else f"{ids[0]}, ..., {ids[-1]}"


def _problem(error: PeerError) -> str:
    """The peer's message, with the transfers it names as bad (upload refusals list them)."""
    if isinstance(error, PeerRefusedError) and isinstance(error.body, dict):
        bad = error.body.get("destination_transfer_ids")
        if isinstance(bad, list) and bad:
            return f"{error} (refused transfers: {_span(bad)})"
    return str(error)


async def read_pieces(moves: Sequence[FileMove]) -> AsyncGenerator[bytes, None]:
    """The concatenated bytes of ``moves``, read a piece per worker-thread hop; the next
    piece is read while this one is sent. A piece's parts (one per file it spans) are sent
    as they are, never joined into one copy."""
    reader = ConcatenatedReader(moves)

    def next_piece() -> asyncio.Future[list[bytes]]:
        return asyncio.ensure_future(run_interruptible(reader.read_piece, PIECE_SIZE))

    reading = next_piece()
    try:
        while parts := await reading:
            reading = next_piece()
            for part in parts:
                yield part
    finally:
        await cancel_and_wait(reading)  # its thread is done before the files are closed
        reader.close()


class ConcatenatedReader:
    """Reads the files of ``moves`` one after the other as one stream (blocking calls).

    Each file must have exactly its declared size: the receiver splits the stream by size,
    so a file that changed since it was catalogued is an error, not a misaligned upload.
    """

    def __init__(self, moves: Sequence[FileMove]) -> None:
        self._moves = list(moves)
        self._index = 0
        self._file: BinaryIO | None = None
        self._left = 0

    def read_piece(self, size: int, *, stop: threading.Event | None = None) -> list[bytes]:
        """Up to ``size`` bytes, in one part per file they come from; none at the end."""
        parts: list[bytes] = []
        wanted = size
        while wanted > 0 and self._index < len(self._moves):
            if stop is not None and stop.is_set():
                raise Interrupted
            reader = self._file or self._open()
            if self._left:
                part = self._read(reader, min(wanted, self._left))
                parts.append(part)
                wanted -= len(part)
            if not self._left:
                self._next()
        return parts

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> BinaryIO:
        move = self._moves[self._index]
        if Path(move.source).is_dir():
            raise TransferError(f"http cannot send {move.source}: it is a directory")
        try:
            self._file = open(move.source, "rb")  # noqa: SIM115 - kept open across pieces
        except OSError as error:
            raise TransferError(f"http cannot read {move.source}: {error}") from error
        self._left = move.size
        return self._file

    def _read(self, reader: BinaryIO, count: int) -> bytes:
        move = self._moves[self._index]
        try:
            part = reader.read(count)
        except OSError as error:
            raise TransferError(f"http cannot read {move.source}: {error}") from error
        if not part:
            got = move.size - self._left
            raise TransferError(f"{move.source} has {got} bytes, expected {move.size}")
        self._left -= len(part)
        return part

    def _next(self) -> None:
        """Close the current file, which must end here, and move on to the next one."""
        move = self._moves[self._index]
        extra = self._file.read(1) if self._file is not None else b""
        self.close()
        if extra:
            raise TransferError(f"{move.source} is longer than its {move.size} bytes")
        self._index += 1
