"""``config check`` and ``run``."""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database
from librarian_async.config import Settings, TaskConfig, check_references, load_task_config
from librarian_async.db import catalog, peers
from librarian_async.errors import ConfigError, DatabaseError
from librarian_async.looplag import LoopLag, measure_loop_lag
from librarian_async.runner import build_scheduler, freeze_startup_objects
from librarian_async.scheduler import RunResult, Scheduler
from librarian_async.tasks import REGISTRY


def register(commands: Any) -> None:
    config = commands.add_parser("config", help="background task configuration")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a task configuration file")
    check.add_argument(
        "file", nargs="?", type=Path, help="default: the file named by LIBRARIAN_BACKGROUND_CONFIG"
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="do not check store and librarian names against the database",
    )
    check.set_defaults(handler=check_config)

    run = commands.add_parser("run", help="run the background tasks")
    run.add_argument("--config", type=Path, help="default: LIBRARIAN_BACKGROUND_CONFIG")
    run.add_argument(
        "--once",
        action="store_true",
        help="run every entry once and exit: 0 clean, 1 problems, 2 bad config",
    )
    run.add_argument("--only", nargs="+", metavar="NAME", help="only these task names")
    run.add_argument(
        "--stats",
        action="store_true",
        help="with --once: also print the worst event-loop lag and the peak memory",
    )
    run.set_defaults(handler=run_tasks)


def config_path(given: Path | None, settings: Settings) -> Path:
    path = given or settings.background_config
    if path is None:
        raise ConfigError("no configuration file: pass FILE or set LIBRARIAN_BACKGROUND_CONFIG")
    return path


async def check_config(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the file; unless ``--offline``, also the store and librarian names it uses.

    A task type this version cannot run yet is a warning here (the file is valid); ``run``
    refuses it.
    """
    config = load_task_config(config_path(args.file, settings))
    if not args.offline:
        await check_names(settings, config)
    for label, entry in config.labelled():
        if entry.task_type not in REGISTRY:
            print(f"warning: {label}: task type not implemented yet", file=sys.stderr)
    print(f"{config.source}: ok, {len(config.entries)} task entries")
    for label, entry in config.labelled():
        print(f"  {label}: every {entry.every}, soft timeout {entry.soft_timeout or 'none'}")
    return 0


async def check_names(settings: Settings, config: TaskConfig) -> None:
    """Raise ConfigError for unknown stores and librarians; warn if the database is unusable."""
    try:
        async with database(settings) as app, app.sessions() as session:
            stores = await catalog.store_names(session)
            librarians = await peers.librarian_names(session)
    except DatabaseError as error:
        print(f"warning: names not checked against the catalogue: {error}", file=sys.stderr)
        return
    problems = check_references(config, stores, librarians)
    if problems:
        raise ConfigError(problems)


async def run_tasks(args: argparse.Namespace, settings: Settings) -> int:
    config = load_task_config(config_path(args.config, settings))
    only = set(args.only) if args.only else None
    async with database(settings) as app:
        scheduler = await build_scheduler(app, config, only=only)
        freeze_startup_objects()
        if args.once:
            async with measure_loop_lag() as lag:
                results = await scheduler.run_once()
            if args.stats:
                print_stats(lag)
            return exit_code(results)
        await run_until_signalled(scheduler)
    return 0


async def run_until_signalled(scheduler: Scheduler) -> None:
    """Run on schedule; SIGTERM or SIGINT drains in-flight runs, then returns."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, scheduler.stop)
    try:
        await scheduler.run_forever()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def print_stats(lag: LoopLag) -> None:
    """One machine-readable line for benchmarks and curious operators."""
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"stats: loop_lag_max_ms={lag.worst * 1000:.1f} peak_rss_mib={peak_rss_mib:.1f}")


def exit_code(results: list[RunResult]) -> int:
    for result in results:
        print(
            f"{result.task_name}: {result.outcome} in {result.duration:.2f}s "
            f"({result.report.summary()})"
        )
        for problem in result.report.problems:
            print(f"  {problem}")
    return 0 if all(result.clean for result in results) else 1
