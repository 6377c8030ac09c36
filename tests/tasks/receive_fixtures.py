"""Helpers for the receive_clone tests: real staged transfers between two real librarians.

The source ingests files, creates ONGOING outgoing transfers, stages them on the destination
through the destination's real ``clone/batch_stage``, writes the bytes where it was told and
reports them STAGED with ``checkin/update``: exactly the destination's view of a network
clone whose bytes have arrived. Checksums come from hashlib and xxhash directly, so the task
is checked against an independent reference. Imported explicitly by the test module.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import xxhash
from fastapi import FastAPI
from librarians import Librarian
from remote.serving import Server
from sqlalchemy import select, update
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from librarian_async.api import create_app
from librarian_async.config import ReceiveCloneConfig
from librarian_async.context import Context
from librarian_async.db import peers
from librarian_async.db.models import Base, IncomingTransfer, OutgoingTransfer
from librarian_async.db.models import Librarian as LibrarianRow
from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.remote.peers import peer_client
from librarian_async.remote.schemas import BatchStageRequest, CheckinUpdateRequest, UploadItem
from librarian_async.scheduler import RunResult, Scheduler
from librarian_async.tasks import receive_clone

Row = TypeVar("Row", bound=Base)
START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def checksum_of(content: bytes, algorithm: str = "md5") -> str:
    """``"<alg>:::<hex>"`` of ``content``; ``"legacy"`` gives a bare md5 hex string."""
    if algorithm == "legacy":
        return hashlib.md5(content).hexdigest()
    if algorithm == "xxh3":
        return f"xxh3:::{xxhash.xxh3_128(content).hexdigest()}"
    return f"{algorithm}:::{hashlib.new(algorithm, content).hexdigest()}"


class Clock:
    """A wall clock the test moves by hand (``Context.now``)."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Sent:
    """One file staged at the destination: its bytes, both transfer ids, where it is staged."""

    name: str
    content: bytes
    checksum: str
    outgoing_id: int
    incoming_id: int
    staged: Path


async def stage_files(
    source: Librarian,
    destination: Librarian,
    contents: dict[str, bytes],
    algorithms: dict[str, str] | None = None,
) -> list[Sent]:
    """Ingest ``contents`` at the source and stage them all at the destination (bytes
    written, transfers STAGED), in the given order; ``algorithms`` picks a transfer's
    checksum algorithm by name (md5 by default)."""
    algorithms = algorithms or {}
    checksums = {
        name: checksum_of(data, algorithms.get(name, "md5")) for name, data in contents.items()
    }
    for name, content in contents.items():
        await source.add_file(name, content)
    outgoing = await add_outgoing(source.app, contents, checksums)
    async with peer_client(source.app, await peer_row(source.app, destination.name)) as client:
        staged = await client.batch_stage(_batch(contents, checksums, outgoing))
        for upload in staged.uploads:
            write(upload.staging_location, contents[upload.upload_name])
        ids = [upload.destination_transfer_id for upload in staged.uploads]
        await client.checkin_update(
            CheckinUpdateRequest(destination_transfer_ids=ids, new_status=TransferStatus.STAGED)
        )
    return [
        Sent(
            u.upload_name,
            contents[u.upload_name],
            checksums[u.upload_name],
            u.source_transfer_id,
            u.destination_transfer_id,
            Path(u.staging_location),
        )
        for u in staged.uploads
    ]


def write(path: str, content: bytes) -> None:
    Path(path).write_bytes(content)


async def add_outgoing(
    app: Context, contents: dict[str, bytes], checksums: dict[str, str]
) -> dict[str, int]:
    """ONGOING outgoing transfers to ``destination``, their ids by file name."""
    async with app.sessions.begin() as session:
        rows = {
            name: OutgoingTransfer(
                status=TransferStatus.ONGOING,
                destination="destination",
                file_name=name,
                transfer_size=len(content),
                transfer_checksum=checksums[name],
            )
            for name, content in contents.items()
        }
        session.add_all(rows.values())
        await session.flush()
        return {name: row.id for name, row in rows.items()}


def _batch(
    contents: dict[str, bytes], checksums: dict[str, str], outgoing: dict[str, int]
) -> BatchStageRequest:
    uploads = [
        UploadItem(
            upload_size=len(content),
            upload_checksum=checksums[name],
            upload_name=name,
            destination_location=name,
            uploader="source",
            source_transfer_id=outgoing[name],
        )
        for name, content in contents.items()
    ]
    return BatchStageRequest(
        uploads=uploads, source="source", total_size=sum(map(len, contents.values()))
    )


async def peer_row(app: Context, name: str) -> LibrarianRow:
    async with app.sessions() as session:
        return await peers.librarian_by_name(session, name)


async def set_peer_port(app: Context, name: str, port: int) -> None:
    async with app.sessions.begin() as session:
        await session.execute(
            update(LibrarianRow).where(LibrarianRow.name == name).values(port=port)
        )


async def rows(app: Context, model: type[Row]) -> list[Row]:
    async with app.sessions() as session:
        query = select(model).order_by(*model.__table__.primary_key.columns)
        return list((await session.scalars(query)).all())


async def by_id(app: Context, model: type[Row], ids: list[int]) -> list[Row]:
    """Rows of ``model`` with these ids, in the order of ``ids``."""
    found = {row.id: row for row in await rows(app, model)}  # type: ignore[attr-defined]
    return [found[row_id] for row_id in ids]


async def incoming(app: Context, sent: list[Sent]) -> list[IncomingTransfer]:
    return await by_id(app, IncomingTransfer, [item.incoming_id for item in sent])


async def outgoing(app: Context, sent: list[Sent]) -> list[OutgoingTransfer]:
    return await by_id(app, OutgoingTransfer, [item.outgoing_id for item in sent])


def config(**overrides: Any) -> ReceiveCloneConfig:
    values: dict[str, Any] = {
        "task_name": "receiver",
        "every": timedelta(hours=1),
        "concurrency": 2,
        "deletion_policy": DeletionPolicy.ALLOWED,
    }
    return ReceiveCloneConfig(**(values | overrides))


async def receive(app: Context, **overrides: Any) -> RunResult:
    """One run of receive_clone through the real scheduler."""
    scheduler = Scheduler(app, [config(**overrides)], {"receive_clone": receive_clone.run})
    [result] = await scheduler.run_once()
    return result


def counts(**values: int) -> dict[str, int]:
    """The full counts of a run: every key present, zero unless given."""
    return dict.fromkeys(receive_clone.COUNTS, 0) | values


# --- serving the source differently -----------------------------------------------------------

BATCH_COMPLETE_PATH = "/api/v2/clone/batch_complete"


class CountingApp:
    """An ASGI app that counts the HTTP requests reaching ``app``, by path."""

    def __init__(self, app: FastAPI | DeployedApp) -> None:
        self.app = app
        self.requests: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests[str(scope["path"])] += 1
        await self.app(scope, receive, send)


class DeployedApp:
    """The librarian's app as a deployed peer serves it: without ``clone/batch_complete``,
    which answers as FastAPI does for a path it lacks (404) or a method it lacks (405)."""

    def __init__(self, app: FastAPI, answer: int) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == BATCH_COMPLETE_PATH:
            detail = "Not Found" if self.answer == 404 else "Method Not Allowed"
            await JSONResponse({"detail": detail}, status_code=self.answer)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def deployed_app(librarian: Librarian, answer: int) -> DeployedApp:
    return DeployedApp(create_app(librarian.app), answer)


async def serve_instead(librarian: Librarian, app: Any) -> None:
    """Serve ``app`` on the librarian's port instead of its own app, until it stops."""
    await librarian.stop_serving()
    librarian.server = Server(app, librarian.port)
    await librarian.server.start()
