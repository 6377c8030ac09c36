"""Removing orphaned staging directories (PITFALLS: staging directories leaked forever).

A directory in a store's staging area is an orphan when no live incoming transfer (one
that still expects or holds bytes there) points at it and it has not changed for
:data:`ORPHAN_AGE`: its transfer ended and the removal failed, the process died between
making the directory and recording the transfer, or a ``file add`` was killed. The age
keeps the sweep away from a directory being created right now, whose transfer row is not
committed yet. Each sweep is bounded (:data:`SWEEP_LIMIT` entries per store).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from librarian_async.context import Context
from librarian_async.db import catalog, transfers
from librarian_async.db.models import Store
from librarian_async.errors import StoreError
from librarian_async.storage.convert import local_store
from librarian_async.storage.sweep import old_staging_entries

log = logging.getLogger(__name__)

ORPHAN_AGE = timedelta(days=1)
SWEEP_LIMIT = 1000


async def sweep_orphaned_staging(app: Context, *, age: timedelta = ORPHAN_AGE) -> int:
    """Remove orphaned staging directories of every enabled store; return how many."""
    async with app.sessions() as session:
        stores = [store for store in await catalog.all_stores(session) if store.enabled]
    removed = 0
    for store in stores:
        removed += await _sweep_store(app, store, age)
    return removed


async def _sweep_store(app: Context, store: Store, age: timedelta) -> int:
    cutoff = time.time() - age.total_seconds()
    old = await asyncio.to_thread(
        old_staging_entries, local_store(store).staging_path, cutoff, SWEEP_LIMIT
    )
    if not old:
        return 0
    async with app.sessions() as session:
        live = await transfers.live_staging_paths(session, [str(path) for path in old])
    orphans = [path for path in old if str(path) not in live]
    return await asyncio.to_thread(_remove, store, orphans)


def _remove(store: Store, orphans: Sequence[Path]) -> int:
    disk, removed = local_store(store), 0
    for orphan in orphans:
        try:
            disk.remove_staging_dir(orphan)
        except (OSError, StoreError) as error:
            log.warning("store %s: orphaned staging %s not removed: %s", store.name, orphan, error)
            continue
        log.info("store %s: removed orphaned staging %s", store.name, orphan)
        removed += 1
    return removed
