"""``POST /api/v2/upload?ids=12,13,14``: the bytes of incoming transfers (the ``http`` method).

A librarian_async extension (PROTOCOL §4); the wire format is
:class:`librarian_async.remote.schemas.UploadRequest`: the query ``ids`` names incoming
transfers, the body (``application/octet-stream``) is their files' bytes concatenated in
that order, and we split it by each transfer's size. ``Content-Length``, when sent, must be
the sum of the sizes.

* Who: READAPPEND, and each transfer must be the caller's (its source or uploader) unless
  the caller is an ADMIN; to anyone else it does not exist (404). Each must be INITIATED or
  ONGOING (406). Nothing is written before every check has passed.
* How: each file goes to a temporary sibling of its staging file (``staged_file``, confined
  to its store's staging area), hashed as it arrives with the algorithm of the transfer's
  checksum, and is renamed into place once its size and checksum match. The body is
  gathered into pieces of about :data:`PIECE_SIZE` bytes, each written and hashed in one
  worker-thread hop (a hop per network chunk would cost more than the writing).
* 200 ``{destination_transfer_ids, bytes}``: every file is staged and verified.
* 400 (malformed ids, a body shorter or longer than the sum of the sizes) and 422 (a
  checksum mismatch) answer ``{reason, suggested_remedy, destination_transfer_ids}``, naming
  the transfers whose bytes were not staged: none of them has a file at its staging name
  afterwards. Files verified before the failure stay.

No status changes here: the sender reports the files staged with ``checkin/update``. What
is recorded is each staged file's stat once verified (``verified_stat``), so that
receive_clone does not hash the same bytes again while the file is unchanged.
"""

# No ``from __future__ import annotations``: FastAPI must see the handler's annotations,
# which name a dependency local to ``router()``.

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Request
from starlette.requests import ClientDisconnect
from starlette.routing import NoMatchFound

from librarian_async.api.auth import Caller, may_change_incoming
from librarian_async.api.errors import FIX_REQUEST, TRY_AGAIN, ProtocolError, ProtocolRoute
from librarian_async.api.state import ApiState
from librarian_async.db import catalog, transfers
from librarian_async.db.models import IncomingTransfer, Store
from librarian_async.enums import AuthLevel
from librarian_async.errors import ChecksumError, StoreError
from librarian_async.remote.schemas import UploadRefusal, UploadRequest, UploadResponse
from librarian_async.storage.checksum import (
    cancel_and_wait,
    checksums_match,
    finish_copy,
    format_checksum,
    new_hasher,
    parse_checksum,
    remove_file_or_tree,
    run_interruptible,
    stat_fingerprint,
)
from librarian_async.storage.direct import (
    DIRECT_MIN_BYTES,
    DirectFile,
    create_direct,
    direct_buffers,
)
from librarian_async.storage.store import LocalStore, temporary_sibling

ROUTE_NAME = "upload"
PIECE_SIZE = 4 * 1024 * 1024
MAX_IDS = 10_000
SEND_AGAIN = "Check the sender's copies, then send these files again."


@dataclass(frozen=True)
class Target:
    """Where one transfer's bytes go, and what they must be."""

    transfer_id: int
    path: Path
    size: int
    checksum: str
    algorithm: str


def upload_url(request: Request) -> str | None:
    """Our upload endpoint as the caller of ``request`` reaches us (None if not mounted)."""
    try:
        return str(request.url_for(ROUTE_NAME))
    except NoMatchFound:
        return None


def router(api: ApiState) -> APIRouter:
    routes = APIRouter(route_class=ProtocolRoute, tags=["upload"])
    appender = api.auth.require(AuthLevel.READAPPEND)

    @routes.post("/upload", name=ROUTE_NAME)
    async def upload(
        http: Request, ids: str, caller: Annotated[Caller, Depends(appender)]
    ) -> UploadResponse:
        request = parse_request(ids)
        targets = await targets_of(api, caller, request.destination_transfer_ids)
        check_length(http, targets)
        return await receive(api, http, targets)

    return routes


def refusal(status: int, reason: str, remedy: str, ids: Sequence[int]) -> ProtocolError:
    body = UploadRefusal(reason=reason, suggested_remedy=remedy, destination_transfer_ids=ids)
    return ProtocolError(status, body)


# --- checks before any byte is written ------------------------------------------------------


def parse_request(ids: str) -> UploadRequest:
    try:
        request = UploadRequest.from_query(ids)
    except ValueError as error:
        raise refusal(400, str(error), FIX_REQUEST, []) from error
    if len(request.destination_transfer_ids) > MAX_IDS:
        raise refusal(400, f"more than {MAX_IDS} transfers in one upload", FIX_REQUEST, [])
    return request


async def targets_of(api: ApiState, caller: Caller, ids: Sequence[int]) -> list[Target]:
    """The staging files of the caller's uploadable transfers ``ids``; 404/406 otherwise."""
    async with api.context.sessions() as session:
        rows = await transfers.incoming_by_ids(session, ids)
        stores = {store.id: store for store in await catalog.all_stores(session)}
    check_rows(caller, ids, rows)
    ordered = [rows[i] for i in ids]
    return await asyncio.to_thread(resolve_targets, api.open_store, stores, ordered)


def check_rows(caller: Caller, ids: Sequence[int], rows: Mapping[int, IncomingTransfer]) -> None:
    unknown = [i for i in ids if i not in rows or not may_change_incoming(caller, rows[i])]
    if unknown:
        reason = f"no incoming transfer {_listed(unknown)} from {caller.username!r}"
        raise refusal(404, reason, "Check the transfer ids.", unknown)
    closed = [i for i in ids if rows[i].status not in transfers.TAKING_BYTES]
    if closed:
        states = ", ".join(f"{i} is {rows[i].status.name}" for i in closed[:3])
        reason = f"only INITIATED or ONGOING transfers take bytes: {states}"
        remedy = "Check the transfers' status (checkin/status)."
        raise refusal(406, reason, remedy, closed)


def resolve_targets(
    open_store: Callable[[Store], LocalStore],
    stores: Mapping[int, Store],
    rows: Sequence[IncomingTransfer],
) -> list[Target]:
    """Each row's target; the transfers of one batch share their staging directory, whose
    existence and folders are checked once."""
    batch = _Batch(open_store, stores, functools.cache(os.path.isdir), set())
    return [_target(batch, row) for row in rows]


@dataclass(frozen=True)
class _Batch:
    """What the targets of one request share: their stores, and what was checked on disk."""

    open_store: Callable[[Store], LocalStore]
    stores: Mapping[int, Store]
    is_dir: Callable[[str], bool]
    plain_dirs: set[str]  # folders found not to be links (LocalStore.resolve_in_staging)


def _target(batch: _Batch, row: IncomingTransfer) -> Target:
    """The transfer's staging file, confined to its store's staging area; 406 if it has none."""
    store = batch.stores.get(row.store_id or 0)
    staged = transfers.staged_file(row)
    if store is None or staged is None or not batch.is_dir(row.staging_path or ""):
        raise _cannot_take_bytes(row, "its staging directory is gone")
    try:
        local = batch.open_store(store)
        relative = staged.relative_to(local.staging_path).as_posix()
        path = local.resolve_in_staging(relative, batch.plain_dirs)
        algorithm = parse_checksum(row.transfer_checksum)[0]
    except (ValueError, StoreError, ChecksumError) as error:
        raise _cannot_take_bytes(row, str(error)) from error
    return Target(row.id, path, row.transfer_size, row.transfer_checksum, algorithm)


def _cannot_take_bytes(row: IncomingTransfer, problem: str) -> ProtocolError:
    reason = f"transfer {row.id} cannot take bytes: {problem}"
    return refusal(406, reason, "Stage the file again.", [row.id])


def check_length(http: Request, targets: Sequence[Target]) -> None:
    """A declared body length must be the sum of the sizes (else nothing would line up)."""
    declared = http.headers.get("content-length")
    total = sum(target.size for target in targets)
    if declared is not None and declared.strip() != str(total):
        reason = f"the body has {declared.strip()} bytes; the files of the transfers {total}"
        raise refusal(400, reason, FIX_REQUEST, [target.transfer_id for target in targets])


# --- writing -------------------------------------------------------------------------------


async def receive(api: ApiState, http: Request, targets: Sequence[Target]) -> UploadResponse:
    """Write the body into the staging files; the answer says which were staged. The stat
    of every file verified and staged is recorded, also when later ones fail (a request
    cancelled meanwhile records nothing: receive_clone then hashes its files itself)."""
    writer = StagingWriter(targets)
    try:
        await write_body(http, writer)
    except OSError as error:
        failed_at = writer.current_id()
        await run_interruptible(writer.fail_rest)
        await record_verified(api, writer.verified)
        reason = f"cannot write the staging file of transfer {failed_at}: {error}"
        raise refusal(500, reason, TRY_AGAIN, writer.failed_ids()) from error
    except BaseException:
        await run_interruptible(writer.fail_rest)
        raise
    await record_verified(api, writer.verified)
    return outcome(writer)


async def record_verified(api: ApiState, stats: Mapping[int, str]) -> None:
    async with api.context.sessions.begin() as session:
        await transfers.record_verified_stats(session, stats)


async def write_body(http: Request, writer: "StagingWriter") -> None:
    """Feed the body to ``writer`` in pieces of about PIECE_SIZE; a disconnect ends it.

    A piece is the list of the network chunks as they came: the worker thread writes and
    hashes them one by one (each still in the CPU cache), and the event loop never copies
    the bytes into a bigger buffer. While the thread writes one piece, the loop gathers the
    next (the sender is not stalled by our disk); pieces are written in order."""
    chunks: list[bytes] = []
    size = 0
    writing: asyncio.Task[None] | None = None
    try:
        async for chunk in http.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size >= PIECE_SIZE:
                if writing is not None:
                    await writing
                    if writer.surplus:
                        break
                writing = asyncio.create_task(run_interruptible(writer.write, chunks))
                chunks, size = [], 0
    except ClientDisconnect:
        pass  # what arrived is kept; the files it does not complete count as missing
    except BaseException:
        if writing is not None:
            await cancel_and_wait(writing)  # the cleanup that follows needs its thread ended
        raise
    if writing is not None:
        await writing
    await run_interruptible(writer.write, chunks)
    await run_interruptible(writer.finish)


def outcome(writer: "StagingWriter") -> UploadResponse:
    expected = sum(target.size for target in writer.targets)
    if writer.surplus:
        reason = f"the body is longer than the {expected} bytes of the transfers' files"
        raise refusal(400, reason, FIX_REQUEST, writer.failed_ids())
    if writer.missing:
        reason = f"the body ended after {writer.received} of {expected} bytes"
        raise refusal(400, reason, SEND_AGAIN, writer.failed_ids())
    if writer.mismatched:
        found = "; ".join(
            f"transfer {target.transfer_id} has {checksum}, expected {target.checksum}"
            for target, checksum in writer.mismatched[:3]
        )
        raise refusal(422, f"checksum mismatch: {found}", SEND_AGAIN, writer.failed_ids())
    ids = [target.transfer_id for target in writer.targets]
    return UploadResponse(destination_transfer_ids=ids, bytes=writer.received)


class StagingWriter:
    """Splits the body into the targets' files, in order (blocking calls, one at a time).

    ``received`` counts the bytes that went into files, ``surplus`` those past the last
    file; ``mismatched`` and ``missing`` are the targets whose bytes were not staged.
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.received = 0
        self.surplus = 0
        self.mismatched: list[tuple[Target, str]] = []
        self.missing: list[Target] = []
        self.verified: dict[int, str] = {}  # transfer id -> stat of its staged file
        self._index = 0
        self._file: StagingFile | None = None
        self._direct_buffers: tuple[memoryview, memoryview] | None = None  # a file at a time
        self._folders: set[Path] = set()  # made already: one mkdir each, not one per file

    def write(self, piece: Sequence[bytes], *, stop: threading.Event | None = None) -> None:
        """Write the chunks of ``piece`` in order, across as many files as they span."""
        for chunk in piece:
            self._write_chunk(memoryview(chunk))

    def _write_chunk(self, view: memoryview) -> None:
        while True:
            current = self._settle()
            if not view:
                return
            if current is None:
                self.surplus += len(view)
                return
            count = min(len(view), current.left)
            current.write(view[:count])
            self.received += count
            view = view[count:]

    def finish(self, *, stop: threading.Event | None = None) -> None:
        """The body is over: whatever is not complete is missing; a surplus spoils all."""
        self._settle()
        self.fail_rest()
        if self.surplus:
            self.verified.clear()
            for target in self.targets:
                remove_file_or_tree(target.path)

    def fail_rest(self, *, stop: threading.Event | None = None) -> None:
        """Drop the file being written and every later one, with their staging files."""
        if self._file is not None:
            self._file.discard()
            self._file = None
        for target in self.targets[self._index :]:
            remove_file_or_tree(target.path)
            self.missing.append(target)
        self._index = len(self.targets)

    def current_id(self) -> int | None:
        return self.targets[self._index].transfer_id if self._index < len(self.targets) else None

    def failed_ids(self) -> list[int]:
        if self.surplus:
            return [target.transfer_id for target in self.targets]
        failed = {target.transfer_id for target, _ in self.mismatched}
        failed.update(target.transfer_id for target in self.missing)
        return [target.transfer_id for target in self.targets if target.transfer_id in failed]

    def _settle(self) -> "StagingFile | None":
        """Close every complete file (empty ones at once); the one to write to, if any."""
        while self._index < len(self.targets):
            if self._file is None:
                self._file = self._open(self.targets[self._index])
            if self._file.left:
                return self._file
            found = self._file.commit()
            if found is None:
                self._record_verified(self._file.target)
            else:
                self.mismatched.append((self._file.target, found))
            self._file = None
            self._index += 1
        return None

    def _record_verified(self, target: Target) -> None:
        fingerprint = stat_fingerprint(target.path)
        if fingerprint is not None:
            self.verified[target.transfer_id] = fingerprint

    def _open(self, target: Target) -> "StagingFile":
        if target.path.parent not in self._folders:
            target.path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.path.parent)
        if target.size < DIRECT_MIN_BYTES:
            return StagingFile(target, None)
        if self._direct_buffers is None:
            # The request's own: its pieces are written by whichever worker thread is free.
            self._direct_buffers = direct_buffers(reuse=False)
        return StagingFile(target, self._direct_buffers)


class StagingFile:
    """One file being received: a temporary sibling of its staging file, hashed as it grows.

    With ``direct_buffers`` it is written around the page cache where the filesystem allows
    (:mod:`librarian_async.storage.direct`): receive_clone moves it into the store without
    reading it again, so caching its pages would only push other data out.
    """

    def __init__(
        self, target: Target, direct_buffers: tuple[memoryview, memoryview] | None
    ) -> None:
        self.target = target
        self.left = target.size
        self.temporary = temporary_sibling(target.path)  # its folder exists (StagingWriter)
        self._hasher = new_hasher(target.algorithm)
        self._file = _create(self.temporary, direct_buffers, target.size)

    def write(self, data: memoryview) -> None:
        self._file.write(data)
        self._hasher.update(data)
        self.left -= len(data)

    def commit(self) -> str | None:
        """Rename into place when the checksum matches; else drop it and return what it had.

        A mismatch also removes what an earlier attempt left at the staging name.
        """
        if isinstance(self._file, DirectFile):
            self._file.finish()
        else:
            finish_copy(self._file, self.target.size, sync=False)  # receive_clone syncs it
        self._file.close()
        found = format_checksum(self.target.algorithm, self._hasher.hexdigest())
        if checksums_match(found, self.target.checksum):
            os.replace(self.temporary, self.target.path)
            return None
        self.discard()
        remove_file_or_tree(self.target.path)
        return found

    def discard(self) -> None:
        self._file.close()
        remove_file_or_tree(self.temporary)


def _create(
    path: Path, direct_buffers: tuple[memoryview, memoryview] | None, size: int
) -> DirectFile | BinaryIO:
    """A new file of ``size`` bytes at ``path``: direct with buffers where the filesystem
    allows, else cached."""
    if direct_buffers is not None and (descriptor := create_direct(path)) is not None:
        return DirectFile(descriptor, direct_buffers, size)
    return open(path, "xb")  # closed by StagingFile.commit or discard


def _listed(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
