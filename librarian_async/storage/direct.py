"""Writing new files around the page cache (O_DIRECT), for big copies and uploads.

Writing a big file through the page cache costs more CPU than hashing it: every byte is
copied into newly allocated cache pages (on a virtual machine each new page may also fault
in the hypervisor), and those pages then push other data out of the cache. Measured on a
2-core VM, 2,000 files of 1 MiB copied, hashed and fsynced by 4 threads: 484-491 MB/s and
7.8 CPU seconds through the cache, 1,173-1,199 MB/s and 2.8 CPU seconds with O_DIRECT.

A direct write needs its buffer, length and file offset aligned to the device's logical
block size, so bytes are gathered in a page-aligned buffer and written in whole blocks; the
file's unaligned tail is written after switching the descriptor back to cached writes, as is
the rest of a file on a device that refuses our alignment (bigger blocks than 4 KiB). The
bytes are on the device when a direct write returns; fsync (or a batch's syncfs) is still
what flushes the device's cache and makes the file's size and blocks durable.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

DIRECT_MIN_BYTES = 256 * 1024
"""Files this big are written around the page cache; smaller ones go through it, where a
batch of them is made durable by one syncfs."""
DIRECT_CHUNK = 1024 * 1024
"""Bytes gathered per direct write."""
DIRECT_ALIGNMENT = 4096
"""Alignment of direct writes: the logical block size is 512 or 4096 on the disks we know."""
WRITER_THREADS = 4
"""Threads writing :class:`DirectFile` buffers in the background, for all files at once."""

_buffers = threading.local()


def create_direct(path: Path) -> int | None:
    """Create ``path`` (which must not exist) for direct writes and return its descriptor;
    None where O_DIRECT is not available or the filesystem refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | flag
    try:
        return os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
    # Linux creates the file before it checks O_DIRECT; O_EXCL means it is ours to remove.
    path.unlink(missing_ok=True)
    return None


def aligned_buffer(size: int) -> memoryview:
    """A new page-aligned buffer (anonymous memory) of ``size`` bytes."""
    return memoryview(mmap.mmap(-1, size))


def thread_buffer(size: int, slot: int = 0) -> memoryview:
    """A reusable page-aligned buffer of ``size`` bytes for the calling thread (``slot``
    tells apart the buffers of one size that a thread needs at once).

    Allocating (and zeroing) a fresh 1 MiB buffer per file would cost more than reading a
    small file; each worker thread keeps its own instead. Page-aligned, any of them can
    feed a direct write.
    """
    cache: dict[tuple[int, int], memoryview] = _buffers.__dict__.setdefault("by_size", {})
    if (size, slot) not in cache:
        cache[size, slot] = aligned_buffer(size)
    return cache[size, slot]


def direct_buffers(*, reuse: bool = True) -> tuple[memoryview, memoryview]:
    """Two aligned buffers for a :class:`DirectFile`: the calling thread's own pair (for one
    file at a time, closed before the next), or with ``reuse=False`` a new pair."""
    if reuse:  # slot -1: apart from the read-ahead's buffers of this size (slots 1-4)
        return thread_buffer(DIRECT_CHUNK, 0), thread_buffer(DIRECT_CHUNK, -1)
    return aligned_buffer(DIRECT_CHUNK), aligned_buffer(DIRECT_CHUNK)


def write_direct(descriptor: int, data: memoryview) -> None:
    """Write ``data`` (in an aligned buffer) at the descriptor's aligned offset; a length that
    is not a whole number of blocks must be the file's end, written through the cache."""
    aligned = len(data) - len(data) % DIRECT_ALIGNMENT
    _write_all(descriptor, data[:aligned])
    if aligned < len(data):
        _stop_direct(descriptor)
        _write_all(descriptor, data[aligned:])


def _write_all(descriptor: int, data: memoryview) -> None:
    while data:
        try:
            data = data[os.write(descriptor, data) :]
        except OSError as error:
            # A device whose blocks are bigger than our alignment refuses direct writes:
            # nothing of the refused write was written, the rest goes through the cache.
            if error.errno != errno.EINVAL or not _stop_direct(descriptor):
                raise


def _stop_direct(descriptor: int) -> bool:
    """Switch the descriptor to cached writes; False if it was not direct."""
    flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
    fcntl.fcntl(descriptor, fcntl.F_SETFL, flags & ~os.O_DIRECT)
    return bool(flags & os.O_DIRECT)


class DirectFile:
    """A new file written around the page cache, a buffer at a time, in the background.

    Bytes are gathered in one of two aligned buffers (a multiple of the block size); a full
    buffer goes to a writer thread while the caller fills the other, so reading and hashing
    the next bytes overlap the device's write of the last ones (a direct write returns only
    once the device has the bytes: done in line, every copy would wait for the disk at each
    buffer). One write is in flight at a time, so the file grows in order. Its error is
    raised by the next call that waits for it (:meth:`filled`, :meth:`write`,
    :meth:`finish`). The buffer that holds the file's last bytes (by ``size``, the length
    the file will have) is written in line: nothing would overlap it, and a hop to another
    thread costs a 1 MiB file more than it gains.
    """

    def __init__(self, descriptor: int, buffers: tuple[memoryview, memoryview], size: int) -> None:
        self.descriptor = descriptor
        self._filling, self._spare = buffers
        self._filled = 0
        self._unwritten = size  # bytes to come, including those in the buffers
        self._in_flight: Future[None] | None = None

    def space(self) -> memoryview:
        """The free end of the buffer being filled: fill its start, then call :meth:`filled`."""
        return self._filling[self._filled :]

    def filled(self, count: int) -> None:
        """``count`` more bytes are in the buffer (at the start of the last :meth:`space`)."""
        self._filled += count
        if self._filled == len(self._filling):
            self._write_behind()

    def write(self, data: memoryview) -> None:
        """Copy ``data`` into the buffers (any length)."""
        while data:
            space = self.space()
            count = min(len(data), len(space))
            space[:count] = data[:count]
            self.filled(count)
            data = data[count:]

    def finish(self) -> None:
        """Write what is still gathered: the file is complete (not yet durable)."""
        self._wait()
        write_direct(self.descriptor, self._filling[: self._filled])
        self._filled = 0

    def close(self) -> None:
        """Let a write in flight end, then close the descriptor (once: later calls do
        nothing). That write's error is not raised here: :meth:`finish` raises it."""
        if self.descriptor < 0:
            return
        if self._in_flight is not None:
            self._in_flight.exception()  # waits
            self._in_flight = None
        descriptor, self.descriptor = self.descriptor, -1
        os.close(descriptor)

    def _write_behind(self) -> None:
        self._wait()  # the spare buffer is free, and the file's offset is where we left it
        full = self._filling
        self._unwritten -= len(full)
        if self._unwritten <= 0:
            write_direct(self.descriptor, full)
        else:
            self._in_flight = _writer_threads().submit(write_direct, self.descriptor, full)
            self._filling, self._spare = self._spare, full
        self._filled = 0

    def _wait(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()


@functools.cache
def _writer_threads() -> ThreadPoolExecutor:
    """The threads that run direct writes in the background (each waits for a device, not a
    core; a file has at most one write in flight, so more files than threads just queue)."""
    return ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="direct-write")
