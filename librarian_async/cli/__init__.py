"""The operator command line: ``python -m librarian_async`` or ``librarian-async``.

This package is the composition root: the only code that reads settings and builds a
Context. Every command prints one clear line and exits non-zero on bad input (2 for
configuration problems, 1 for everything else); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
from collections.abc import Sequence

from librarian_async.cli import (
    database,
    demo,
    files,
    manifest,
    peers,
    quickstart,
    running,
    serve,
    status,
    stores,
)
from librarian_async.cli.common import fail_with, os_problem, print_problems
from librarian_async.config import load_settings
from librarian_async.errors import ConfigError, LibrarianError

COMMAND_GROUPS = (
    database,
    stores,
    peers,
    files,
    manifest,
    running,
    serve,
    status,
    quickstart,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="librarian-async",
        description="Background tasks, API and operator tools of a librarian data archive.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log per-file detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        return print_problems(error.problems)
    _configure_logging("DEBUG" if args.verbose else settings.log_level)
    try:
        result = args.handler(args, settings)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except ConfigError as error:
        return print_problems(error.problems)
    except LibrarianError as error:
        return fail_with(str(error))
    except OSError as error:  # a path the operator named cannot be read or written
        return fail_with(os_problem(error))
    except KeyboardInterrupt:
        return fail_with("interrupted", code=130)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
