"""``status``: last runs, stores, transfers, queue and corrupt files at a glance."""

from __future__ import annotations

import argparse
from typing import Any

from librarian_async.cli.common import database, human_bytes, print_json, print_table
from librarian_async.cli.stores import describe
from librarian_async.config import Settings
from librarian_async.db import catalog, overview, runs


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="what the librarian is doing")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=show_status)


async def show_status(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions() as session:
        report = {
            "librarian": settings.name,
            "last_runs": [run_row(run) for run in await runs.last_runs(session)],
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


def run_row(run: Any) -> dict[str, Any]:
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "task_name": run.task_name,
        "task_type": run.task_type,
        "started_at": run.started_at,
        "outcome": run.outcome,
        "duration_s": None if duration is None else round(duration, 2),
        "counts": run.counts,
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"librarian {report['librarian']}\n\nlast runs:")
    for run in report["last_runs"]:
        run["counts"] = " ".join(f"{k}={v}" for k, v in run["counts"].items())
    print_table(report["last_runs"], ["task_name", "started_at", "outcome", "duration_s", "counts"])
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
