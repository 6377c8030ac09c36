"""``status``: last runs, stores, transfers, queue and corrupt files at a glance."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from librarian_async.cli.common import database, human_bytes, print_json, print_table
from librarian_async.cli.stores import describe
from librarian_async.config import Settings, TaskEntry
from librarian_async.db import catalog, overview, runs
from librarian_async.db.models import TaskRun
from librarian_async.errors import ConfigError
from librarian_async.runner import task_config_of


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="what the librarian is doing")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=show_status)


async def show_status(args: argparse.Namespace, settings: Settings) -> int:
    schedule = configured_schedule(settings)
    async with database(settings) as app, app.sessions() as session:
        report = {
            "librarian": settings.name,
            "last_runs": task_rows(await runs.last_runs(session), schedule),
            "stores": [
                await describe(session, store) for store in await catalog.all_stores(session)
            ],
            "transfers": await overview.transfers_by_status(session),
            "send_queue": await overview.queue_by_destination(session),
            "corrupt_files": await overview.count_corrupt_files(session),
            "uncleared_errors": await overview.count_uncleared_errors(session),
        }
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return 0


def configured_schedule(settings: Settings) -> dict[str, TaskEntry]:
    """The entries of LIBRARIAN_BACKGROUND_CONFIG by task name (empty if unset or invalid)."""
    try:
        config = task_config_of(settings)
    except ConfigError as error:
        print(f"warning: next runs unknown: {error}", file=sys.stderr)
        return {}
    return {entry.task_name: entry for entry in config.entries}


def task_rows(last_runs: Sequence[TaskRun], schedule: dict[str, TaskEntry]) -> list[dict[str, Any]]:
    """The last run of every task name, plus configured entries that never ran."""
    rows = [run_row(run, schedule.get(run.task_name)) for run in last_runs]
    ran = {run.task_name for run in last_runs}
    rows += [never_run_row(entry) for name, entry in schedule.items() if name not in ran]
    return rows


def run_row(run: TaskRun, entry: TaskEntry | None) -> dict[str, Any]:
    """``next_run`` is due ``every`` after the last start, for entries still configured."""
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "task_name": run.task_name,
        "task_type": run.task_type,
        "started_at": run.started_at,
        "outcome": run.outcome,
        "duration_s": None if duration is None else round(duration, 2),
        "counts": run.counts,
        "next_run": None if entry is None else run.started_at + entry.every,
    }


def never_run_row(entry: TaskEntry) -> dict[str, Any]:
    return {
        "task_name": entry.task_name,
        "task_type": entry.task_type,
        "started_at": None,
        "outcome": "never run",
        "duration_s": None,
        "counts": {},
        "next_run": None,
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"librarian {report['librarian']}\n\nlast runs:")
    for run in report["last_runs"]:
        run["counts"] = " ".join(f"{k}={v}" for k, v in run["counts"].items())
    columns = ["task_name", "started_at", "outcome", "duration_s", "counts", "next_run"]
    print_table(report["last_runs"], columns)
    print("\nstores:")
    for store in report["stores"]:
        store["free"] = human_bytes(store["free_bytes"]) if store["available"] else None
    print_table(
        report["stores"], ["name", "enabled", "ingestable", "available", "free", "instances"]
    )
    print("\ntransfers:")
    print_table(report["transfers"], ["kind", "status", "count"])
    print("\nsend queue:")
    print_table(report["send_queue"], ["destination", "waiting", "in_flight"])
    print(f"\ncorrupt files: {report['corrupt_files']}")
    print(f"uncleared errors: {report['uncleared_errors']}")
