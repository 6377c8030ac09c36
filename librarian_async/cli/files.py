"""``file add|list|show``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database, os_problem, print_json, print_table
from librarian_async.config import Settings
from librarian_async.db import catalog
from librarian_async.db.models import File
from librarian_async.enums import DeletionPolicy, parse_enum
from librarian_async.errors import ConflictError, LibrarianError
from librarian_async.ingest import IngestOptions, add_local_file, ingest_target
from librarian_async.storage.checksum import DEFAULT_ALGORITHM


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
    listing.add_argument("--limit", type=positive_int, default=100)
    listing.add_argument("--after", help="start after this name (paging)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_files)

    show = actions.add_parser("show", help="one file with its instances")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_file)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


async def add_files(args: argparse.Namespace, settings: Settings) -> int:
    """Add each PATH in turn; a failed one is reported and the others still go in."""
    if args.name and len(args.paths) > 1:
        raise ConflictError("--name needs exactly one PATH")
    failures = 0
    async with database(settings) as app:
        store_row, store = await ingest_target(app, args.store)
        options = IngestOptions(args.uploader, args.checksum_algorithm, args.deletion_policy)
        for number, path in enumerate(args.paths, 1):
            name = args.name or path.name
            try:
                await add_local_file(app, store_row, store, path, name, options)
            except (LibrarianError, OSError) as error:
                failures += 1
                reason = os_problem(error) if isinstance(error, OSError) else str(error)
                print(f"error: {path}: {reason}", file=sys.stderr)
            else:
                print(f"[{number}/{len(args.paths)}] added {name}", file=sys.stderr)
    return 1 if failures else 0


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
