"""``db upgrade``."""

from __future__ import annotations

import argparse
from typing import Any

from librarian_async.cli.common import safe_url
from librarian_async.config import Settings
from librarian_async.db.migrate import upgrade_sync
from librarian_async.errors import DatabaseError


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="migrate the database to the latest schema")
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.set_defaults(handler=upgrade_database)


def upgrade_database(args: argparse.Namespace, settings: Settings) -> int:
    try:
        upgrade_sync(settings.resolved_database_url, args.revision)
    except Exception as error:  # alembic and both drivers raise their own families
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatabaseError(f"db upgrade of {safe_url(settings)} failed: {detail}") from error
    print(f"database {safe_url(settings)} is at revision {args.revision}")
    return 0
