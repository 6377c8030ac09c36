"""The demo's steps: each does one thing to the two librarians, checks that it happened and
returns the lines that tell what happened.

A step raises :class:`DemoFailed` (one line) when the librarians did not do what they
should; the damaged file that the integrity check finds is planned, not a failure.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from librarian_async.config import Settings
from librarian_async.demo.facts import (
    corrupt_file_names,
    describe_counts,
    file_count,
    outgoing_statuses,
    plural,
    received_line,
    remote_copies,
    shown,
    size_text,
    stored_path,
)
from librarian_async.demo.runs import (
    check_delivered,
    config_of,
    example_config,
    expect,
    run_clean,
    run_task,
)
from librarian_async.demo.samples import add_samples, night, total_size
from librarian_async.demo.serving import LOOPBACK
from librarian_async.demo.shipping import sneakernet
from librarian_async.demo.sites import (
    DESTINATION,
    SOURCE,
    Demo,
    add_store,
    introduce,
    open_demo,
    prepare_folder,
)
from librarian_async.enums import AuthLevel

NETWORK_NIGHT, NETWORK_FILES = 2459001, 40

Step = Callable[[Demo], Awaitable[list[str]]]


async def run_demo(settings: Settings, folder: Path) -> int:
    """Run every step, printing what each did; 0 when every one did what it should, else
    DemoFailed says which one went wrong and how."""
    steps: list[tuple[str, Step]] = [
        ("Set-up", set_up),
        ("Sample files", add_sample_files),
        ("Network clone", network_clone),
        ("SneakerNet", sneakernet),
        ("Integrity check", integrity_check),
    ]
    started = time.monotonic()
    folder = await asyncio.to_thread(prepare_folder, folder)
    print(
        f"librarian_async demo: librarians {SOURCE!r} and {DESTINATION!r} on {LOOPBACK}, "
        f"everything under {shown(folder)}\n"
    )
    async with open_demo(settings, folder) as demo:
        for number, (title, step) in enumerate(steps, 1):
            since = started if number == 1 else None  # set-up includes starting the librarians
            await narrate(f"{number}. {title}", step(demo), since)
        closing = await summary(demo, time.monotonic() - started)
    print(f"{len(steps) + 1}. Summary")
    print("\n".join(f"   {line}" for line in closing))
    return 0


async def narrate(title: str, work: Awaitable[list[str]], since: float | None = None) -> None:
    """Await one step and print its title, its duration and its lines."""
    started = time.monotonic() if since is None else since
    try:
        lines = await work
    except BaseException:
        print(f"{title}: did not complete", flush=True)
        raise
    print(f"{title} ({time.monotonic() - started:.1f} s)")
    print("\n".join(f"   {line}" for line in lines), flush=True)


async def set_up(demo: Demo) -> list[str]:
    """Stores at both sides; then each librarian gets an account and a peer row for the
    other: the sender stages files at the destination (READAPPEND), the destination calls
    the sender back (CALLBACK)."""
    source, destination = demo.source, demo.destination
    await add_store(source, "store")
    await add_store(source, "drive", ingestable=False)
    await add_store(destination, "store", methods={"http": {}})
    await introduce(source, destination, AuthLevel.READAPPEND)
    await introduce(destination, source, AuthLevel.CALLBACK)
    return [
        f"source       {source.url}  stores: store, drive (a SneakerNet drive, no new files)",
        f"destination  {destination.url}  store: store (takes files over http)",
        "each has its own SQLite database, an account for the other and a peer row for it",
        "(credentials encrypted with a fresh Fernet key); both answered a ping",
    ]


async def add_sample_files(demo: Demo) -> list[str]:
    """The first night of observations, dated two days back: the network takes it, and the
    drive (which takes only the last day's files) will not."""
    demo.by_network = night(NETWORK_NIGHT, NETWORK_FILES)
    await add_samples(demo.source, demo.by_network, days_ago=2)
    count = await file_count(demo.source)
    expect(count == NETWORK_FILES, f"the source catalogued {count} files, not {NETWORK_FILES}")
    size = size_text(total_size(demo.by_network))
    subfolder = sum("/calibration/" in name for name in demo.by_network)
    return [
        f"source: night {NETWORK_NIGHT} (two days ago) added to 'store': "
        f"{NETWORK_FILES} files, {size}, {subfolder} in calibration/",
    ]


async def network_clone(demo: Demo) -> list[str]:
    """The seed's "Inter-Librarian Transfer" configurations, each entry run once."""
    source, destination, expected = demo.source, demo.destination, len(demo.by_network)
    config = example_config("inter-librarian-source.json")
    sent = await run_clean(source, config, "Clone sender")
    moved = await run_clean(source, config, "Queue consumer")
    await run_clean(source, config, "Queue checker")
    receiver = example_config("inter-librarian-destination.json")
    received = await run_clean(destination, receiver, "Clone receiver")
    statuses = await outgoing_statuses(source, DESTINATION)
    copies = await remote_copies(source, DESTINATION)
    expect(
        sent.counts.get("queued") == expected,
        f"send_clone: {sent.summary()} (expected queued={expected})",
    )
    expect(
        received.counts.get("received") == expected,
        f"receive_clone: {received.summary()} (expected received={expected})",
    )
    check_delivered(statuses, copies, set(demo.by_network))
    batches = moved.counts.get("batches_sent", 0)
    return [
        f"source: send_clone staged {plural(expected, 'file')} there; consume_queue sent "
        f"them by http ({plural(batches, 'batch')}, {size_text(moved.counts.get('bytes', 0))})",
        received_line(received),
        f"source: transfers {describe_counts(statuses)}; "
        f"{plural(len(copies), 'file')} recorded as copied to {DESTINATION!r}",
    ]


async def integrity_check(demo: Demo) -> list[str]:
    """Flip a byte of one file at the destination; its check must find that one alone."""
    destination = demo.destination
    demo.damaged = sorted(demo.by_network)[len(demo.by_network) // 2]
    flip_first_byte(await stored_path(destination, demo.damaged, "store"))
    entry = {"task_name": "Integrity check", "store_name": "store", "age_in_days": 7}
    result = await run_task(destination, config_of("check_integrity", entry), "Integrity check")
    counts, total = result.report.counts, await file_count(destination)
    expect(
        (result.outcome, counts.get("checked"), counts.get("corrupt")) == ("problems", total, 1),
        f"check_integrity: {result.outcome} ({result.report.summary()}), expected "
        f"checked={total} corrupt=1",
    )
    found = await corrupt_file_names(destination)
    expect(found == [demo.damaged], f"corrupt files recorded: {found}, not [{demo.damaged}]")
    return [
        f"destination: one byte flipped in {demo.damaged}",
        f"destination: check_integrity re-hashed {plural(total, 'file')}: "
        f"{counts.get('ok', 0)} ok, 1 corrupt (that very one), as planned",
    ]


def flip_first_byte(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(bytes([content[0] ^ 0xFF]) + content[1:])


async def summary(demo: Demo, seconds: float) -> list[str]:
    total = await file_count(demo.destination)
    home = shown(demo.folder / DESTINATION)
    return [
        f"every step did what it should, in {seconds:.1f} s",
        f"destination holds {plural(total, 'file')} ({len(demo.by_network)} came by network, "
        f"{len(demo.by_drive)} by drive), 1 known corrupt (on purpose)",
        f"{shown(demo.folder)}/source and {shown(demo.folder)}/destination are each a "
        "LIBRARIAN_HOME: librarian.sqlite3, stores/",
        "look around, e.g. (or: file list, store list, librarian list):",
        f"  LIBRARIAN_HOME={home} LIBRARIAN_NAME={DESTINATION} {cli_command()} status",
    ]


def cli_command() -> str:
    """How to call the CLI from here: the console script beside this Python, if any."""
    script = Path(sys.executable).with_name("librarian-async")
    if script.exists():
        return shown(script.absolute())
    return f"{shown(Path(sys.executable))} -m librarian_async"
