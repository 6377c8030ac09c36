"""``manifest export|ingest``: SneakerNet, moving files between librarians on a drive.

``export`` runs at the source (it writes the manifest of a drive store and, with a
destination, the outgoing transfers). ``ingest`` runs at the destination, directly on its
database: exit 0 when every entry is staged or skipped, 1 when some entry failed (each is
listed on stderr, one line), 2 for a manifest that cannot be used (nothing is done).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from librarian_async.cli.common import database, fail_with, print_json
from librarian_async.config import Settings

# The SneakerNet modules (and through them the web stack) load only for these commands:
# every other command, ``run --once`` first, starts faster without them.


def register(commands: Any) -> None:
    manifest = commands.add_parser("manifest", help="SneakerNet: ship a drive store's files")
    actions = manifest.add_subparsers(dest="action", required=True, metavar="ACTION")

    export = actions.add_parser(
        "export", help="write the manifest of a drive store (at the source librarian)"
    )
    export.add_argument("--store", required=True, help="the drive store")
    export.add_argument(
        "--destination", metavar="LIB", help="create outgoing transfers to this librarian"
    )
    export.add_argument("--disable-store", action="store_true", help="disable the store after")
    export.add_argument(
        "--mark-unavailable", action="store_true", help="mark its instances unavailable after"
    )
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.add_argument("--json", action="store_true", help="print the summary as JSON")
    export.set_defaults(handler=export_command)

    ingest = actions.add_parser(
        "ingest", help="stage the files of a shipped drive (at the destination librarian)"
    )
    ingest.add_argument("manifest", type=Path, metavar="FILE")
    ingest.add_argument(
        "--store-root",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the drive's store is mounted",
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    ingest.set_defaults(handler=ingest_command)


async def export_command(args: argparse.Namespace, settings: Settings) -> int:
    from librarian_async.sneakernet import export_manifest

    async with database(settings) as app:
        summary = await export_manifest(
            app,
            store_name=args.store,
            output=args.output,
            destination=args.destination,
            disable_store=args.disable_store,
            mark_unavailable=args.mark_unavailable,
        )
    if args.json:
        print_json(summary.as_json())
    else:
        print("\n".join(summary.lines()))
    return 0


async def ingest_command(args: argparse.Namespace, settings: Settings) -> int:
    from librarian_async.sneakernet import ManifestError, ingest_manifest

    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    try:
        async with database(settings) as app:
            summary = await ingest_manifest(app, args.manifest, args.store_root, progress)
    except ManifestError as error:
        return fail_with(str(error), code=2)
    finally:
        if progress is not None:
            progress.end()
    if args.json:
        print_json(summary.as_json())
    else:
        print("\n".join(summary.lines()))
    for line in summary.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in summary.failed:
        print(f"failed: {line}", file=sys.stderr)
    return summary.exit_code


class ProgressLine:
    """A one-line ``\\r`` counter on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        self.stream.write(f"\ringesting: {done}/{total} files")
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
