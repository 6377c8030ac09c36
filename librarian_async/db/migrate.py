"""Run the alembic migration chain from code (``db upgrade``, tests, the demo)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    """An alembic Config for our migration chain, bound to ``url``."""
    from alembic.config import Config  # alembic is only needed to migrate: import it late

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Upgrade ``url`` to ``revision``.

    Our alembic env runs its own event loop; when one is already running in this thread,
    the upgrade goes to a worker thread instead.
    """
    from alembic import command

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade from async code: alembic's env runs its own loop, so give it a thread."""
    await asyncio.to_thread(upgrade_sync, url, revision)
