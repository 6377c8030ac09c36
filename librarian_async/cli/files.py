"""``file add|list|show``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database, os_problem, print_json, print_table
from librarian_async.config import Settings
from librarian_async.context import Context
from librarian_async.db import catalog
from librarian_async.db.models import File, Store
from librarian_async.enums import DeletionPolicy, parse_enum
from librarian_async.errors import (
    ConflictError,
    LibrarianError,
    NotFoundError,
    StoreUnavailableError,
)
from librarian_async.storage.checksum import (
    DEFAULT_ALGORITHM,
    FileDigest,
    copy_and_hash,
    remove_file_or_tree,
)
from librarian_async.storage.convert import local_store
from librarian_async.storage.store import LocalStore


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
        for number, path in enumerate(args.paths, 1):
            name = args.name or path.name
            try:
                await add_one(app, store_row, store, path, name, args)
            except (LibrarianError, OSError) as error:
                failures += 1
                reason = os_problem(error) if isinstance(error, OSError) else str(error)
                print(f"error: {path}: {reason}", file=sys.stderr)
            else:
                print(f"[{number}/{len(args.paths)}] added {name}", file=sys.stderr)
    return 1 if failures else 0


async def ingest_target(app: Context, name: str) -> tuple[Store, LocalStore]:
    """The store named ``name``, if it is enabled, ingestable and its directories exist."""
    async with app.sessions() as session:
        row = await catalog.store_by_name(session, name)
    if not row.enabled:
        raise StoreUnavailableError(f"store {name!r} is disabled")
    if not row.ingestable:
        raise StoreUnavailableError(f"store {name!r} is not ingestable (takes no new files)")
    store = local_store(row)
    store.ensure_available()
    return row, store


async def add_one(
    app: Context,
    store_row: Store,
    store: LocalStore,
    path: Path,
    name: str,
    args: argparse.Namespace,
) -> None:
    """Stage a copy of ``path``, commit it to ``name`` in the store, then catalogue it.

    Nothing stays in staging. If cataloguing fails, a file that this call put into the store
    is removed again, so no uncatalogued file is left behind.
    """
    target = await check_addable(app, store, path, name)
    existed = await asyncio.to_thread(os.path.lexists, target)
    digest = await stage_and_commit(store, path, name, args.checksum_algorithm)
    try:
        await catalogue(app, store_row, target, name, digest, args)
    except BaseException:
        if not existed:
            remove_file_or_tree(target)
        raise


async def check_addable(app: Context, store: LocalStore, path: Path, name: str) -> Path:
    """Refuse a bad name, a missing source, a full store or a taken name before copying."""
    target = store.resolve_in_store(name)
    if not await asyncio.to_thread(path.is_file):
        raise NotFoundError("not a regular file")
    store.ensure_room((await asyncio.to_thread(path.stat)).st_size)
    async with app.sessions() as session:
        if await catalog.file_exists(session, name):
            raise ConflictError(f"file {name!r} is already catalogued")
    return target


async def stage_and_commit(store: LocalStore, path: Path, name: str, algorithm: str) -> FileDigest:
    """Copy into a fresh staging directory (hashing on the way), then commit into the store."""
    staging = store.make_staging_dir(f"file-add-{path.name}")
    try:
        staged = staging / "file"
        digest = await copy_and_hash(path, staged, algorithm)
        await store.commit(staged, name, digest)
        return digest
    finally:
        store.remove_staging_dir(staging)


async def catalogue(
    app: Context,
    store_row: Store,
    target: Path,
    name: str,
    digest: FileDigest,
    args: argparse.Namespace,
) -> None:
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
            path=str(target),
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
