"""Runs the configured task entries: one coroutine per entry, soft timeouts, clean shutdown.

* Each entry runs once at start, then every ``every`` measured from the start of its
  previous run. An overrun starts the next run at once; missed ticks are not made up.
* Runs of one entry never overlap: the entry's loop awaits each run before the next.
* A task can wake the entries of another task type (``app.wakeups``, see
  :mod:`librarian_async.wakeups`): their next run starts at once, or when the current ends.
* ``soft_timeout``: the task stops taking new items when its budget is spent; after
  ``timeout_grace`` more seconds its in-flight work is cancelled (``asyncio.timeout``).
* A run that raises is logged with its traceback and recorded; the entry runs again at its
  next tick and other entries never notice.
* ``stop()`` (SIGTERM/SIGINT): no new runs start; in-flight runs get ``shutdown_grace``
  seconds to finish, then are cancelled. Every run leaves a ``task_runs`` row.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from librarian_async.context import Context
from librarian_async.db import runs
from librarian_async.tasks.base import Budget, Report, TaskContext, TaskFunction
from librarian_async.wakeups import wait_first

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """How one run ended: ok, problems, error, timed_out or cancelled."""

    task_name: str
    outcome: str
    report: Report
    duration: float
    error: str | None = None

    @property
    def clean(self) -> bool:
        return self.outcome == "ok"


class Scheduler:
    """Owns the loops of all configured entries."""

    def __init__(
        self,
        app: Context,
        entries: Sequence[Any],
        registry: Mapping[str, TaskFunction],
        *,
        timeout_grace: float | None = None,
        shutdown_grace: float | None = None,
    ) -> None:
        self.app = app
        self.entries = list(entries)
        self.registry = registry
        self.timeout_grace = _or(timeout_grace, app.settings.timeout_grace)
        self.shutdown_grace = _or(shutdown_grace, app.settings.shutdown_grace)
        self._stopping = asyncio.Event()
        self.last_results: dict[str, RunResult] = {}  # per task name; bounded

    def stop(self) -> None:
        """Start a graceful shutdown: finish what runs, start nothing new."""
        self._stopping.set()

    async def run_once(self) -> list[RunResult]:
        """Run every entry once, concurrently, and return their results."""
        async with asyncio.TaskGroup() as group:
            pending = [group.create_task(self.run_entry(entry)) for entry in self.entries]
        return [task.result() for task in pending]

    async def run_forever(self) -> None:
        """Run every entry on its schedule until ``stop()``, then drain within the grace."""
        loops = [
            asyncio.create_task(self._entry_loop(entry), name=entry.task_name)
            for entry in self.entries
        ]
        try:
            await self._stopping.wait()
            _, still_running = await asyncio.wait(loops, timeout=self.shutdown_grace)
            for task in still_running:
                log.warning("cancelling %s: still running after the shutdown grace", task)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _entry_loop(self, entry: Any) -> None:
        loop = asyncio.get_running_loop()
        every = entry.every.total_seconds()
        with self.app.wakeups.listening(entry.task_type) as woken:
            while not self._stopping.is_set():
                started = loop.time()
                # A wake-up during the run below may come after it looked for work: it still
                # starts the next run at once.
                woken.clear()
                try:
                    await self.run_entry(entry)
                except Exception:  # the database itself failed; try again at the next tick
                    log.exception("%s: could not run", entry.task_name)
                delay = max(0.0, started + every - loop.time())
                if await self._stopped_within(delay, woken):
                    return

    async def _stopped_within(self, seconds: float, woken: asyncio.Event) -> bool:
        """Wait ``seconds``, or less if woken; True when the scheduler is stopping."""
        await wait_first((self._stopping, woken), at_most=seconds)
        return self._stopping.is_set()

    async def run_entry(self, entry: Any) -> RunResult:
        """One run of one entry, recorded in ``task_runs`` whatever happens."""
        task = TaskContext(
            app=self.app,
            task_name=entry.task_name,
            budget=Budget(entry.soft_timeout, self.app.monotonic),
        )
        run_id = await self._record_start(entry)
        started = self.app.monotonic()
        log.info("%s: started", entry.task_name)
        outcome, error = "cancelled", None
        try:
            outcome, error = await self._execute(entry, task)
        finally:
            result = RunResult(
                entry.task_name, outcome, task.report, self.app.monotonic() - started, error
            )
            await asyncio.shield(self._record_end(run_id, entry, result))
        return result

    async def _execute(self, entry: Any, task: TaskContext) -> tuple[str, str | None]:
        function = self.registry[entry.task_type]
        hard_limit = self._hard_limit(entry)
        try:
            async with asyncio.timeout(hard_limit) as scope:
                report = await function(task, entry)
        except TimeoutError:
            if scope.expired():
                return "timed_out", f"cancelled {self.timeout_grace:g}s after its soft timeout"
            return "error", traceback.format_exc()
        except asyncio.CancelledError:
            task.report.problem("cancelled by shutdown")
            raise
        except Exception:
            log.exception("%s: run failed", entry.task_name)
            return "error", traceback.format_exc()
        task.report = report
        return ("problems" if report.problems else "ok"), None

    def _hard_limit(self, entry: Any) -> float | None:
        if entry.soft_timeout is None:
            return None
        return float(entry.soft_timeout.total_seconds()) + self.timeout_grace

    async def _record_start(self, entry: Any) -> int:
        async with self.app.sessions.begin() as session:
            run = await runs.start_run(session, entry.task_type, entry.task_name, self.app.now())
            return run.id

    async def _record_end(self, run_id: int, entry: Any, result: RunResult) -> None:
        self.last_results[result.task_name] = result
        _log_end(entry.task_name, result)
        async with self.app.sessions.begin() as session:
            await runs.finish_run(
                session,
                run_id,
                outcome=result.outcome,
                finished_at=self.app.now(),
                counts=dict(result.report.counts),
                error=result.error,
            )
            if result.error:
                await runs.record_error(
                    session,
                    severity="error",
                    category="task",
                    message=result.error.strip().splitlines()[-1][:2000],
                    caller=entry.task_name,
                )


def _log_end(task_name: str, result: RunResult) -> None:
    level = logging.INFO if result.clean else logging.WARNING
    log.log(
        level,
        "%s: %s in %.2fs (%s)",
        task_name,
        result.outcome,
        result.duration,
        result.report.summary(),
    )
    for problem in result.report.problems:
        log.warning("%s: %s", task_name, problem)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
