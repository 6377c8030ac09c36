"""``store add|list|enable|disable``."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database, human_bytes, print_json, print_table
from librarian_async.config import Settings
from librarian_async.db import catalog
from librarian_async.db.models import Store
from librarian_async.errors import StoreError
from librarian_async.storage.convert import local_store


def register(commands: Any) -> None:
    store = commands.add_parser("store", help="manage stores")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="register a local store")
    add.add_argument("name")
    add.add_argument("--staging-path", type=Path, required=True)
    add.add_argument("--store-path", type=Path, required=True)
    add.add_argument("--no-ingestable", action="store_true", help="takes no new files")
    add.add_argument("--report-full-fraction", type=fraction, default=1.0, metavar="F")
    add.add_argument("--create", action="store_true", help="create missing directories")
    add.add_argument(
        "--offer",
        action="append",
        choices=OFFERABLE,
        metavar="METHOD",
        help="a transfer method by which peers may send to this store, most preferred first: "
        f"{', '.join(OFFERABLE)} (repeat; default: http and rsync; local only for peers "
        "on this host or a shared filesystem)",
    )
    add.set_defaults(handler=add_store)

    listing = actions.add_parser("list", help="stores with free space and flags")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_stores)

    for action, enabled in (("enable", True), ("disable", False)):
        switch = actions.add_parser(action, help=f"{action} a store")
        switch.add_argument("name")
        switch.set_defaults(handler=switch_store, enabled=enabled)


OFFERABLE = ("http", "local", "rsync")
DEFAULT_OFFER = ("http", "rsync")


def offered_methods(names: list[str] | None) -> dict[str, Any]:
    """The ``transfer_methods`` of a new store: http (its URL is filled in per request),
    local (senders on this host) and rsync (to this host), with this host's name."""
    host = socket.gethostname()
    fields = {"http": {}, "local": {"hostnames": [host]}, "rsync": {"hostname": host}}
    return {name: fields[name] for name in dict.fromkeys(names or DEFAULT_OFFER)}


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


async def add_store(args: argparse.Namespace, settings: Settings) -> int:
    """Insert the row first, so a taken name creates no directories; commit only after."""
    staging, store_path = args.staging_path.resolve(), args.store_path.resolve()
    row = Store(
        name=args.name,
        staging_path=str(staging),
        store_path=str(store_path),
        ingestable=not args.no_ingestable,
        enabled=True,
        report_full_fraction=args.report_full_fraction,
        transfer_methods=offered_methods(args.offer),
    )
    async with database(settings) as app, app.sessions.begin() as session:
        await catalog.add_store(session, row)
        if args.create:
            create_directories(staging, store_path)
    print(f"store {args.name!r} added (staging {staging}, store {store_path})")
    if not local_store(row).available:
        print(
            f"warning: store {args.name!r} is unavailable until both directories exist "
            "(use --create to make them)",
            file=sys.stderr,
        )
    return 0


def create_directories(*paths: Path) -> None:
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create {path}: {error.strerror or error}") from error


async def list_stores(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions() as session:
        rows = [await describe(session, store) for store in await catalog.all_stores(session)]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["free"] = human_bytes(row["free_bytes"]) if row["available"] else None
        print_table(
            rows,
            ["name", "enabled", "ingestable", "available", "free", "instances", "store_path"],
        )
    return 0


async def describe(session: Any, store: Store) -> dict[str, Any]:
    """A store row plus what only the disk knows: availability and free space."""
    disk = local_store(store)
    return {
        "name": store.name,
        "enabled": store.enabled,
        "ingestable": store.ingestable,
        "available": disk.available,
        "free_bytes": disk.free_space() if disk.available else 0,
        "report_full_fraction": store.report_full_fraction,
        "instances": await catalog.count_instances(session, store.id),
        "staging_path": store.staging_path,
        "store_path": store.store_path,
        "transfer_methods": store.transfer_methods,
    }


async def switch_store(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions.begin() as session:
        store = await catalog.store_by_name(session, args.name)
        store.enabled = args.enabled
    print(f"store {args.name!r} {'enabled' if args.enabled else 'disabled'}")
    return 0
