"""Benchmark a network clone between two librarians on loopback against ``rsync -a``.

Run by hand (it takes minutes; bench_local.py's data sets are created once if absent):

    .venv/bin/python benchmarks/bench_network.py            # both databases, every method
    .venv/bin/python benchmarks/bench_network.py --backends sqlite --methods local --sets medium

Data: the first 1,000 files (sorted names) of bench_local's 1 MiB set and the first 10,000
of its 4 KiB set. For each backend, transfer method, data set (and send batch size) a fresh
pair of librarians: a *source* whose catalogue points at the data files in place (its
store's store_path is the data folder, so setting up copies nothing) and a *destination*
with one new store offering only that method, registered with each other as in
tests/librarians.py (user ``source`` READAPPEND at the destination, user ``destination``
CALLBACK at the source, peer credentials Fernet-encrypted). Both run as real ``serve``
processes on free loopback ports, without background tasks (but with --serve).

Timed: the seed's inter-librarian pipeline in one warm process per librarian
(benchmarks/stage_worker.py: each stage runs exactly as ``run --once --stats --only NAME``
runs it, but without an interpreter start-up per stage, as in a long-running ``serve``).
By default the stages run one after the other, in order: "Clone sender", "Queue consumer",
"Queue checker" at the source, then "Clone receiver" at the destination, in rounds until
every transfer is COMPLETED on both sides. With ``--concurrent`` they run as ``serve`` runs
them: each entry on its own schedule (``every`` = --every seconds), concurrently, timed
until the source has every transfer COMPLETED. ``--processes`` runs each stage as its own
``run --once`` process instead (start-up included). ``--serve`` runs the configurations,
hourly as written, inside both ``serve`` processes (only first runs and wake-ups can move
the files), timed from the source's start. Configurations: the seed's
examples/inter-librarian-*.json with the soft timeouts removed, ``send_batch_size`` from
--batch-sizes and ``files_per_run`` = the file count.

Next to each case, in the same run: ``rsync -a --files-from`` of the same files into a fresh
folder, once before and once after the pipeline (the mean is the baseline: on this virtual
machine the speed of writing new pages drifts by 2x within minutes); the ``sync`` after
each is timed too and printed as "rsync -a + sync", the durable copy that the pipeline
makes (rsync -a alone leaves it dirty in the page cache). The files are page-cached first
and dirty pages are flushed (untimed) before each measurement. Every destination folder is
new; this run's folder under --scratch is removed only after all cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select

from librarian_async.cli.stores import offered_methods
from librarian_async.db.engine import create_engine
from librarian_async.db.migrate import upgrade
from librarian_async.db.models import (
    IncomingTransfer,
    Instance,
    Librarian,
    OutgoingTransfer,
    RemoteInstance,
    Store,
    User,
)
from librarian_async.enums import AuthLevel, TransferStatus
from librarian_async.security import encrypt_secret, hash_password
from librarian_async.transfer import http as http_method

sys.path.insert(0, str(Path(__file__).parent))
import bench_local

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COUNTS = {"medium": 1_000, "small": 10_000}
SOURCE, DESTINATION = "source", "destination"
STAGES = (
    (SOURCE, "Clone sender"),
    (SOURCE, "Queue consumer"),
    (SOURCE, "Queue checker"),
    (DESTINATION, "Clone receiver"),
)
SHORT = {"Clone sender": "send", "Queue consumer": "consume", "Queue checker": "check"}
SHORT["Clone receiver"] = "receive"
MAX_ROUNDS = 6
CONCURRENT_LIMIT = 900.0  # seconds a concurrent pipeline may take before it counts as stuck
POLL_SECONDS = 0.05
SPOT_CHECKS = 8
LOOPBACK = "http://127.0.0.1"
ACCESS_LINE = re.compile(r'"POST /api/v2/([^\s?]+)\S* HTTP/[\d.]+" (\d{3})')


@dataclass
class Peer:
    """One librarian of a case: its settings, and its ``serve`` process once started."""

    name: str
    url: str
    home: Path
    port: int
    key: str
    log_level: str = "WARNING"
    background: Path | None = None  # the task configuration serve runs (--serve)
    process: subprocess.Popen[bytes] | None = None
    serve_rss_mib: float = -1.0

    def env(self, log_level: str = "WARNING") -> dict[str, str]:
        env = os.environ | {
            "LIBRARIAN_NAME": self.name,
            "LIBRARIAN_DATABASE_URL": self.url,
            "LIBRARIAN_HOME": str(self.home),
            "LIBRARIAN_ENCRYPTION_KEY": self.key,
            "LIBRARIAN_PORT": str(self.port),
            "LIBRARIAN_LOG_LEVEL": log_level,
        }
        env.pop("LIBRARIAN_BACKGROUND_CONFIG", None)
        if self.background is not None:
            env["LIBRARIAN_BACKGROUND_CONFIG"] = str(self.background)
        return env

    @property
    def log(self) -> Path:
        return self.home / "serve.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*bench_local.profiler(f"serve-{self.name}"), "-m", "librarian_async", "serve"],
                env=self.env(self.log_level),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Until ``ping/`` answers with our name; RuntimeError if serve exits or hangs."""
        request = urllib.request.Request(
            f"{LOOPBACK}:{self.port}/api/v2/ping/",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: serve exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    if json.load(answer).get("name") == self.name:
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: ping/ unanswered after {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Note the serve process's peak memory, then SIGTERM it (kill if it lingers)."""
        if self.process is None:
            return
        self.serve_rss_mib = peak_rss_mib(self.process.pid)
        # py-spy (BENCH_PROFILE) writes its profile on SIGINT, and passes it on
        profiled = bool(os.environ.get("BENCH_PROFILE"))
        self.process.send_signal(signal.SIGINT if profiled else signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-600:] if self.log.exists() else ""

    def requests(self) -> Counter[str]:
        """POSTs this serve process answered, by endpoint and status (INFO access log)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return Counter(f"{path} {status}" for path, status in ACCESS_LINE.findall(text))


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- set-up (direct inserts, outside the timed part) -------------------------------------------


def password_of(user: str) -> str:
    return f"bench-{user}-password"


async def prepare_source(
    peer: Peer, destination: Peer, folder: Path, data_set: str, sums: dict[str, str]
) -> None:
    """Catalogue the files in place on store ``store``; know the destination; let it call back."""
    await upgrade(peer.url)
    engine = create_engine(peer.url)
    staging = peer.home / "staging"
    staging.mkdir(parents=True)
    try:
        async with engine.begin() as connection:
            store_id = await bench_local.add_store(connection, "store", staging, folder)
            now = datetime.now(UTC)
            await bench_local.insert_files(connection, data_set, store_id, folder, sums, now)
            await add_peer_and_user(connection, peer, destination, AuthLevel.CALLBACK)
    finally:
        await engine.dispose()


async def prepare_destination(peer: Peer, source: Peer, method: str) -> None:
    """One empty store ``store`` offering only ``method``; know the source; let it send."""
    await upgrade(peer.url)
    engine = create_engine(peer.url)
    staging, area = peer.home / "staging", peer.home / "store"
    staging.mkdir(parents=True)
    area.mkdir(parents=True)
    row = {
        "name": "store",
        "staging_path": str(staging),
        "store_path": str(area),
        "transfer_methods": offered_methods([method]),
    }
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(Store), [row])
            await add_peer_and_user(connection, peer, source, AuthLevel.READAPPEND)
    finally:
        await engine.dispose()


async def add_peer_and_user(connection: Any, me: Peer, other: Peer, level: AuthLevel) -> None:
    """``other`` in our librarians table (we call it as a user named after us) and a user
    named after ``other`` (it calls us) with ``level``."""
    authenticator = encrypt_secret(me.key.encode(), f"{me.name}:{password_of(me.name)}")
    await connection.execute(
        insert(Librarian),
        [{"name": other.name, "url": LOOPBACK, "port": other.port, "authenticator": authenticator}],
    )
    await connection.execute(
        insert(User),
        [
            {
                "username": other.name,
                "password_hash": hash_password(password_of(other.name)),
                "auth_level": level,
            }
        ],
    )


def write_configs(
    folder: Path, batch: int, count: int, every: float | None = None
) -> tuple[Path, Path]:
    """The seed's two configurations, without soft timeouts, sized for this case (and with
    ``every`` seconds between runs, for the concurrent mode)."""
    source = json.loads((EXAMPLES / "inter-librarian-source.json").read_text())
    destination = json.loads((EXAMPLES / "inter-librarian-destination.json").read_text())
    for config in (source, destination):
        for entries in config.values():
            for entry in entries:
                entry.pop("soft_timeout", None)
                if every is not None:
                    entry["every"] = every
    source["send_clone"][0]["send_batch_size"] = batch
    for entry in destination.get("receive_clone", destination.get("recieve_clone", [])):
        entry["files_per_run"] = count
    paths = folder / "source-tasks.json", folder / "destination-tasks.json"
    for path, config in zip(paths, (source, destination), strict=True):
        path.write_text(json.dumps(config, indent=2))
    return paths


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class StageRun:
    round: int
    task: str
    seconds: float  # the whole run --once process, start-up included
    run_seconds: float  # the task's run alone, as the scheduler timed it
    loop_lag_ms: float
    peak_rss_mib: float
    exit_code: int
    summary: str
    problems: list[str]


class StageWorker:
    """A warm process of one librarian (benchmarks/stage_worker.py) running stages on
    demand, as a long-running ``serve`` would: no start-up per stage, no idle gap."""

    def __init__(self, peer: Peer, config: Path) -> None:
        profiler = bench_local.profiler(f"{peer.name}-{peer.port}")
        command = [*profiler, str(Path(__file__).parent / "stage_worker.py"), str(config)]
        self.process = subprocess.Popen(
            command,
            env=peer.env(),
            cwd=peer.home,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._read_until("READY") is None:
            raise RuntimeError(f"stage worker of {peer.name} did not start")

    def run(self, task: str) -> tuple[str, int]:
        """Run one entry; its output and exit code as ``run --once`` would give them."""
        self._send(task)
        return self._result()

    def start_concurrently(self, tasks: list[str]) -> None:
        """Let ``tasks`` run on their schedules, concurrently, until :meth:`stop_concurrent`."""
        self._send(f"CONCURRENT {'|'.join(tasks)}")

    def stop_concurrent(self) -> tuple[str, int]:
        """Stop the concurrent runs; one line per run that did something, and the exit code."""
        self._send("STOP")
        return self._result()

    def _result(self) -> tuple[str, int]:
        output = self._read_until("END")
        if output is None:
            return f"stage worker died (exit {self.process.wait()})", 2
        code = re.search(r"^exit=(\d+)$", output, re.MULTILINE)
        return output, int(code.group(1)) if code else 2

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n")
        self.process.stdin.flush()

    def _read_until(self, marker: str) -> str | None:
        assert self.process.stdout is not None
        lines: list[str] = []
        for line in self.process.stdout:
            if line.rstrip("\n") == marker:
                return "".join(lines)
            lines.append(line)
        return None

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_stage(
    peer: Peer, config: Path, task: str, round_number: int, worker: StageWorker | None
) -> StageRun:
    """Time one stage: in ``worker`` (warm), else as a ``run --once --stats --only TASK``
    process of ``peer`` (start-up included)."""
    started = time.perf_counter()
    if worker is not None:
        stdout, code = worker.run(task)
        stderr = ""
    else:
        command = [sys.executable, "-m", "librarian_async", "run", "--once", "--stats"]
        command += ["--config", str(config), "--only", task]
        done = subprocess.run(
            command, env=peer.env(), cwd=peer.home, capture_output=True, text=True
        )
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    seconds = time.perf_counter() - started
    stats = bench_local.STATS.search(stdout)
    lag, rss = (float(stats.group(1)), float(stats.group(2))) if stats else (-1.0, -1.0)
    lines = stdout.splitlines()
    index = next((i for i, line in enumerate(lines) if line.startswith(f"{task}:")), None)
    if index is None:
        summary, problems = f"no result line: {(stderr or stdout).strip()[-300:]}", []
    else:
        summary = lines[index][len(task) + 2 :]
        problems = [line.strip() for line in lines[index + 1 :] if line.startswith("  ")]
    ran = bench_local.RUN_TIME.search(lines[index]) if index is not None else None
    run_seconds = float(ran.group(1)) if ran else seconds
    return StageRun(round_number, task, seconds, run_seconds, lag, rss, code, summary, problems)


def run_in_rounds(
    case: Case, configs: dict[str, tuple[Peer, Path]], workers: dict[str, StageWorker], state: State
) -> None:
    """The stages one after the other, in rounds, until every transfer is COMPLETED."""
    source, destination = configs[SOURCE][0], configs[DESTINATION][0]
    for round_number in range(1, MAX_ROUNDS + 1):
        for side, task in STAGES:
            peer, config = configs[side]
            stage = run_stage(peer, config, task, round_number, workers.get(side))
            case.stages.append(stage)
            print(f"  {case.label} round {round_number} {task}: {stage.seconds:.2f}s "
                  f"{stage.summary}", flush=True)  # fmt: skip
        case.rounds = round_number
        previous, state = state, asyncio.run(pipeline_state(source, destination))
        if state.done(case.files) or state == previous:
            break


def run_concurrently(
    case: Case,
    workers: dict[str, StageWorker],
    source: Peer,
    destination: Peer,
    timeline: bool = False,
) -> None:
    """The stages as ``serve`` runs them: each on its schedule (``every``), concurrently,
    timed from their start until the source has every transfer COMPLETED; the CPU seconds
    each process used meanwhile are noted too."""
    pids = {
        f"{side} {role}": process.pid
        for side, peer in ((SOURCE, source), (DESTINATION, destination))
        for role, process in (("serve", peer.process), ("stages", workers[side].process))
        if process is not None
    }
    used = {name: bench_local.usage(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    for side in (DESTINATION, SOURCE):
        workers[side].start_concurrently([task for owner, task in STAGES if owner == side])
    watch = Timeline() if timeline else None
    completed = asyncio.run(wait_until_completed(source, case.files, watch))
    case.wall_seconds = time.perf_counter() - started
    for name, pid in pids.items():
        cpu, faults = bench_local.usage(pid)
        case.cpu[name] = (cpu - used[name][0], faults - used[name][1])
    case.rounds = 1
    for side in (SOURCE, DESTINATION):
        output, code = workers[side].stop_concurrent()
        for task in (task for owner, task in STAGES if owner == side):
            case.stages.append(summed_stage(task, output, code))
    print(f"  {case.label} concurrently: {case.wall_seconds:.2f}s, all COMPLETED: {completed}")
    spent = ", ".join(f"{name} {cpu:.2f} ({faults:,})" for name, (cpu, faults) in case.cpu.items())
    total = sum(cpu for cpu, _ in case.cpu.values())
    print(f"    CPU s (page faults) meanwhile: {spent}; {total:.2f} s in all")


class Timeline:
    """The source's outgoing transfers by status during a concurrent pipeline, printed as
    they change (--timeline): shows when batches start and end and what waits on what."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last: dict[str, int] = {}

    async def note(self, connection: Any) -> None:
        by_status = select(OutgoingTransfer.status, func.count()).group_by(OutgoingTransfer.status)
        rows = (await connection.execute(by_status)).all()
        counts = {TransferStatus(status).name: int(n) for status, n in rows}
        if counts != self.last:
            self.last = counts
            seen = ", ".join(f"{name} {n}" for name, n in counts.items())
            print(f"    {time.perf_counter() - self.started:5.2f} s: {seen}", flush=True)


def run_under_serve(
    case: Case, source: Peer, destination: Peer, configs: tuple[Path, Path], timeline: bool
) -> None:
    """The seed's configurations as written (hourly) inside both ``serve`` processes, as
    deployed: the destination is serving first, then timed from the start of the source's
    ``serve`` (start-up included) until it has every transfer COMPLETED. Only each entry's
    first run and the wake-ups can move the files within the hour."""
    source.background, destination.background = configs
    destination.start()
    destination.wait_until_serving()
    started = time.perf_counter()
    source.start()
    watch = Timeline() if timeline else None
    completed = asyncio.run(wait_until_completed(source, case.files, watch))
    case.wall_seconds = time.perf_counter() - started
    case.rounds = 1
    print(f"  {case.label} under serve: {case.wall_seconds:.2f}s, all COMPLETED: {completed}")


async def wait_until_completed(source: Peer, count: int, timeline: Timeline | None) -> bool:
    """Poll the source until ``count`` outgoing transfers are COMPLETED (or time is up)."""
    engine = create_engine(source.url)
    query = select(func.count()).where(OutgoingTransfer.status == TransferStatus.COMPLETED)
    deadline = time.monotonic() + CONCURRENT_LIMIT
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                if timeline is not None:
                    await timeline.note(connection)
                if (await connection.execute(query)).scalar_one() >= count:
                    return True
            await asyncio.sleep(POLL_SECONDS)
        return False
    finally:
        await engine.dispose()


def summed_stage(task: str, output: str, code: int) -> StageRun:
    """One task's busy runs of a concurrent pipeline as one stage: seconds and counts summed."""
    stats = bench_local.STATS.search(output)
    lag, rss = (float(stats.group(1)), float(stats.group(2))) if stats else (-1.0, -1.0)
    seconds, runs, counts, problems, mine = 0.0, 0, Counter[str](), [], False
    for line in output.splitlines():
        if line.startswith("  "):
            problems += [line.strip()] if mine else []
            continue
        ran = bench_local.RUN_TIME.search(line)
        mine = line.startswith(f"{task}: ") and ran is not None
        if ran is not None and mine:
            seconds, runs = seconds + float(ran.group(1)), runs + 1
            counts.update({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)})
    summed = " ".join(f"{key}={value}" for key, value in counts.items())
    summary = f"{runs} busy runs, {seconds:.2f}s in all ({summed})"
    return StageRun(1, task, seconds, seconds, lag, rss, code, summary, problems)


def flush_dirty_pages() -> None:
    subprocess.run(["sync"], check=True)


def warm_files(folder: Path, listing: Path) -> None:
    """Read the listed files once, so that every measurement starts with them cached."""
    subprocess.run(
        f"cd {folder} && tr '\\n' '\\0' < {listing} | xargs -0 cat > /dev/null",
        shell=True,
        check=True,
    )


def rsync_baseline(folder: Path, listing: Path, target: Path) -> tuple[float, float]:
    """Seconds of ``rsync -a`` of the listed files into the new folder ``target``, and of
    the ``sync`` after it (what making its copy durable, as the pipeline does, would add)."""
    flush_dirty_pages()
    copy = bench_local.timed(f"rsync -a --files-from={listing} {folder}/ {target}/")
    return copy, bench_local.timed("sync")


# --- checking -----------------------------------------------------------------------------------


@dataclass
class State:
    outgoing: dict[str, int]
    incoming: dict[str, int]
    remote_instances: int
    destination_instances: int
    pending_callbacks: int

    def done(self, count: int) -> bool:
        return (
            self.outgoing.get("COMPLETED", 0) == count
            and self.incoming.get("COMPLETED", 0) == count
            and self.pending_callbacks == 0
        )

    def describe(self) -> str:
        def statuses(counts: dict[str, int]) -> str:
            return ",".join(f"{name}={n}" for name, n in sorted(counts.items())) or "none"

        return (
            f"outgoing {statuses(self.outgoing)}; incoming {statuses(self.incoming)}; "
            f"remote instances {self.remote_instances}; destination instances "
            f"{self.destination_instances}; callbacks pending {self.pending_callbacks}"
        )


async def status_counts(url: str, table: Any) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(table.status, func.count()).group_by(table.status)
            )
            return {TransferStatus(status).name: int(n) for status, n in rows.all()}
    finally:
        await engine.dispose()


async def scalar(url: str, query: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(query)).scalar_one()
    finally:
        await engine.dispose()


async def pipeline_state(source: Peer, destination: Peer) -> State:
    pending = select(func.count()).where(IncomingTransfer.callback_pending.is_(True))
    return State(
        outgoing=await status_counts(source.url, OutgoingTransfer),
        incoming=await status_counts(destination.url, IncomingTransfer),
        remote_instances=await scalar(source.url, select(func.count(RemoteInstance.id))),
        destination_instances=await scalar(destination.url, select(func.count(Instance.id))),
        pending_callbacks=await scalar(destination.url, pending),
    )


async def spot_check(destination: Peer, data_set: str, sums: dict[str, str]) -> list[str]:
    """md5 of a few received files against the data set's manifest; problems found."""
    chosen = random.Random(data_set).sample(sorted(sums), SPOT_CHECKS)
    names = [f"{data_set}/{relative}" for relative in chosen]
    query = select(Instance.file_name, Instance.path).where(Instance.file_name.in_(names))
    engine = create_engine(destination.url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()
    finally:
        await engine.dispose()
    problems = []
    for relative in chosen:
        paths = [path for name, path in rows if name == f"{data_set}/{relative}"]
        if len(paths) != 1:
            problems.append(f"{relative}: {len(paths)} instances at the destination")
            continue
        digest = await asyncio.to_thread(md5_of, Path(paths[0]))
        if digest != sums[relative]:
            problems.append(f"{paths[0]}: md5 {digest}, expected {sums[relative]}")
    return problems


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while piece := handle.read(bench_local.MIB):
            digest.update(piece)
    return digest.hexdigest()


def verify(state: State, count: int, spot_problems: list[str]) -> list[str]:
    problems = list(spot_problems)
    if state.destination_instances != count:
        problems.append(f"destination has {state.destination_instances} instances, not {count}")
    if state.outgoing.get("COMPLETED", 0) != count or sum(state.outgoing.values()) != count:
        problems.append(f"source transfers not all COMPLETED: {state.describe()}")
    if state.incoming.get("COMPLETED", 0) != count:
        problems.append(f"destination transfers not all COMPLETED: {state.describe()}")
    if state.remote_instances != count:
        problems.append(f"source records {state.remote_instances} remote instances, not {count}")
    return problems


# --- one case -----------------------------------------------------------------------------------


@dataclass
class Case:
    backend: str
    method: str
    data_set: str
    batch: int
    files: int
    rsync_runs: list[float] = field(default_factory=list)  # before and after the pipeline
    rsync_syncs: list[float] = field(default_factory=list)  # the sync after each of them
    stages: list[StageRun] = field(default_factory=list)
    rounds: int = 0
    problems: list[str] = field(default_factory=list)
    serve_rss: tuple[float, float] = (-1.0, -1.0)
    requests: dict[str, Counter[str]] = field(default_factory=dict)
    wall_seconds: float | None = None  # the concurrent mode's whole pipeline
    cpu: dict[str, tuple[float, int]] = field(default_factory=dict)  # seconds, page faults

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.method}/{self.data_set}/b{self.batch}"

    def add_rsync(self, copy: float, sync: float) -> None:
        self.rsync_runs.append(copy)
        self.rsync_syncs.append(sync)

    @property
    def rsync_seconds(self) -> float:
        """The mean of the rsync runs (this disk's page-cache speed drifts by 2x)."""
        return sum(self.rsync_runs) / len(self.rsync_runs)

    @property
    def megabytes(self) -> float:
        return self.files * bench_local.SETS[self.data_set][1] / 1e6

    def stage_seconds(self, task: str) -> float:
        return sum(stage.seconds for stage in self.stages if stage.task == task)

    @property
    def seconds(self) -> float:
        if self.wall_seconds is not None:
            return self.wall_seconds
        return sum(stage.seconds for stage in self.stages)

    @property
    def run_seconds(self) -> float:
        if self.wall_seconds is not None:
            return self.wall_seconds
        return sum(stage.run_seconds for stage in self.stages)

    def batches(self) -> int:
        return math.ceil(self.files / self.batch)

    def sender_requests(self) -> int:
        """Requests the source makes, inferred: ping/logged per sender run; per batch
        batch_stage, checkin/update ONGOING and STAGED, and for http its uploads."""
        sender_runs = sum(1 for stage in self.stages if stage.task == "Clone sender")
        uploads = 0
        if self.method == "http":
            size = bench_local.SETS[self.data_set][1]
            per_request = max(1, min(http_method.REQUEST_FILES, http_method.REQUEST_BYTES // size))
            uploads = sum(
                math.ceil(min(self.batch, self.files - start) / per_request)
                for start in range(0, self.files, self.batch)
            )
        return sender_runs + 3 * self.batches() + uploads

    def callback_requests(self) -> str:
        """Requests the destination made to the source (counted from its access log; the
        benchmark's own ``ping/`` is left out)."""
        counted = self.requests.get(SOURCE)
        if counted is None:
            return "-"
        return str(sum(n for key, n in counted.items() if not key.startswith("ping/ ")))

    def row(self) -> str:
        rate, rsync_rate = self.megabytes / self.seconds, self.megabytes / self.rsync_seconds
        run_rate = self.megabytes / self.run_seconds
        stages = " ".join(f"{self.stage_seconds(task):7.2f}" for _, task in STAGES)
        rss = max((stage.peak_rss_mib for stage in self.stages), default=-1.0)
        lag = max((stage.loop_lag_ms for stage in self.stages), default=-1.0)
        outcome = "ok" if not self.problems else "FAIL"
        return (
            f"{self.backend:10} {self.method:5} {self.data_set:6} {self.files:6d} {self.batch:5d} "
            f"{self.batches():4d} {self.rounds:2d} {stages} {self.seconds:7.2f} "
            f"{self.files / self.seconds:7.0f} {rate:7.1f} {rsync_rate:7.1f} "
            f"{rate / rsync_rate:5.2f} {run_rate:7.1f} {run_rate / rsync_rate:5.2f} "
            f"{rss:6.1f} {lag:6.1f} {self.serve_rss[0]:5.0f}/{self.serve_rss[1]:<5.0f} "
            f"{self.sender_requests():6d} {self.callback_requests():>6} {outcome}"
        )


HEADER = (
    f"{'backend':10} {'meth':5} {'set':6} {'files':>6} {'batch':>5} {'btch':>4} {'rd':>2} "
    f"{'send s':>7} {'consum s':>7} {'check s':>7} {'recv s':>7} {'total s':>7} "
    f"{'files/s':>7} {'MB/s':>7} {'rsync':>7} {'ratio':>5} {'run MB/s':>7} {'run r':>5} "
    f"{'RSS MB':>6} {'lag ms':>6} {'serve RSS':>11} {'s>d rq':>6} {'d>s rq':>6} outcome"
)
LEGEND = (
    "send/consum/check/recv s: each stage as the benchmark waited for it (summed over rounds), "
    "in a warm worker per librarian (with --processes: a run --once process, start-up "
    "included); total s, files/s, MB/s, ratio: the whole pipeline, stage after stage "
    "(--concurrent: from the start of the stages until the source has every transfer COMPLETED; "
    "stage columns then sum the runs that did something); rsync: rsync -a of the same files, "
    "mean of the runs before and after the pipeline (MB/s); ratio = our MB/s / rsync's; run "
    "MB/s, run r: the tasks' runs alone, as the scheduler timed them; btch: send-queue batches "
    "(ceil(files/batch)); rd: rounds until all COMPLETED; RSS MB, lag ms: the worst peak memory "
    "(MiB) and event-loop lateness of the stage processes; serve RSS: peak MiB of the "
    "source/destination serve processes; s>d rq: requests of the source to the destination, "
    "inferred (ping/logged per sender run, 3 per batch, http uploads); d>s rq: requests of the "
    "destination to the source (callbacks), counted with --count-requests."
)


def bench_case(args: argparse.Namespace, case: Case, sums: dict[str, str], stamp: str) -> Case:
    tag = f"la_net_{stamp}_{case.backend[:2]}_{case.method}_{case.data_set}_b{case.batch}"
    folder = args.run_folder / tag
    folder.mkdir(parents=True)
    listing = folder / "files.txt"
    listing.write_text("".join(f"{name}\n" for name in sorted(sums)))
    data = args.data / case.data_set
    key = Fernet.generate_key().decode()
    ports = free_ports(2)
    urls = [asyncio.run(bench_local.database_url(case.backend, folder, f"{tag}_{side}"))
            for side in ("src", "dst")]  # fmt: skip
    level = "INFO" if args.count_requests else "WARNING"
    source = Peer(SOURCE, urls[0], folder / SOURCE, ports[0], key, level)
    destination = Peer(DESTINATION, urls[1], folder / DESTINATION, ports[1], key, level)
    asyncio.run(prepare_source(source, destination, data, case.data_set, sums))
    asyncio.run(prepare_destination(destination, source, case.method))
    every = args.every if args.concurrent and not args.serve else None
    source_config, destination_config = write_configs(folder, case.batch, case.files, every)
    configs = {SOURCE: (source, source_config), DESTINATION: (destination, destination_config)}
    workers: dict[str, StageWorker] = {}
    try:
        if not args.serve:
            for peer in (source, destination):
                peer.start()
            for peer in (source, destination):
                peer.wait_until_serving()
        warm_files(data, listing)
        case.add_rsync(*rsync_baseline(data, listing, folder / "rsync-before"))
        warm_files(data, listing)
        flush_dirty_pages()
        state = asyncio.run(pipeline_state(source, destination))
        if not args.serve and (args.concurrent or not args.processes):
            workers = {side: StageWorker(*configs[side]) for side in configs}
        if args.serve:
            paths = (source_config, destination_config)
            run_under_serve(case, source, destination, paths, args.timeline)
        elif args.concurrent:
            run_concurrently(case, workers, source, destination, args.timeline)
        else:
            run_in_rounds(case, configs, workers, state)
        state = asyncio.run(pipeline_state(source, destination))
        case.add_rsync(*rsync_baseline(data, listing, folder / "rsync-after"))
        spot_problems = asyncio.run(spot_check(destination, case.data_set, sums))
        case.problems = verify(state, case.files, spot_problems)
        if case.rounds > 1:
            print(f"  {case.label}: needed {case.rounds} rounds")
    finally:
        for worker in workers.values():
            worker.stop()
        for peer in (source, destination):
            peer.stop()
        case.serve_rss = (source.serve_rss_mib, destination.serve_rss_mib)
    if args.count_requests:
        case.requests = {SOURCE: source.requests(), DESTINATION: destination.requests()}
    for problem in case.problems:
        print(f"FAIL {case.label}: {problem}", flush=True)
    if case.backend == "postgresql" and not args.keep:
        for url in urls:
            name = url.rsplit("/", 1)[1]
            asyncio.run(bench_local.pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return case


def print_stage_details(cases: list[Case]) -> None:
    print("\nper stage run: process s, run s, peak RSS MiB, loop lag ms, exit, summary")
    for case in cases:
        for stage in case.stages:
            print(
                f"{case.label:28} r{stage.round} {SHORT[stage.task]:8} {stage.seconds:7.2f} "
                f"{stage.run_seconds:7.2f} {stage.peak_rss_mib:6.1f} {stage.loop_lag_ms:6.1f} "
                f"{stage.exit_code} {stage.summary[:150]}"
            )
            for problem in stage.problems[:3]:
                print(f"{'':32}problem: {problem[:150]}")
    for case in cases:
        runs = ", ".join(f"{case.megabytes / seconds:.1f}" for seconds in case.rsync_runs)
        durable = ", ".join(
            f"{case.megabytes / (copy + sync):.1f}"
            for copy, sync in zip(case.rsync_runs, case.rsync_syncs, strict=True)
        )
        ours = case.megabytes / case.seconds
        print(
            f"{case.label}: rsync -a before and after the pipeline: {runs} MB/s; "
            f"rsync -a + sync (durable, like the pipeline): {durable} MB/s; pipeline {ours:.1f}"
        )
    for case in cases:
        for side, counted in case.requests.items():
            listed = ", ".join(f"{key}={n}" for key, n in sorted(counted.items()))
            print(f"{case.label}: requests served by {side}: {listed or 'none'}")


def package_snapshot() -> str:
    """When the package's newest module was modified: the code this run measured."""
    package = Path(http_method.__file__).resolve().parents[1]
    newest = max(path.stat().st_mtime for path in package.rglob("*.py"))
    return f"{datetime.fromtimestamp(newest, UTC):%Y-%m-%d %H:%M:%S} UTC"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/librarian-bench/data"))
    parser.add_argument(
        "--scratch", type=Path, default=Path("/var/tmp/librarian-bench/network-runs")
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--methods", default="http,local,rsync")
    parser.add_argument("--sets", default="medium,small")
    parser.add_argument(
        "--batch-sizes", default="128", help="send_batch_size values, comma-separated"
    )
    parser.add_argument(
        "--count-requests",
        action="store_true",
        help="serve at LIBRARIAN_LOG_LEVEL=INFO and count the requests in the access logs",
    )
    parser.add_argument("--keep", action="store_true", help="keep scratch folders and databases")
    parser.add_argument(
        "--processes",
        action="store_true",
        help="run each stage as its own run --once process (start-up included) instead of "
        "in a warm worker per librarian",
    )
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="run the stages concurrently on their schedules, as serve does, instead of one "
        "after the other",
    )
    parser.add_argument(
        "--every", type=float, default=0.25, help="seconds between runs of a stage (--concurrent)"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="run the seed's configurations as written (hourly) inside both serve processes, "
        "timed from the source's start: only first runs and wake-ups move the files",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print the source's transfers by status as they change (--concurrent)",
    )
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%m%d%H%M%S}"
    # This run's own folder: another run sharing --scratch keeps its files.
    args.run_folder = args.scratch / f"run-{stamp}-{os.getpid()}"
    args.run_folder.mkdir(parents=True)
    sets = {}
    for name in args.sets.split(","):
        everything = bench_local.create_data(args.data, name)
        sets[name] = {key: everything[key] for key in sorted(everything)[: COUNTS[name]]}
    print(f"load before: {os.getloadavg()}; package as of {package_snapshot()}", flush=True)
    cases: list[Case] = []
    for backend in args.backends.split(","):
        for method in args.methods.split(","):
            for name, sums in sets.items():
                for batch in map(int, args.batch_sizes.split(",")):
                    case = Case(backend, method, name, batch, len(sums))
                    cases.append(bench_case(args, case, sums, stamp))
    print(f"load after: {os.getloadavg()}")
    rsync = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout
    print(f"\ncpus={os.cpu_count()} python={sys.version.split()[0]} rsync={rsync.split()[2]}")
    print(f"librarian_async as of {package_snapshot()} (newest module's modification time)")
    print(LEGEND)
    print(HEADER)
    for case in cases:
        print(case.row())
    print_stage_details(cases)
    failed = [case.label for case in cases if case.problems]
    print(f"\nFAIL: {', '.join(failed)}" if failed else "\nevery case verified")
    if not args.keep:
        print(f"removing {args.run_folder} (after all measurements)")
        shutil.rmtree(args.run_folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            args.scratch.rmdir()  # only if no other run uses it


if __name__ == "__main__":
    main()
