"""``file add|list|show``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database, print_json, print_table
from librarian_async.config import Settings
from librarian_async.db import catalog
from librarian_async.db.models import File
from librarian_async.enums import DeletionPolicy, parse_enum
from librarian_async.errors import ConflictError, LibrarianError, StoreUnavailableError
from librarian_async.storage.checksum import DEFAULT_ALGORITHM
from librarian_async.storage.convert import local_store


def register(commands: Any) -> None:
    file = commands.add_parser("file", help="catalogue files")
    actions = file.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="copy files into a store and catalogue them")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--store", required=True)
    add.add_argument("--name", help="catalogue name (only with one PATH); default: file name")
    add.add_argument("--uploader", default="operator")
    add.add_argument(
        "--checksum-algorithm", default=DEFAULT_ALGORITHM, choices=["md5", "xxh3", "sha256"]
    )
    add.add_argument(
        "--deletion-policy",
        default=DeletionPolicy.DISALLOWED,
        type=lambda text: parse_enum(DeletionPolicy, text),
    )
    add.set_defaults(handler=add_files)

    listing = actions.add_parser("list", help="list catalogued files")
    listing.add_argument("--store", help="only files with an instance on this store")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--after", help="start after this name (paging)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_files)

    show = actions.add_parser("show", help="one file with its instances")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_file)


async def add_files(args: argparse.Namespace, settings: Settings) -> int:
    """Each file is streamed into the store (checksum on the same pass), then catalogued."""
    if args.name and len(args.paths) > 1:
        raise ConflictError("--name needs exactly one PATH")
    failures = 0
    async with database(settings) as app:
        async with app.sessions() as session:
            store_row = await catalog.store_by_name(session, args.store)
        store = local_store(store_row)
        if not (store_row.enabled and store.available):
            raise StoreUnavailableError(
                f"store {args.store!r} is disabled or its directories are missing"
            )
        for number, path in enumerate(args.paths, 1):
            name = args.name or path.name
            try:
                await add_one(app, store_row, store, path, name, args)
                print(f"[{number}/{len(args.paths)}] added {name}", file=sys.stderr)
            except LibrarianError as error:
                failures += 1
                print(f"error: {path}: {error}", file=sys.stderr)
    return 1 if failures else 0


async def add_one(
    app: Any, store_row: Any, store: Any, path: Path, name: str, args: argparse.Namespace
) -> None:
    if not await asyncio.to_thread(path.is_file):
        raise ConflictError("not a regular file")
    async with app.sessions() as session:
        if await catalog.file_exists(session, name):
            raise ConflictError(f"file {name!r} is already catalogued")
    final_path, digest = await store.copy_in(path, name, args.checksum_algorithm)
    file = File(
        name=name,
        create_time=app.now(),
        size=digest.size,
        checksum=digest.checksum,
        uploader=args.uploader,
        source=app.settings.name,
    )
    async with app.sessions.begin() as session:
        await catalog.add_file_with_instance(
            session,
            file,
            store=store_row,
            path=str(final_path),
            deletion_policy=args.deletion_policy,
            created_time=file.create_time,
        )


async def list_files(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions() as session:
        store = await catalog.store_by_name(session, args.store) if args.store else None
        files = await catalog.list_files(session, limit=args.limit, after=args.after, store=store)
    rows = [file_row(file) for file in files]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "size", "checksum", "create_time", "source"])
    return 0


async def show_file(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions() as session:
        file = await catalog.file_by_name(session, args.name)
        instances = await catalog.instances_of(session, args.name)
    row = file_row(file) | {
        "uploader": file.uploader,
        "instances": [
            {
                "store": store_name,
                "path": instance.path,
                "available": instance.available,
                "deletion_policy": instance.deletion_policy.name,
                "created_time": instance.created_time,
            }
            for instance, store_name in instances
        ],
    }
    if args.json:
        print_json(row)
        return 0
    for key in ("name", "size", "checksum", "create_time", "uploader", "source"):
        print(f"{key:12} {row[key]}")
    print_table(row["instances"], ["store", "available", "deletion_policy", "path"])
    return 0


def file_row(file: File) -> dict[str, Any]:
    return {
        "name": file.name,
        "size": file.size,
        "checksum": file.checksum,
        "create_time": file.create_time,
        "source": file.source,
    }
