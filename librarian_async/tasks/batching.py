"""Group per-file work into batches, so that a small file does not cost a thread hop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

BATCH_BYTES = 8 * 1024 * 1024
BATCH_FILES = 128


def batches(
    items: Iterable[T],
    size_of: Callable[[T], int],
    max_bytes: int = BATCH_BYTES,
    max_items: int = BATCH_FILES,
) -> Iterator[list[T]]:
    """Consecutive groups of at most ``max_items`` items and (unless one item alone is
    bigger) ``max_bytes`` bytes, in the original order."""
    batch: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if batch and (total + size > max_bytes or len(batch) == max_items):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch
