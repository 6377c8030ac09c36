"""``manifest export``: describe a drive store in a manifest, and ship its files to a peer.

Reads: the drive store's row, the destination's ``librarians`` row, then the store's
instances with their files in keyset pages of :data:`PAGE_SIZE` (by instance id), and for
each page the destination's recorded copies and the live outgoing transfers to it.

Writes, one transaction per page: an ONGOING outgoing transfer (``transfer_data.method =
"sneakernet"``) for each available instance the destination needs, so that ``send_clone``
does not also send it over the network (it skips files with a live outgoing transfer).
Then the manifest's entries of the page are appended to a temporary file, which becomes the
manifest (atomically) only once complete. Last, with ``disable_store`` the store is switched
off and with ``mark_unavailable`` its exported instances are marked unavailable.

Which instances are entries, with a destination:

* a live ONGOING transfer of this very instance to the destination (an earlier export):
  reused, so that re-exporting never duplicates a transfer;
* a file the destination already holds, or with another live transfer to it (a network
  send in flight): left out and counted in the summary;
* an unavailable instance: left out (its bytes are not on the drive);
* otherwise a new transfer.

Without a destination, every instance is an entry and no transfer is created.

Why a rerun is safe: a crash before the rename leaves the old manifest (or none) and a
temporary file; the transfers already created are found and reused by the rerun. The final
store switches are idempotent. A ``send_clone`` run that picks the same file between this
page's read and its insert is the one race left: the file then travels twice and the
second arrival is adopted or refused as already there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.context import Context
from librarian_async.db import catalog, clones, manifests, peers
from librarian_async.db.manifests import DriveInstance
from librarian_async.db.models import Store
from librarian_async.enums import TransferStatus
from librarian_async.sneakernet.manifest import ManifestEntry, ManifestHeader, ManifestWriter

PAGE_SIZE = 512
LEFT_OUT_HELD = "already held by the destination"
LEFT_OUT_IN_FLIGHT = "another transfer to the destination is under way"
LEFT_OUT_UNAVAILABLE = "instance unavailable (not on the drive)"


@dataclass
class ExportSummary:
    """What an export wrote and changed."""

    store_name: str
    output: Path
    destination: str | None
    entries: int = 0
    bytes: int = 0
    transfers_created: int = 0
    transfers_reused: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    store_disabled: bool = False
    instances_marked_unavailable: int = 0

    def leave_out(self, reason: str) -> None:
        self.left_out[reason] = self.left_out.get(reason, 0) + 1

    def lines(self) -> list[str]:
        """A short human summary, one fact per line."""
        target = f" for {self.destination!r}" if self.destination else ""
        lines = [
            f"manifest {self.output}{target}: {self.entries} files, {self.bytes} bytes "
            f"from store {self.store_name!r}"
        ]
        if self.destination:
            lines.append(
                f"outgoing transfers: {self.transfers_created} created, "
                f"{self.transfers_reused} reused"
            )
        lines += [f"left out: {count} ({reason})" for reason, count in self.left_out.items()]
        if self.store_disabled:
            lines.append(f"store {self.store_name!r} disabled")
        if self.instances_marked_unavailable:
            lines.append(f"{self.instances_marked_unavailable} instances marked unavailable")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {**vars(self), "output": str(self.output)}


@dataclass(frozen=True)
class Target:
    """The drive store and, with a destination, the peer's name and row id."""

    store: Store
    destination: str | None
    librarian_id: int | None


async def export_manifest(
    app: Context,
    *,
    store_name: str,
    output: Path,
    destination: str | None,
    disable_store: bool,
    mark_unavailable: bool,
) -> ExportSummary:
    """Write the manifest of ``store_name`` to ``output``; see the module docstring."""
    target = await _target(app, store_name, destination)
    summary = ExportSummary(store_name, output, destination)
    header = ManifestHeader(
        format="librarian-manifest",
        version=1,
        librarian_name=app.settings.name,
        store_name=store_name,
        store_path=target.store.store_path,
        created=app.now(),
        destination=destination,
    )
    writer = await asyncio.to_thread(ManifestWriter, output, header)
    try:
        last_id = await _export_pages(app, target, writer, summary)
        await asyncio.to_thread(writer.commit)
    except BaseException:
        writer.discard()
        raise
    await _switch_store(app, target, last_id, disable_store, mark_unavailable, summary)
    return summary


async def _target(app: Context, store_name: str, destination: str | None) -> Target:
    async with app.sessions() as session:
        store = await catalog.store_by_name(session, store_name)
        librarian = (
            None if destination is None else await peers.librarian_by_name(session, destination)
        )
    return Target(store, destination, None if librarian is None else librarian.id)


async def _export_pages(
    app: Context, target: Target, writer: ManifestWriter, summary: ExportSummary
) -> int:
    """Page through the store; return the last instance id seen (0 for an empty store)."""
    after_id = 0
    while True:
        async with app.sessions.begin() as session:
            page = await manifests.drive_instances(
                session, store_id=target.store.id, after_id=after_id, limit=PAGE_SIZE
            )
            transfer_ids = await _ship(session, app, target, page, summary)
        entries = [
            _entry(item, transfer_ids) for item in page if _included(item, target, transfer_ids)
        ]
        await asyncio.to_thread(writer.add, entries)
        summary.entries += len(entries)
        summary.bytes += sum(entry.size for entry in entries)
        if page:
            after_id = page[-1].instance_id
        if len(page) < PAGE_SIZE:
            return after_id


def _included(item: DriveInstance, target: Target, transfer_ids: dict[int, int]) -> bool:
    return target.destination is None or item.instance_id in transfer_ids


async def _ship(
    session: AsyncSession,
    app: Context,
    target: Target,
    page: list[DriveInstance],
    summary: ExportSummary,
) -> dict[int, int]:
    """The outgoing transfer id of each shipped instance of the page (reused or new)."""
    if target.destination is None or target.librarian_id is None or not page:
        return {}
    names = [item.name for item in page]
    held = await manifests.names_held_by(session, names, target.librarian_id)
    live = await manifests.live_outgoing_to(session, names, target.destination)
    chosen: dict[int, int] = {}
    new: list[DriveInstance] = []
    for item in page:
        reusable = [
            transfer.id
            for transfer in live.get(item.name, [])
            if transfer.status == TransferStatus.ONGOING
            and transfer.instance_id == item.instance_id
        ]
        if reusable:
            chosen[item.instance_id] = reusable[0]
        elif item.name in held:
            summary.leave_out(LEFT_OUT_HELD)
        elif item.name in live:
            summary.leave_out(LEFT_OUT_IN_FLIGHT)
        elif not item.available:
            summary.leave_out(LEFT_OUT_UNAVAILABLE)
        else:
            new.append(item)
    summary.transfers_reused += len(chosen)
    created = await manifests.add_shipments(
        session, new, destination=target.destination, store_name=target.store.name, at=app.now()
    )
    summary.transfers_created += len(created)
    return chosen | created


def _entry(item: DriveInstance, transfer_ids: dict[int, int]) -> ManifestEntry:
    return ManifestEntry(
        name=item.name,
        create_time=item.create_time,
        size=item.size,
        checksum=item.checksum,
        uploader=item.uploader,
        source=item.source,
        instance_path=item.path,
        deletion_policy=item.deletion_policy,
        instance_create_time=item.created_time,
        instance_available=item.available,
        outgoing_transfer_id=transfer_ids.get(item.instance_id),
    )


async def _switch_store(
    app: Context,
    target: Target,
    last_id: int,
    disable_store: bool,
    mark_unavailable: bool,
    summary: ExportSummary,
) -> None:
    """Disable the store and mark the exported instances unavailable, as asked (one
    transaction). Instances added after the export's last page are left as they are."""
    if not (disable_store or mark_unavailable):
        return
    async with app.sessions.begin() as session:
        if disable_store:
            await clones.disable_store(session, target.store.id)
            summary.store_disabled = True
        if mark_unavailable:
            summary.instances_marked_unavailable = await manifests.mark_unavailable(
                session, store_id=target.store.id, up_to_id=last_id
            )
