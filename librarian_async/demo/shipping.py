"""Step 4, SneakerNet: the next night's files travel on a drive instead of the network.

At the source: transfers to the destination are switched off, so that ``send_clone`` leaves
the new files alone; ``create_local_clone`` copies the last day's files onto the drive store;
``manifest export`` writes the drive's manifest onto the drive itself, with an ONGOING
outgoing transfer per file, and disables the drive store. Shipping the drive is the
destination reading its folder where it is. At the destination: ``manifest ingest`` stages
every file, ``receive_clone`` stores them and calls the source back, which completes its
transfers and records the destination's copies (PROTOCOL §5).
"""

from __future__ import annotations

from pathlib import Path

from librarian_async.demo.facts import (
    describe_counts,
    outgoing_statuses,
    plural,
    received_line,
    remote_copies,
    shown,
    size_text,
)
from librarian_async.demo.runs import (
    check_delivered,
    config_of,
    example_config,
    expect,
    run_clean,
)
from librarian_async.demo.samples import add_samples, night, total_size
from librarian_async.demo.sites import DESTINATION, Demo, set_transfers
from librarian_async.sneakernet import export_manifest, ingest_manifest

DRIVE_NIGHT, DRIVE_FILES = 2459002, 12
DRIVE = "drive"


async def sneakernet(demo: Demo) -> list[str]:
    """The next night goes by drive; see the module docstring."""
    demo.by_drive = night(DRIVE_NIGHT, DRIVE_FILES)
    manifest = demo.source.store_root(DRIVE) / "manifest.json"
    return [
        *await hold_back_from_network(demo),
        await fill_drive(demo),
        *await export(demo, manifest),
        f"shipped: the destination reads the drive where it is ({shown(drive_area(demo))})",
        await ingest(demo, manifest),
        *await receive(demo),
    ]


def drive_area(demo: Demo) -> Path:
    """Where the drive's files are (its store area), for the destination to read."""
    return demo.source.store_root(DRIVE) / "store"


async def hold_back_from_network(demo: Demo) -> list[str]:
    """Disable transfers to the destination, add the night, check send_clone skips it."""
    await set_transfers(demo.source, DESTINATION, enabled=False)
    await add_samples(demo.source, demo.by_drive)
    config = example_config("inter-librarian-source.json")
    report = await run_clean(demo.source, config, "Clone sender")
    counts = report.counts
    expect(
        counts.get("queued", 0) == 0 and counts.get("skipped_disabled") == 1,
        f"send_clone with transfers disabled: {report.summary()} (expected "
        "skipped_disabled=1 and nothing queued)",
    )
    return [
        f"source: transfers to {DESTINATION!r} disabled, then night {DRIVE_NIGHT} (today) "
        f"added: {DRIVE_FILES} files, {size_text(total_size(demo.by_drive))}",
        "source: send_clone indeed leaves them alone",
    ]


async def fill_drive(demo: Demo) -> str:
    """The last day's files (not the network's night, two days old) onto the drive."""
    entry = {
        "task_name": "Drive filler",
        "age_in_days": 1,
        "clone_from": "store",
        "clone_to": [DRIVE],
        "disable_store_on_full": True,
    }
    config = config_of("create_local_clone", entry)
    report = await run_clean(demo.source, config, "Drive filler")
    cloned = report.counts.get("cloned", 0)
    expect(cloned == DRIVE_FILES, f"create_local_clone to the drive: {report.summary()}")
    return (
        f"source: create_local_clone copied the last day's {plural(cloned, 'file')} "
        "onto the drive, each copy verified"
    )


async def export(demo: Demo, manifest: Path) -> list[str]:
    """The drive's manifest, written onto the drive, with a transfer per file; the drive
    store is switched off as it leaves the site."""
    summary = await export_manifest(
        demo.source.app,
        store_name=DRIVE,
        output=manifest,
        destination=DESTINATION,
        disable_store=True,
        mark_unavailable=True,
    )
    done = (summary.entries, summary.transfers_created, summary.instances_marked_unavailable)
    expect(
        done == (DRIVE_FILES,) * 3 and summary.store_disabled,
        "manifest export: " + "; ".join(summary.lines()),
    )
    return [
        f"source: manifest export wrote {shown(manifest)}",
        f"        ({plural(summary.entries, 'file')}, {summary.transfers_created} transfers "
        "ONGOING); drive store disabled, its copies marked unavailable",
    ]


async def ingest(demo: Demo, manifest: Path) -> str:
    """Stage every file of the drive at the destination, checking each on the way."""
    summary = await ingest_manifest(demo.destination.app, manifest, drive_area(demo))
    expect(
        (summary.entries, summary.staged, summary.failed) == (DRIVE_FILES, DRIVE_FILES, []),
        "manifest ingest: " + "; ".join(summary.lines() + summary.failed),
    )
    return (
        f"destination: manifest ingest staged {plural(summary.staged, 'file')} "
        f"({size_text(summary.bytes)}), sizes and checksums checked"
    )


async def receive(demo: Demo) -> list[str]:
    """receive_clone stores the staged files and calls the source back."""
    config = example_config("inter-librarian-destination.json")
    report = await run_clean(demo.destination, config, "Clone receiver")
    received = report.counts.get("received", 0)
    expect(
        received == DRIVE_FILES,
        f"receive_clone after the ingest: {report.summary()} (expected received={DRIVE_FILES})",
    )
    await set_transfers(demo.source, DESTINATION, enabled=True)
    statuses = await outgoing_statuses(demo.source, DESTINATION)
    copies = await remote_copies(demo.source, DESTINATION)
    everything = set(demo.by_network) | set(demo.by_drive)
    check_delivered(statuses, copies, everything)
    return [
        received_line(report),
        f"source: transfers {describe_counts(statuses)} ({len(demo.by_network)} by network, "
        f"{len(demo.by_drive)} by drive); network transfers back on",
    ]
