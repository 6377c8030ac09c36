"""What the demo reads back from a librarian's catalogue to prove a step really happened."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from librarian_async.db import catalog
from librarian_async.db.models import CorruptFile, File, Librarian, OutgoingTransfer, RemoteInstance
from librarian_async.demo.sites import DemoFailed, Site
from librarian_async.tasks.base import Report


async def file_count(site: Site) -> int:
    async with site.app.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(File)) or 0)


async def outgoing_statuses(site: Site, destination: str) -> dict[str, int]:
    """Outgoing transfers to ``destination`` by status name: ``{"COMPLETED": 40}``."""
    query = (
        select(OutgoingTransfer.status, func.count())
        .where(OutgoingTransfer.destination == destination)
        .group_by(OutgoingTransfer.status)
    )
    async with site.app.sessions() as session:
        return {status.name: count for status, count in (await session.execute(query)).all()}


async def remote_copies(site: Site, peer: str) -> set[str]:
    """Names of the files that ``site`` knows ``peer`` holds a copy of."""
    query = (
        select(RemoteInstance.file_name)
        .join(Librarian, Librarian.id == RemoteInstance.librarian_id)
        .where(Librarian.name == peer)
    )
    async with site.app.sessions() as session:
        return set((await session.scalars(query)).all())


async def corrupt_file_names(site: Site) -> list[str]:
    async with site.app.sessions() as session:
        return sorted((await session.scalars(select(CorruptFile.file_name))).all())


async def stored_path(site: Site, file_name: str, store: str) -> Path:
    """Where ``site`` keeps its copy of ``file_name`` on ``store``."""
    async with site.app.sessions() as session:
        instances = await catalog.instances_of(session, file_name)
    for instance, store_name in instances:
        if store_name == store:
            return Path(instance.path)
    raise DemoFailed(f"{site.name} has no copy of {file_name} on store {store!r}")


def describe_counts(counts: dict[str, int]) -> str:
    """``40 COMPLETED, 2 ONGOING`` (most first); ``none`` when empty."""
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{count} {status}" for status, count in ordered) or "none"


def size_text(size: int) -> str:
    """``4 KiB``, ``504 KiB``, ``1.5 MiB``: one decimal below 100, none from there on."""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    digits = 1 if unit != "B" and value < 100 else 0
    return f"{value:.{digits}f} {unit}"


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``, ``3 batches``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith(("ch", "s")) else f"{count} {noun}s"


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def received_line(report: Report) -> str:
    """What receive_clone did, from its counts."""
    counts = report.counts
    return (
        f"destination: receive_clone verified and stored {plural(counts['received'], 'file')}"
        f", then {plural(counts.get('callbacks_sent', 0), 'callback')} to the source"
    )
