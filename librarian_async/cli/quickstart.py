"""``quickstart``: a working librarian under LIBRARIAN_HOME, its tasks run once.

Idempotent: a second run reuses the database, stores and sample files it finds.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database, safe_url
from librarian_async.cli.running import exit_code
from librarian_async.config import Settings, parse_task_config
from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.migrate import upgrade
from librarian_async.db.models import Store
from librarian_async.ingest import IngestOptions, add_local_file, ingest_target
from librarian_async.runner import build_scheduler

STORES = ("store", "clone")
# (name in the catalogue, size in bytes): a night of observations, small to large.
SAMPLES = [(f"2459000/zen.2459000.{n:05d}.sum.uvh5", 2 ** (10 + n % 13)) for n in range(12)]


def register(commands: Any) -> None:
    quickstart = commands.add_parser(
        "quickstart", help="set up a demo librarian under LIBRARIAN_HOME and run its tasks once"
    )
    quickstart.set_defaults(handler=quickstart_librarian)


async def quickstart_librarian(args: argparse.Namespace, settings: Settings) -> int:
    if not args.verbose:  # the summary below says it all
        logging.getLogger("librarian_async").setLevel(logging.WARNING)
    home = settings.home.resolve()
    print(f"librarian {settings.name!r}, database {safe_url(settings)}")
    await upgrade(settings.resolved_database_url)
    async with database(settings) as app:
        for name in STORES:
            await ensure_store(app, home / "stores" / name, name)
        added = await add_samples(app, home / "samples")
        print(f"sample files: {added} added, {len(SAMPLES) - added} already catalogued")
        config_file = write_task_config(home / "quickstart-tasks.json")
        print(f"task configuration: {config_file}\nrunning every task once...")
        config = parse_task_config(config_file.read_text(), str(config_file))
        scheduler = await build_scheduler(app, config)
        code = exit_code(await scheduler.run_once())
    print("\ntry next: .venv/bin/librarian-async status   (or: file list, store list, --help)")
    return code


async def ensure_store(app: Context, root: Path, name: str) -> None:
    async with app.sessions.begin() as session:
        if name in await catalog.store_names(session):
            return
        for area in ("staging", "store"):
            (root / area).mkdir(parents=True, exist_ok=True)
        row = Store(name=name, staging_path=str(root / "staging"), store_path=str(root / "store"))
        await catalog.add_store(session, row)
    print(f"store {name!r} created at {root}")


async def add_samples(app: Context, folder: Path) -> int:
    """Write the sample files (deterministic bytes) and add those not yet catalogued."""
    store_row, store = await ingest_target(app, "store")
    added = 0
    for name, size in SAMPLES:
        async with app.sessions() as session:
            if await catalog.file_exists(session, name):
                continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(name).randbytes(size))
        await add_local_file(app, store_row, store, path, name, IngestOptions("quickstart"))
        added += 1
    return added


def write_task_config(path: Path) -> Path:
    tasks = {
        "check_integrity": [
            {
                "task_name": "Integrity check",
                "every": "01:00:00",
                "soft_timeout": "00:30:00",
                "store_name": "store",
                "age_in_days": 7,
            }
        ],
        "create_local_clone": [
            {
                "task_name": "Local cloner",
                "every": "01:00:00",
                "soft_timeout": "00:30:00",
                "age_in_days": 7,
                "clone_from": "store",
                "clone_to": ["clone"],
                "files_per_run": 256,
                "disable_store_on_full": True,
            }
        ],
    }
    path.write_text(json.dumps(tasks, indent=2) + "\n")
    return path
