"""Driving a network clone between two librarians with the seed's own configurations."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from librarians import KEY, Librarian
from sqlalchemy import func, select

from librarian_async.config.loading import load_task_config
from librarian_async.db import peers
from librarian_async.db.models import (
    File,
    IncomingTransfer,
    OutgoingTransfer,
    RemoteInstance,
    SendQueueItem,
)
from librarian_async.enums import TransferStatus
from librarian_async.runner import build_scheduler
from librarian_async.scheduler import RunResult
from librarian_async.security import encrypt_secret

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE_CONFIG = EXAMPLES / "inter-librarian-source.json"
DESTINATION_CONFIG = EXAMPLES / "inter-librarian-destination.json"


def sample_files(count: int, seed: int = 7) -> dict[str, bytes]:
    """``count`` files of mixed sizes (empty to 2 MiB), some in subdirectories."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for index in range(count):
        size = rng.choice([0, 1, 100, 4096, 65_536]) if index % 20 else rng.randint(1, 2 << 20)
        folder = f"night-{index % 3}/" if index % 2 else ""
        files[f"{folder}obs-{index:04d}.dat"] = rng.randbytes(size)
    return files


async def add_files(librarian: Librarian, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        await librarian.add_file(name, content)


async def run_tasks(librarian: Librarian, config: Path, *names: str) -> list[RunResult]:
    """Run the named entries of a configuration once each, one after the other."""
    results = []
    for name in names:
        scheduler = await build_scheduler(librarian.app, load_task_config(config), only={name})
        results.extend(await scheduler.run_once())
    return results


async def clone_round(source: Librarian, destination: Librarian) -> list[RunResult]:
    """One full pass of the pipeline: stage, move, confirm, ingest, call back."""
    results = await run_tasks(
        source, SOURCE_CONFIG, "Clone sender", "Queue consumer", "Queue checker"
    )
    results += await run_tasks(destination, DESTINATION_CONFIG, "Clone receiver")
    return results


def digest(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def stored_digests(librarian: Librarian, names: Iterable[str]) -> dict[str, str]:
    """The md5 of each named file in the librarian's main store."""
    return {name: digest(librarian.stored(name).read_bytes()) for name in names}


def staging_entries(librarian: Librarian) -> list[Path]:
    """What is left in the main store's staging area."""
    return list(Path(librarian.store.staging_path).iterdir())


async def statuses(
    librarian: Librarian, table: type[IncomingTransfer] | type[OutgoingTransfer]
) -> dict[TransferStatus, int]:
    async with librarian.app.sessions() as session:
        rows = await session.execute(select(table.status, func.count()).group_by(table.status))
        return {status: count for status, count in rows.all()}


async def verified_by_sender_or_upload(librarian: Librarian) -> int:
    """Incoming transfers whose staged file was verified before receive_clone saw it."""
    async with librarian.app.sessions() as session:
        found = IncomingTransfer.verified_stat.is_not(None)
        return int(await session.scalar(select(func.count()).where(found)) or 0)


async def remote_copies(librarian: Librarian) -> set[str]:
    async with librarian.app.sessions() as session:
        return set((await session.scalars(select(RemoteInstance.file_name))).all())


async def file_names(librarian: Librarian) -> set[str]:
    async with librarian.app.sessions() as session:
        return set((await session.scalars(select(File.name))).all())


class Clock:
    """A librarian's clock that a test moves forward (``Context.now`` is replaceable)."""

    def __init__(self, librarian: Librarian) -> None:
        self.offset = timedelta(0)
        real = librarian.app.now
        librarian.app.now = lambda: real() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


async def point_peer_at(librarian: Librarian, peer: str, port: int) -> None:
    """Change the port at which ``librarian`` calls ``peer`` (a closed port: the peer is down)."""
    async with librarian.app.sessions.begin() as session:
        row = await peers.librarian_by_name(session, peer)
        row.port = port


async def set_transfers_enabled(librarian: Librarian, peer: str, enabled: bool) -> None:
    async with librarian.app.sessions.begin() as session:
        row = await peers.librarian_by_name(session, peer)
        row.transfers_enabled = enabled


async def set_authenticator(librarian: Librarian, peer: str, authenticator: str) -> None:
    async with librarian.app.sessions.begin() as session:
        row = await peers.librarian_by_name(session, peer)
        row.authenticator = encrypt_secret(KEY.encode(), authenticator)


async def outgoing_by_file(librarian: Librarian) -> dict[str, list[TransferStatus]]:
    """Every outgoing transfer's status, per file, oldest first."""
    async with librarian.app.sessions() as session:
        query = select(OutgoingTransfer.file_name, OutgoingTransfer.status)
        rows = (await session.execute(query.order_by(OutgoingTransfer.id))).all()
    found: dict[str, list[TransferStatus]] = {}
    for name, status in rows:
        found.setdefault(name, []).append(status)
    return found


async def queue_rows(librarian: Librarian) -> list[SendQueueItem]:
    async with librarian.app.sessions() as session:
        query = select(SendQueueItem).order_by(SendQueueItem.id)
        return list((await session.scalars(query)).all())


def flip_first_byte(path: Path) -> None:
    """Damage a non-empty file; doing it twice restores it."""
    content = path.read_bytes()
    path.write_bytes(bytes([content[0] ^ 0xFF]) + content[1:])


def corrupt_staged(librarian: Librarian, name: str) -> None:
    """Damage the staged copy of ``name`` in the main store's staging area."""
    staging = Path(librarian.store.staging_path)
    [staged] = [path for path in staging.rglob("*") if path.as_posix().endswith(f"/{name}")]
    flip_first_byte(staged)


def flip_store_files(librarian: Librarian) -> None:
    """Damage (or, called again, repair) every non-empty file of the main store."""
    for path in Path(librarian.store.store_path).rglob("*"):
        if path.is_file() and path.stat().st_size:
            flip_first_byte(path)


def staged_bytes(librarian: Librarian) -> int:
    """Bytes in files under the main store's staging area (temporaries included)."""
    staging = Path(librarian.store.staging_path)
    return sum(path.stat().st_size for path in staging.rglob("*") if path.is_file())


async def wait_for_staged_bytes(librarian: Librarian, at_least: int) -> None:
    for _ in range(6000):
        if staged_bytes(librarian) >= at_least:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{librarian.name}: fewer than {at_least} bytes staged")
