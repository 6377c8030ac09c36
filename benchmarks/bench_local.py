"""Benchmark check_integrity and create_local_clone against the machine's own limits.

Run by hand (it takes minutes and writes ~6 GB):

    .venv/bin/python benchmarks/bench_local.py                 # both databases, all sets
    .venv/bin/python benchmarks/bench_local.py --backends sqlite --sets small

The data (2,000 files of 1 MiB, 20,000 of 4 KiB, 4 of 256 MiB; MD5 checksums) is created
once under --data and reused by later runs; the benchmark never deletes and recreates a
large tree in the middle of a measurement (this file system is slow to create files right
after mass deletions). Each measurement is a whole ``run --once`` process of one task
entry, timed from outside, with the files in the page cache (warmed first, as are the
reference tools). Limits measured on the same files: ``md5sum`` in one process and with
``xargs -P2``; for the clone, ``cp`` and ``sync`` followed by ``md5sum`` of the copy (two
passes), and the disk's durable write speed (``dd oflag=direct conv=fsync`` of as many
bytes, around the page cache as the clone writes its big files): a clone
must make its copies durable, so it can never beat that disk, however fast it hashes.
Clone destinations are fresh folders; they are removed only after all measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from librarian_async.db.engine import create_engine
from librarian_async.db.migrate import upgrade
from librarian_async.db.models import File, Instance, Store

MIB = 1024 * 1024
SETS = {  # name: (file count, file size)
    "medium": (2_000, MIB),
    "small": (20_000, 4096),
    "large": (4, 256 * MIB),
}
PG_ADMIN = os.environ.get("LIBRARIAN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Measurement:
    task: str
    backend: str
    data_set: str
    files: int
    limit_name: str
    limit_seconds: float
    seconds: float  # the whole ``run --once`` process, start-up included
    run_seconds: float  # the task's run alone, as the scheduler timed it
    loop_lag_ms: float
    peak_rss_mib: float
    cpu_seconds: float  # user + system time of the process (both cores count)
    outcome: str

    def row(self) -> str:
        count, size = SETS[self.data_set]
        megabytes = count * size / 1e6
        limit_rate = megabytes / self.limit_seconds
        rate, run_rate = megabytes / self.seconds, megabytes / self.run_seconds
        return (
            f"{self.task:18} {self.backend:10} {self.data_set:6} {self.files:6d} "
            f"{self.seconds:6.2f}s {self.files / self.seconds:7.0f} {rate:7.1f} "
            f"{self.files / self.run_seconds:7.0f} {run_rate:7.1f} "
            f"{self.limit_name:10} {limit_rate:7.1f} {rate / limit_rate:5.2f} "
            f"{run_rate / limit_rate:5.2f} {self.peak_rss_mib:6.1f} {self.loop_lag_ms:6.1f} "
            f"{self.cpu_seconds:5.2f} {self.outcome}"
        )


HEADER = (
    f"{'task':18} {'backend':10} {'set':6} {'files':>6} {'time':>7} {'files/s':>7} "
    f"{'MB/s':>7} {'run f/s':>7} {'run MB/s':>7} {'limit':10} {'lim MB/s':>7} {'ratio':>5} "
    f"{'run r':>5} {'RSS MB':>6} {'lag ms':>6} {'cpu s':>5} outcome"
)
LEGEND = (
    "time, files/s, MB/s, ratio: the whole run --once process (start-up included); "
    "run f/s, run MB/s, run r: the task's run alone; ratio = our MB/s / the limit's MB/s; "
    "RSS MB: peak resident memory (MiB); lag ms: worst event-loop lateness; "
    "cpu s: user + system seconds of the process."
)


def create_data(root: Path, name: str) -> dict[str, str]:
    """Write one data set once; return {relative name: md5 hex}, cached in a JSON file."""
    folder = root / name
    manifest = root / f"{name}.md5.json"
    if manifest.exists():
        return dict(json.loads(manifest.read_text()))
    count, size = SETS[name]
    print(f"creating data set {name}: {count} files of {size} bytes...", flush=True)
    rng = random.Random(name)
    sums: dict[str, str] = {}
    for number in range(count):
        relative = f"d{number // 1000:03d}/f{number:06d}.dat"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        sums[relative] = write_random_file(folder / relative, size, rng)
    manifest.write_text(json.dumps(sums))
    return sums


def write_random_file(path: Path, size: int, rng: random.Random) -> str:
    """Write ``size`` pseudo-random bytes in 1 MiB pieces; return their md5 hex."""
    digest = hashlib.md5()
    with path.open("wb") as handle:
        for offset in range(0, size, MIB):
            piece = rng.randbytes(min(MIB, size - offset))
            digest.update(piece)
            handle.write(piece)
    return digest.hexdigest()


def warm_cache(folder: Path) -> None:
    subprocess.run(
        f"find {folder} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def timed(command: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def md5sum_limits(folder: Path) -> dict[str, float]:
    files = f"find {folder} -type f -print0"
    return {
        "md5sum": timed(f"{files} | xargs -0 -n 1000 md5sum"),
        "md5sum -P2": timed(f"{files} | xargs -0 -n 250 -P2 md5sum"),
    }


def clone_limit(folder: Path, scratch: Path) -> float:
    target = scratch / f"cp-{uuid.uuid4().hex[:8]}"
    return timed(
        f"cp -r {folder} {target} && sync -f {target} && "
        f"find {target} -type f -print0 | xargs -0 -n 1000 md5sum"
    )


def disk_write_limit(scratch: Path, size: int) -> float:
    """Seconds for ``dd`` to write ``size`` bytes to one new file around the page cache (as
    the clone writes big files) and fsync it: what the disk can make durable, the ceiling of
    any clone, whatever it hashes."""
    target = scratch / f"dd-{uuid.uuid4().hex[:8]}"
    megabytes = max(1, size // MIB)
    try:
        flags = "oflag=direct conv=fsync"
        return timed(f"dd if=/dev/zero of={target} bs=1M count={megabytes} {flags} 2>/dev/null")
    finally:
        target.unlink(missing_ok=True)


async def pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def database_url(backend: str, scratch: Path, tag: str) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{scratch / f'{tag}.sqlite3'}"
    await pg_admin(f'CREATE DATABASE "{tag}"')
    return f"{PG_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{tag}"


async def prepare_catalogue(
    url: str, data: Path, sets: dict[str, dict[str, str]], scratch: Path
) -> None:
    """Migrate, register one source store per data set, catalogue every file (bulk insert)."""
    await upgrade(url)
    engine = create_engine(url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            for name, sums in sets.items():
                staging = scratch / f"staging-{name}"
                staging.mkdir(parents=True, exist_ok=True)
                store_id = await add_store(connection, name, staging, data / name)
                await insert_files(connection, name, store_id, data / name, sums, now)
    finally:
        await engine.dispose()


async def add_store(connection: AsyncConnection, name: str, staging: Path, store: Path) -> int:
    result = await connection.execute(
        insert(Store).returning(Store.id),
        [{"name": name, "staging_path": str(staging), "store_path": str(store)}],
    )
    return int(result.scalar_one())


async def insert_files(
    connection: AsyncConnection,
    prefix: str,
    store_id: int,
    folder: Path,
    sums: dict[str, str],
    now: datetime,
) -> None:
    size = SETS[prefix][1]
    names = sorted(sums)
    for start in range(0, len(names), 5000):
        chunk = names[start : start + 5000]
        await connection.execute(
            insert(File),
            [
                {
                    "name": f"{prefix}/{n}",
                    "create_time": now,
                    "size": size,
                    "checksum": f"md5:::{sums[n]}",
                    "uploader": "bench",
                    "source": "bench",
                }
                for n in chunk
            ],
        )
        await connection.execute(
            insert(Instance),
            [
                {
                    "path": str(folder / n),
                    "file_name": f"{prefix}/{n}",
                    "store_id": store_id,
                    "created_time": now,
                }
                for n in chunk
            ],
        )


async def add_clone_store(url: str, name: str, root: Path) -> None:
    engine = create_engine(url)
    try:
        for area in ("staging", "store"):
            (root / area).mkdir(parents=True)
        async with engine.begin() as connection:
            await add_store(connection, name, root / "staging", root / "store")
    finally:
        await engine.dispose()


RUN_TIME = re.compile(r": \w+ in ([\d.]+)s")
STATS = re.compile(r"stats: loop_lag_max_ms=([\d.]+) peak_rss_mib=([\d.]+)")


def usage(pid: int) -> tuple[float, int]:
    """User + system CPU seconds and minor page faults of a running process so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def profiler(name: str) -> list[str]:
    """The interpreter to run, behind ``py-spy record`` when BENCH_PROFILE names a folder
    (collapsed stacks land there, sampled BENCH_PYSPY_RATE times a second, 200 unless set;
    with BENCH_PROFILER=cprofile, cProfile's output of the event loop's thread); profiled
    timings are not comparable."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        return [sys.executable]
    if os.environ.get("BENCH_PROFILER") == "cprofile":  # the event loop's thread only
        return [sys.executable, "-m", "cProfile", "-o", str(Path(folder) / f"{name}.prof")]
    output = Path(folder) / f"{name}.txt"
    rate = os.environ.get("BENCH_PYSPY_RATE", "200")
    command = ["py-spy", "record", "--format", "raw", "--rate", rate, "-o", str(output)]
    command += [*os.environ.get("BENCH_PYSPY_FLAGS", "").split(), "--"]
    return [*command, sys.executable]


def run_once(
    url: str, config: dict[str, list[dict[str, object]]], scratch: Path, concurrency: int
) -> tuple[float, float, float, float, float, str]:
    """Time one ``run --once`` process: seconds, the run's own seconds, loop lag, peak RSS,
    CPU seconds and the outcome line."""
    for entries in config.values():
        for entry in entries:
            if concurrency:
                entry["concurrency"] = concurrency
    path = scratch / f"tasks-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(config))
    env = os.environ | {
        "LIBRARIAN_DATABASE_URL": url,
        "LIBRARIAN_HOME": str(scratch),
        "LIBRARIAN_LOG_LEVEL": "WARNING",
    }
    os.sync()  # (untimed) the previous measurement's writes must not slow this one
    used_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            *profiler(path.stem),
            "-m",
            "librarian_async",
            "run",
            "--once",
            "--stats",
            "--config",
            str(path),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = used.ru_utime + used.ru_stime - used_before.ru_utime - used_before.ru_stime
    stats = STATS.search(done.stdout)
    lag, rss = (float(stats.group(1)), float(stats.group(2))) if stats else (-1.0, -1.0)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    ran = RUN_TIME.search(summary)
    run_seconds = float(ran.group(1)) if ran else seconds
    outcome = f"exit={done.returncode} {summary.split(' (')[0]}"
    return seconds, run_seconds, lag, rss, cpu, outcome


def integrity_entry(name: str) -> dict[str, list[dict[str, object]]]:
    return {
        "check_integrity": [
            {"task_name": f"check {name}", "every": "1:00:00", "store_name": name, "age_in_days": 1}
        ]
    }


def clone_entry(name: str, target: str, count: int) -> dict[str, list[dict[str, object]]]:
    return {
        "create_local_clone": [
            {
                "task_name": f"clone {name}",
                "every": "1:00:00",
                "age_in_days": 1,
                "clone_from": name,
                "clone_to": [target],
                "files_per_run": count,
            }
        ]
    }


async def bench_backend(
    backend: str,
    args: argparse.Namespace,
    sets: dict[str, dict[str, str]],
    limits: dict[str, dict[str, float]],
) -> list[Measurement]:
    tag = f"la_bench_{datetime.now(UTC):%Y%m%d%H%M%S}_{backend}"
    scratch = args.scratch / tag
    scratch.mkdir(parents=True)
    url = await database_url(backend, scratch, tag)
    await prepare_catalogue(url, args.data, sets, scratch)
    results: list[Measurement] = []
    cpus = os.cpu_count() or 1
    for name in sets:
        count = SETS[name][0]
        for workers, limit_name in ((1, "md5sum"), (cpus, "md5sum -P2")):
            timing = run_once(url, integrity_entry(name), scratch, workers)
            limit = limits[name][limit_name]
            task = f"check_integrity/{workers}"
            results.append(Measurement(task, backend, name, count, limit_name, limit, *timing))
        await add_clone_store(url, f"clone-{name}", scratch / f"clone-{name}")
        entry = clone_entry(name, f"clone-{name}", count)
        timing = run_once(url, entry, scratch, args.clone_workers)
        for limit_name in ("md5sum", "cp+md5sum", "disk write"):
            limit = limits[name][limit_name]
            task = "create_local_clone"
            results.append(Measurement(task, backend, name, count, limit_name, limit, *timing))
    if backend == "postgresql" and not args.keep:
        await pg_admin(f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)')
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/librarian-bench/data"))
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp/librarian-bench/runs"))
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sets", default="medium,small,large")
    parser.add_argument(
        "--clone-workers",
        type=int,
        default=0,
        help="create_local_clone's concurrency (default: the task's own default)",
    )
    parser.add_argument("--keep", action="store_true", help="keep clone folders and databases")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    sets = {name: create_data(args.data, name) for name in args.sets.split(",")}
    limits: dict[str, dict[str, float]] = {}
    for name in sets:
        warm_cache(args.data / name)
        limits[name] = md5sum_limits(args.data / name)
        limits[name]["cp+md5sum"] = clone_limit(args.data / name, args.scratch)
        count, size = SETS[name]
        limits[name]["disk write"] = disk_write_limit(args.scratch, count * size)
    results: list[Measurement] = []
    for backend in args.backends.split(","):
        results += asyncio.run(bench_backend(backend, args, sets, limits))
    print(
        f"\ncpus={os.cpu_count()} python={sys.version.split()[0]}; "
        "check_integrity/N ran with N workers"
    )
    print(LEGEND)
    print(HEADER)
    for measurement in results:
        print(measurement.row())
    if not args.keep:
        print(f"\nremoving clone folders under {args.scratch} (after all measurements)")
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
