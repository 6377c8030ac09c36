"""Staging incoming clones: choose a store, make staging directories, create the transfers.

The order keeps the database out of file I/O: a short read (stores, bytes already promised),
then the disk (free space, one fresh directory for the request's transfers), then one short
transaction that checks the batch against the catalogue and live transfers and either
creates every transfer or none. Directories of a refused or failed request are removed
again.

The transfers of a request share their staging directory (a directory per transfer made
and removed again cost about a millisecond per file on ext4, more than the rest of staging);
items whose upload names would collide there (the same name twice, or a name that is
another's parent directory) get a directory of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from librarian_async.api.auth import Caller
from librarian_async.api.providers import advertised_providers
from librarian_async.api.stage_rules import (
    StagingRefused,
    check_request,
    classify,
    refusal_of,
)
from librarian_async.api.state import ApiState
from librarian_async.api.unstaging import unstage
from librarian_async.db import catalog, transfers
from librarian_async.db.models import IncomingTransfer, Store
from librarian_async.db.transfers import NewIncoming
from librarian_async.enums import TransferStatus
from librarian_async.errors import PathEscapeError, StoreError
from librarian_async.remote.schemas import Providers, StagedUpload, UploadItem
from librarian_async.storage.checksum import remove_file_or_tree
from librarian_async.storage.store import LocalStore

SUPERSEDED = "superseded: the sender asked to stage the same file again"


@dataclass(frozen=True)
class StagingRequest:
    source: str
    total_size: int
    items: Sequence[UploadItem]
    accepts_providers: Sequence[str] | None
    upload_url: str | None = None  # our upload endpoint as the sender reaches it (``http``)


@dataclass(frozen=True)
class Placed:
    """Where one item goes: its staging directory, and ``upload_name`` inside it."""

    directory: Path
    target: Path


@dataclass(frozen=True)
class Staged:
    """A batch staged on ``store_name``: where each file goes and how it may get there."""

    store_name: str
    available_bytes: int
    uploads: list[StagedUpload]
    providers: Providers


async def stage_batch(api: ApiState, caller: Caller, request: StagingRequest) -> Staged:
    """Create one INITIATED incoming transfer per item, or raise StagingRefused.

    Requests are staged one at a time in this process, so that the space promised to one
    batch and its live-transfer check are seen by the next.
    """
    check_request(request.total_size, request.items)
    async with api.staging_lock:
        store, placed, rows, free = await _stage_locked(api, caller, request)
    uploads = [
        staged_upload(item, where, row)
        for item, where, row in zip(request.items, placed, rows, strict=True)
    ]
    providers = advertised_providers(
        store.transfer_methods, request.accepts_providers, request.upload_url
    )
    return Staged(store.name, free, uploads, providers)


async def _stage_locked(
    api: ApiState, caller: Caller, request: StagingRequest
) -> tuple[Store, list[Placed], list[IncomingTransfer], int]:
    needed = max(request.total_size, sum(item.upload_size for item in request.items))
    store, local, free = await choose_store(api, needed, request.items)
    placed = await asyncio.to_thread(make_directories, local, request)
    directories = [where.directory for where in placed]
    try:
        rows = await create_or_refuse(api, caller, request, store, directories)
    except BaseException:
        await asyncio.to_thread(_remove_all, directories)
        raise
    return store, placed, rows, free


# --- the store ----------------------------------------------------------------------------


async def choose_store(
    api: ApiState, needed: int, items: Sequence[UploadItem]
) -> tuple[Store, LocalStore, int]:
    """The first ingestable, enabled, available store with more than ``needed`` bytes free,
    counting bytes already promised to live transfers; its free space. 413 if none."""
    async with api.context.sessions() as session:
        stores = [s for s in await catalog.all_stores(session) if s.ingestable and s.enabled]
        promised = await transfers.staged_bytes_by_store(session)
    candidates = [(store, api.open_store(store)) for store in sorted(stores, key=lambda s: s.id)]
    chosen = await asyncio.to_thread(_first_with_room, candidates, promised, needed)
    if chosen is None:
        raise StagingRefused(
            413,
            f"no ingestable store has more than {needed} bytes free",
            "Send a smaller batch, or try again once space has been freed.",
            [item.source_transfer_id for item in items],
        )
    return chosen


def _first_with_room(
    candidates: Sequence[tuple[Store, LocalStore]], promised: dict[int, int], needed: int
) -> tuple[Store, LocalStore, int] | None:
    for store, local in candidates:
        if not local.available:
            continue
        free = local.free_space() - promised.get(store.id, 0)
        if free > needed:
            return store, local, free
    return None


# --- the disk -----------------------------------------------------------------------------


def make_directories(local: LocalStore, request: StagingRequest) -> list[Placed]:
    """Where each item goes: a fresh staging directory, shared by items whose names cannot
    collide, with the parents of each upload name made inside it (each folder checked and
    made once)."""
    made: list[Path] = []
    try:
        groups = _collision_free_groups([item.upload_name for item in request.items])
        for _ in range(max(groups, default=-1) + 1):
            made.append(local.make_staging_dir(f"{request.source}-{_first_id(request)}"))
        plain_dirs: set[str] = set()
        placed = [
            Placed(made[group], staging_target(local, made[group], item, plain_dirs))
            for group, item in zip(groups, request.items, strict=True)
        ]
        for folder in dict.fromkeys(where.target.parent for where in placed):
            folder.mkdir(parents=True, exist_ok=True)
    except BaseException as error:
        _remove_all(made)
        if isinstance(error, PathEscapeError):
            raise StagingRefused(400, str(error), "Fix the request; see the reason.") from error
        if isinstance(error, StoreError):
            raise StagingRefused(413, str(error), "Try again later.") from error
        raise
    return placed


def _first_id(request: StagingRequest) -> int:
    return request.items[0].source_transfer_id if request.items else 0


def _collision_free_groups(names: Sequence[str]) -> list[int]:
    """For each upload name, the index of a group in which no other name equals it or is
    one of its parent directories (or the reverse): the first group where it fits."""
    groups: list[tuple[set[str], set[str]]] = []  # (names, their parent directories)
    chosen: list[int] = []
    for name in names:
        parents = {name.rsplit("/", depth)[0] for depth in range(1, name.count("/") + 1)}
        fits = (
            index
            for index, (taken, taken_parents) in enumerate(groups)
            if name not in taken and name not in taken_parents and not parents & taken
        )
        index = next(fits, len(groups))
        if index == len(groups):
            groups.append((set(), set()))
        groups[index][0].add(name)
        groups[index][1].update(parents)
        chosen.append(index)
    return chosen


def staging_target(
    local: LocalStore, directory: Path, item: UploadItem, plain_dirs: set[str] | None = None
) -> Path:
    """Where the sender puts the bytes: ``upload_name`` inside the transfer's directory
    (``plain_dirs``: see :meth:`LocalStore.resolve_in_staging`)."""
    relative = directory.relative_to(local.staging_path).as_posix()
    return local.resolve_in_staging(f"{relative}/{item.upload_name}", plain_dirs)


def _remove_all(directories: Sequence[Path]) -> None:
    for directory in directories:
        remove_file_or_tree(directory)


def staged_upload(item: UploadItem, where: Placed, row: IncomingTransfer) -> StagedUpload:
    return StagedUpload(
        staging_name=where.directory.name,
        staging_location=str(where.target),
        upload_name=item.upload_name,
        destination_location=item.destination_location,
        source_transfer_id=item.source_transfer_id,
        destination_transfer_id=row.id,
    )


# --- the database -------------------------------------------------------------------------


async def create_or_refuse(
    api: ApiState,
    caller: Caller,
    request: StagingRequest,
    store: Store,
    directories: Sequence[Path],
) -> list[IncomingTransfer]:
    """In one transaction: refuse the batch (failing stale transfers) or create it."""
    now = api.context.now()
    names = [item.destination_location for item in request.items]
    async with api.context.sessions.begin() as session:
        verdict = classify(
            request.items,
            await transfers.existing_file_names(session, names),
            await transfers.live_incoming_to(session, names),
        )
        refused = refusal_of(verdict)
        if refused is None:
            new = [
                _new_incoming(caller, request.source, item, store, directory)
                for item, directory in zip(request.items, directories, strict=True)
            ]
            return await transfers.add_incoming(session, new, started_at=now)
        failed = await transfers.move_incoming(
            session, verdict.stale_transfer_ids, TransferStatus.FAILED, at=now, reason=SUPERSEDED
        )
    await unstage(api, failed)
    raise refused


def _new_incoming(
    caller: Caller, source: str, item: UploadItem, store: Store, directory: Path
) -> NewIncoming:
    return NewIncoming(
        source=source,
        uploader=caller.username,
        upload_name=item.upload_name,
        store_path=item.destination_location,
        transfer_size=item.upload_size,
        transfer_checksum=item.upload_checksum,
        source_transfer_id=item.source_transfer_id,
        store_id=store.id,
        staging_path=str(directory),
    )
