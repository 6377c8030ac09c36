"""``demo``: two librarians on this machine exchange files by network and by SneakerNet."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from librarian_async.config import Settings

NARRATED = ("librarian_async", "httpx")


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="two librarians on loopback: network clone, SneakerNet, integrity check",
        description="Start two librarians ('source' and 'destination') in this process, on "
        "127.0.0.1 with SQLite, and walk through a network clone, a SneakerNet transfer and "
        "an integrity check, printing what each step did. Exit 0 when every step did what "
        "it should. The folder is rebuilt on every run.",
    )
    demo.add_argument(
        "--home",
        type=Path,
        help="folder for both librarians (default: $LIBRARIAN_HOME/demo, i.e. ./var/demo); "
        "a previous demo's folder is replaced, any other non-empty folder refused",
    )
    demo.set_defaults(handler=demo_librarians)


async def demo_librarians(args: argparse.Namespace, settings: Settings) -> int:
    from librarian_async.demo import run_demo  # only this command needs the demo's imports

    with quiet_logs(args.verbose):
        return await run_demo(settings, args.home or settings.home / "demo")


@contextmanager
def quiet_logs(verbose: bool) -> Iterator[None]:
    """The demo tells what happens itself; the tasks' and HTTP calls' own lines only with
    ``-v`` (without it, only errors)."""
    loggers = [logging.getLogger(name) for name in NARRATED]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logger.level if verbose else logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
