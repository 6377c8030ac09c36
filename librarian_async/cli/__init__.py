"""The operator command line: ``python -m librarian_async`` or ``librarian-async``.

This package is the composition root: the only code that reads settings and builds a
Context. Every command prints one clear line and exits non-zero on bad input (2 for
configuration problems, 1 for everything else); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
from collections.abc import Sequence

from librarian_async.cli.common import fail_with, os_problem, print_problems
from librarian_async.config import load_settings
from librarian_async.errors import ConfigError, LibrarianError
from librarian_async.heap import keep_buffer_pages

COMMAND_GROUPS = {  # command: the module of librarian_async.cli that registers it
    "db": "database",
    "store": "stores",
    "librarian": "peers",
    "user": "peers",
    "file": "files",
    "manifest": "manifest",
    "config": "running",
    "run": "running",
    "serve": "serve",
    "status": "status",
    "quickstart": "quickstart",
    "demo": "demo",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: with only the commands of the group it names (each group
    imports what its commands need: ~50 ms of start-up saved by loading one), or all."""
    parser = argparse.ArgumentParser(
        prog="librarian-async",
        description="Background tasks, API and operator tools of a librarian data archive.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log per-file detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _groups_named(argv):
        importlib.import_module(f"librarian_async.cli.{group}").register(commands)
    return parser


def _groups_named(argv: Sequence[str] | None) -> list[str]:
    """The group of the command ``argv`` names (its first word that is not an option), or
    every group (for ``--help``, and an unknown command's list of choices)."""
    words = [word for word in (argv or []) if not word.startswith("-")]
    if words and words[0] in COMMAND_GROUPS:
        return [COMMAND_GROUPS[words[0]]]
    return list(dict.fromkeys(COMMAND_GROUPS.values()))


def main(argv: Sequence[str] | None = None) -> int:
    keep_buffer_pages()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
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
