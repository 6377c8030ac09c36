"""C library functions that Python's standard library does not wrap (syncfs,
sync_file_range, mallopt), looked up once each."""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def libc_function(name: str) -> Any | None:
    """A C library function by name (errno kept for ``ctypes.get_errno``), None where the C
    library has none (not Linux, or not glibc): callers then do without it."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (AttributeError, OSError):
        return None
