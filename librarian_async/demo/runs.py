"""Running task entries once, the way ``run --once --only NAME`` does, and judging them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from librarian_async.config import TaskConfig, load_task_config, parse_task_config
from librarian_async.demo.facts import describe_counts
from librarian_async.demo.sites import DESTINATION, DemoFailed, Site
from librarian_async.runner import build_scheduler
from librarian_async.scheduler import RunResult
from librarian_async.tasks.base import Report

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_config(file_name: str) -> TaskConfig:
    """One of the seed's configurations, exactly as the user guide writes it."""
    return load_task_config(EXAMPLES / file_name)


def config_of(task_type: str, entry: dict[str, Any]) -> TaskConfig:
    """A one-entry configuration written here, checked like any configuration file."""
    document = {task_type: [{"every": "01:00:00", "soft_timeout": "00:30:00", **entry}]}
    return parse_task_config(json.dumps(document), f"demo {entry['task_name']!r}")


async def run_task(site: Site, config: TaskConfig, task_name: str) -> RunResult:
    """One run of the entry ``task_name`` of ``config`` at ``site``."""
    scheduler = await build_scheduler(site.app, config, only={task_name})
    [result] = await scheduler.run_once()
    return result


async def run_clean(site: Site, config: TaskConfig, task_name: str) -> Report:
    """Like :func:`run_task`, for a run that must end ``ok``; its report."""
    result = await run_task(site, config, task_name)
    if not result.clean:
        raise DemoFailed(f"{site.name}: {task_name}: {result.outcome}: {why(result)}")
    return result.report


def why(result: RunResult) -> str:
    """The first problem, or the last line of the error (a traceback ends with the cause)."""
    if result.report.problems:
        return result.report.problems[0]
    lines = [line for line in (result.error or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no reason given"


def expect(condition: bool, failure: str) -> None:
    """Stop the demo with ``failure`` unless ``condition`` holds."""
    if not condition:
        raise DemoFailed(failure)


def check_delivered(statuses: dict[str, int], copies: set[str], expected: set[str]) -> None:
    """The source's transfers to the destination are all COMPLETED, and it records a copy
    there of exactly the ``expected`` files."""
    expect(
        statuses == {"COMPLETED": len(expected)},
        f"the source's transfers to {DESTINATION!r}: {describe_counts(statuses)} "
        f"(expected {len(expected)} COMPLETED)",
    )
    expect(
        copies == expected,
        f"the source records {len(copies)} files copied to {DESTINATION!r}, "
        f"expected {len(expected)}",
    )
