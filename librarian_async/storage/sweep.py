"""Finding leftovers in a staging area: entries no transfer will ever come back for."""

from __future__ import annotations

import os
from pathlib import Path


def old_staging_entries(staging: Path, older_than: float, limit: int) -> list[Path]:
    """Up to ``limit`` top-level entries of ``staging`` last modified before the epoch
    time ``older_than`` (one directory listing; nothing below the top level is visited)."""
    found: list[Path] = []
    try:
        entries = os.scandir(staging)
    except FileNotFoundError:
        return found
    with entries:
        for entry in entries:
            if _modified_before(entry, older_than):
                found.append(Path(entry.path))
                if len(found) >= limit:
                    break
    return found


def _modified_before(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_mtime < cutoff
    except FileNotFoundError:
        return False
