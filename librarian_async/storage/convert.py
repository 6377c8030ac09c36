"""Turn a ``stores`` row (or anything shaped like one) into the LocalStore doing disk work."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from librarian_async.storage.store import LocalStore


class StoreRow(Protocol):
    name: str
    staging_path: str
    store_path: str
    report_full_fraction: float


def local_store(row: StoreRow) -> LocalStore:
    return LocalStore(
        name=row.name,
        staging_path=Path(row.staging_path),
        store_path=Path(row.store_path),
        report_full_fraction=row.report_full_fraction,
    )
