"""Helpers shared by the command modules: opening the database, printing results."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from librarian_async.config import Settings
from librarian_async.context import Context, open_context
from librarian_async.errors import DatabaseError


def fail_with(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def os_problem(error: OSError) -> str:
    """``PATH: reason`` for a failed file operation, without the errno noise."""
    reason = error.strerror or str(error) or type(error).__name__
    return f"{error.filename}: {reason}" if error.filename else reason


def print_problems(problems: Sequence[str]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2


CONNECTION_ERRORS = (ConnectionError, socket.gaierror, TimeoutError)
"""What a driver raises, untranslated, when the database server cannot be reached."""


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Context]:
    """A Context whose database failures become one readable DatabaseError line."""
    try:
        async with open_context(settings) as app:
            yield app
    except DBAPIError as error:
        raise DatabaseError(_database_problem(settings, error)) from error
    except CONNECTION_ERRORS as error:
        raise DatabaseError(f"database {safe_url(settings)}: {error}") from error


def _database_problem(settings: Settings, error: DBAPIError) -> str:
    text = first_line(str(error.orig if error.orig is not None else error))
    if "no such table" in text or ("does not exist" in text and "relation" in text):
        return f"database {safe_url(settings)} has no schema; run `librarian-async db upgrade`"
    return f"database {safe_url(settings)}: {text}"


def first_line(text: str) -> str:
    """The first non-blank line of an error text (drivers add hints and SQL below it)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "(no message)")


def safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Aligned plain-text columns; an empty listing prints a note instead."""
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"
