"""Removing the staged files of incoming transfers that ended without an ingest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from librarian_async.api.state import ApiState, StoreOpener
from librarian_async.db import catalog
from librarian_async.db.models import Store
from librarian_async.db.transfers import Unstaged
from librarian_async.errors import StoreError

log = logging.getLogger(__name__)


async def unstage(api: ApiState, ended: Sequence[Unstaged]) -> None:
    """Remove the staged file of every ended transfer (after its status is committed), and
    the directories that leaves empty; other transfers' files in a shared directory stay.

    What cannot be removed is logged and left for the orphan sweep; it never turns a status
    change that is already committed into an error.
    """
    if not any(item.staging_path for item in ended):
        return
    async with api.context.sessions() as session:
        stores = {store.id: store for store in await catalog.all_stores(session)}
    await asyncio.to_thread(remove_staging_dirs, api.open_store, stores, ended)


def remove_staging_dirs(
    open_store: StoreOpener, stores: Mapping[int, Store], ended: Sequence[Unstaged]
) -> None:
    for item in ended:
        store = stores.get(item.store_id)
        if store is None or not item.staging_path:
            continue
        try:
            open_store(store).remove_staging_dir(Path(item.staging_path), item.upload_name)
        except (OSError, StoreError) as error:
            log.warning(
                "transfer %d: staging %s not removed: %s",
                item.transfer_id,
                item.staging_path,
                error,
            )
