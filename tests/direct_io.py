"""Watching and refusing O_DIRECT opens, for the tests of writes around the page cache."""

from __future__ import annotations

import errno
import os

import pytest


def record_opens(monkeypatch: pytest.MonkeyPatch, refuse_direct: bool = False) -> list[int]:
    """Record the flags of every ``os.open``; with ``refuse_direct``, behave like a filesystem
    without O_DIRECT (Linux creates the file, then fails the open with EINVAL)."""
    real_open = os.open
    flags_seen: list[int] = []

    def fake_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        flags_seen.append(flags)
        if refuse_direct and flags & os.O_DIRECT:
            os.close(real_open(path, flags & ~os.O_DIRECT, *args, **kwargs))  # type: ignore[arg-type]
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)
    return flags_seen
