"""DirectFile: buffers written around the page cache, the full ones by a writer thread."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from librarian_async.storage.direct import (
    DIRECT_CHUNK,
    DirectFile,
    create_direct,
    direct_buffers,
)


def new_direct_file(path: Path, size: int) -> DirectFile:
    descriptor = create_direct(path)
    if descriptor is None:
        pytest.skip("this filesystem refuses O_DIRECT")
    return DirectFile(descriptor, direct_buffers(reuse=False), size)


def record_writes(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[tuple[str, int]]:
    """Record (thread name, length) of every os.write; each takes at least ``delay``."""
    real_write = os.write
    seen: list[tuple[str, int]] = []

    def slow_write(descriptor: int, data: bytes) -> int:
        time.sleep(delay)
        written = real_write(descriptor, data)
        seen.append((threading.current_thread().name, written))
        return written

    monkeypatch.setattr(os, "write", slow_write)
    return seen


@pytest.mark.parametrize("size", [DIRECT_CHUNK, 2 * DIRECT_CHUNK, 3 * DIRECT_CHUNK + 4097])
def test_full_buffers_are_written_behind_and_the_last_in_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = os.urandom(size)
    writes = record_writes(monkeypatch)
    file = new_direct_file(tmp_path / "f", size)
    for start in range(0, size, 100_000):  # pieces that do not line up with the buffers
        file.write(memoryview(data)[start : start + 100_000])
    file.finish()
    file.close()
    assert (tmp_path / "f").read_bytes() == data
    caller = threading.current_thread().name
    behind = [name for name, _ in writes if name != caller]
    assert all(name.startswith("direct-write") for name in behind)
    assert len(behind) == (size - 1) // DIRECT_CHUNK  # every buffer but the last
    assert writes[-1][0] == caller


def test_filling_the_next_buffer_overlaps_the_write_of_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = new_direct_file(tmp_path / "f", 2 * DIRECT_CHUNK)
    real_write = os.write
    release, done = threading.Event(), threading.Event()

    def held_write(descriptor: int, data: bytes) -> int:
        if descriptor != file.descriptor:
            return real_write(descriptor, data)
        release.wait(timeout=10)  # an in-line write would hold the caller here
        written = real_write(descriptor, data)
        done.set()
        return written

    monkeypatch.setattr(os, "write", held_write)
    file.write(memoryview(bytes(DIRECT_CHUNK)))  # the first buffer goes to a writer thread
    file.write(memoryview(bytes(DIRECT_CHUNK // 2)))  # the second fills meanwhile
    assert not done.is_set()  # both calls returned while the first write was still held
    release.set()
    file.close()
    assert done.is_set()


def test_close_waits_for_the_write_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = record_writes(monkeypatch, delay=0.3)
    file = new_direct_file(tmp_path / "f", 3 * DIRECT_CHUNK)
    file.write(memoryview(bytes(DIRECT_CHUNK)))
    file.close()  # abandoned mid-file: the descriptor must outlive the write using it
    assert [length for _, length in writes] == [DIRECT_CHUNK]
    assert file.descriptor == -1
    file.close()  # a second close does nothing


def test_an_error_of_a_write_behind_is_raised_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(descriptor: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    file = new_direct_file(tmp_path / "f", 3 * DIRECT_CHUNK)
    file.write(memoryview(bytes(DIRECT_CHUNK)))  # handed over: its error comes later
    with pytest.raises(OSError, match="No space left"):
        file.write(memoryview(bytes(DIRECT_CHUNK)))
    file.close()
