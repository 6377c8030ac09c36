"""Sample observation files: deterministic bytes, written out, then added like ``file add``."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from librarian_async.context import Context
from librarian_async.demo.sites import Site
from librarian_async.ingest import IngestOptions, add_local_file, ingest_target


def night(julian_date: int, count: int) -> dict[str, int]:
    """``count`` files of one observing night, name -> size (4 KiB to 128 KiB); every
    eighth is a calibration file in a subfolder of its own."""
    files = {}
    for number in range(count):
        if number % 8 == 7:
            name = f"{julian_date}/calibration/zen.{julian_date}.{number:05d}.calfits"
        else:
            name = f"{julian_date}/zen.{julian_date}.{number:05d}.sum.uvh5"
        files[name] = 2 ** (12 + number % 6)
    return files


async def add_samples(site: Site, files: Mapping[str, int], *, days_ago: int = 0) -> None:
    """Write each file under ``<home>/incoming`` and add it to the site's store ``store``,
    as if observed ``days_ago`` days ago."""
    store_row, store = await ingest_target(site.app, "store")
    with clock_set_back(site.app, days_ago):
        for name, size in files.items():
            path = write_sample(site.home / "incoming" / name, name, size)
            await add_local_file(site.app, store_row, store, path, name, IngestOptions("demo"))
            path.unlink()


def write_sample(path: Path, name: str, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(name).randbytes(size))
    return path


@contextmanager
def clock_set_back(app: Context, days: int) -> Iterator[None]:
    """The librarian's clock (``Context.now``) reads ``days`` days earlier in the block."""
    real = app.now
    app.now = lambda: real() - timedelta(days=days)
    try:
        yield
    finally:
        app.now = real


def total_size(files: Mapping[str, int]) -> int:
    return sum(files.values())
