"""Checksums of files and directories, and copies that hash as they go.

A checksum is the string ``"<alg>:::<hex>"`` with ``alg`` one of ``md5`` (the default for new
files), ``xxh3`` (XXH3-128, what peers often send) or ``sha256``. A bare 32-digit hex string
is a legacy md5 checksum and is accepted wherever a checksum is read.

Hashing and copying run in a worker thread so the event loop keeps serving; the thread
checks a stop flag before each chunk, so cancelling the awaiting task stops the work within
one chunk, and the cancellation only returns once the thread has stopped (see
:func:`run_interruptible`).

A directory's checksum covers the names and contents of the regular files below it. The
hasher of the directory is fed, for each file in the order of the UTF-8 bytes of its relative
POSIX path, one record::

    <relative path> NUL <size in decimal ASCII> NUL <hex digest of the file's content> LF

using the same algorithm for the records and for each file's content. File names cannot
contain NUL, so records cannot be confused with each other. Subdirectories only contribute
through the files they hold (an empty directory adds nothing); the size of a directory is the
total size of its files. Symbolic links and special files inside a directory are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import hashlib
import os
import shutil
import stat
import string
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import xxhash

from librarian_async.errors import ChecksumError
from librarian_async.libc import libc_function
from librarian_async.storage.direct import (
    DIRECT_MIN_BYTES,
    DirectFile,
    create_direct,
    direct_buffers,
    thread_buffer,
)

DEFAULT_ALGORITHM = "md5"
CHUNK_SIZE = 64 * 1024
"""Read, hash and write in chunks this big: the chunk stays in the CPU cache between the
read and the hash (measured: 64 KiB reads hash 1 MiB files 18% faster than 4 MiB ones,
557 against 473 MB/s, on par with md5sum; 256 MiB files 560-585 against 501 MB/s)."""
WRITEBACK_BYTES = 16 * 1024 * 1024
"""A copy starts the disk writing its bytes every this many bytes (:func:`start_writeback`)."""
WRITEBACK_MIN_BYTES = 256 * 1024
"""Smaller unsynced copies are left for the batch's one syncfs to write in one sweep."""
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait
SEPARATOR = ":::"
HEX_LENGTHS = {"md5": 32, "xxh3": 32, "sha256": 64}

_HEX_DIGITS = frozenset(string.hexdigits)
T = TypeVar("T")


class Hasher(Protocol):
    """What this module needs from a hash object (hashlib's and xxhash's both fit)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Reader(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Interrupted(Exception):
    """Raised inside a worker thread when its stop flag is set.

    :func:`run_interruptible` turns it back into the ``CancelledError`` that set the flag, so
    it only reaches callers of the ``*_sync`` functions that pass their own stop flag.
    """


@dataclass(frozen=True, slots=True)
class FileDigest:
    """The checksum (``alg:::hex``) and size in bytes of a file or directory."""

    checksum: str
    size: int

    @property
    def algorithm(self) -> str:
        return parse_checksum(self.checksum)[0]

    def matches(self, other: FileDigest) -> bool:
        """Same size and the same checksum (legacy bare md5 equals ``md5:::``)."""
        return self.size == other.size and checksums_match(self.checksum, other.checksum)


# --- the checksum string ---------------------------------------------------------------


def parse_checksum(text: str) -> tuple[str, str]:
    """Split a checksum into (algorithm, lowercase hex); a bare 32-digit hex is md5."""
    algorithm, separator, hexdigest = text.strip().partition(SEPARATOR)
    if not separator:
        algorithm, hexdigest = "md5", algorithm
    algorithm = algorithm.lower()
    _require_algorithm(algorithm, text)
    _require_hex(algorithm, hexdigest, text)
    return algorithm, hexdigest.lower()


def format_checksum(algorithm: str, hexdigest: str) -> str:
    """The canonical ``alg:::hex`` form, validated."""
    return SEPARATOR.join(parse_checksum(f"{algorithm}{SEPARATOR}{hexdigest}"))


def checksums_match(first: str, second: str) -> bool:
    """True when both name the same algorithm and digest; raises ChecksumError if malformed."""
    return parse_checksum(first) == parse_checksum(second)


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hash object for one of the supported algorithms."""
    _require_algorithm(algorithm, algorithm)
    if algorithm == "xxh3":
        return xxhash.xxh3_128()
    # md5 identifies bytes here; it is not used for security (this matters on FIPS systems).
    return hashlib.new(algorithm, usedforsecurity=False)


def _require_algorithm(algorithm: str, text: str) -> None:
    if algorithm not in HEX_LENGTHS:
        known = ", ".join(sorted(HEX_LENGTHS))
        raise ChecksumError(f"unknown checksum algorithm {algorithm!r} in {text!r} ({known})")


def _require_hex(algorithm: str, hexdigest: str, text: str) -> None:
    if not hexdigest or not _HEX_DIGITS.issuperset(hexdigest):
        raise ChecksumError(f"malformed checksum {text!r}: digest is not hexadecimal")
    if len(hexdigest) != HEX_LENGTHS[algorithm]:
        expected = HEX_LENGTHS[algorithm]
        raise ChecksumError(f"malformed checksum {text!r}: {algorithm} needs {expected} hex digits")


# --- running blocking work in a thread that a cancellation can stop ---------------------


async def run_interruptible(function: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """Run ``function(*args, **kwargs, stop=event)`` in a worker thread; cancellation stops it.

    On cancellation the stop flag is set and we wait (shielded) for the thread to return, so
    nothing is still reading or writing once the ``CancelledError`` propagates.
    """
    stop = threading.Event()
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs, stop=stop)
    worker = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        stop.set()
        await _wait_for_thread(worker)
        raise


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and return once it has ended, even if cancelled again meanwhile: a
    thread it ran (see :func:`run_interruptible`) has returned. Its outcome is discarded."""
    task.cancel()
    await _wait_for_thread(task)


async def _wait_for_thread(worker: asyncio.Future[Any]) -> None:
    """Wait until the worker is done even if cancelled again; its outcome is discarded."""
    while not worker.done():
        try:
            await asyncio.wait({worker})
        except asyncio.CancelledError:
            continue
    if not worker.cancelled():
        worker.exception()  # mark as retrieved: the caller is being cancelled anyway


def raise_if_stopped(stop: threading.Event | None) -> None:
    """Raise :class:`Interrupted` once ``stop`` is set (checked between chunks)."""
    if stop is not None and stop.is_set():
        raise Interrupted


# --- hashing ---------------------------------------------------------------------------


async def hash_file(
    path: Path, alg: str = DEFAULT_ALGORITHM, *, chunk_size: int = CHUNK_SIZE
) -> FileDigest:
    """Checksum and size of a file or directory, computed in a worker thread."""
    _require_algorithm(alg, alg)
    return await run_interruptible(hash_file_sync, path, alg, chunk_size=chunk_size)


def hash_file_sync(
    path: Path,
    alg: str = DEFAULT_ALGORITHM,
    stop: threading.Event | None = None,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> FileDigest:
    """:func:`hash_file` in the calling thread, for callers that batch small files."""
    buffer = thread_buffer(chunk_size)
    if is_directory(path):
        entries = _list_tree(path)
        return _digest_tree(alg, entries, lambda entry: _hash_one(entry.path, alg, stop, buffer))
    return _hash_one(path, alg, stop, buffer)


def hash_or_error(
    path: Path, alg: str, stop: threading.Event | None = None
) -> FileDigest | OSError | ChecksumError:
    """:func:`hash_file_sync`, with the error that prevented it returned instead of raised
    (for callers that report each file of a batch)."""
    try:
        return hash_file_sync(path, alg, stop)
    except (OSError, ChecksumError) as error:
        return error


def is_directory(path: Path) -> bool:
    """True for a directory, False for a regular file; refuse the rest (a FIFO would hang)."""
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return stat.S_ISDIR(mode)
    raise ChecksumError(f"cannot checksum {path}: not a regular file or directory")


def _hash_one(path: Path, alg: str, stop: threading.Event | None, buffer: memoryview) -> FileDigest:
    hasher = new_hasher(alg)
    with open(path, "rb", buffering=0) as reader:
        size = _pump(reader, hasher, buffer, stop)
    return FileDigest(format_checksum(alg, hasher.hexdigest()), size)


def _pump(
    reader: _Reader,
    hasher: Hasher,
    buffer: memoryview,
    stop: threading.Event | None,
    writer: BinaryIO | None = None,
) -> int:
    """Read all of ``reader`` chunk by chunk into one buffer, hashing each (and copying it
    to ``writer`` when given).

    A copy hands its written bytes to the disk every ``WRITEBACK_BYTES`` (see
    :func:`start_writeback`), so the disk writes while we hash the next chunks."""
    size = unflushed = 0
    while True:
        raise_if_stopped(stop)
        count = reader.readinto(buffer) or 0
        if count == 0:
            return size
        hasher.update(buffer[:count])
        if writer is not None:
            writer.write(buffer[:count])
            unflushed += count
            if unflushed >= WRITEBACK_BYTES:
                writer.flush()
                start_writeback(writer.fileno())
                unflushed = 0
        size += count


# --- directories -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TreeEntry:
    relative: str
    path: Path
    is_dir: bool


def _digest_tree(
    alg: str, entries: list[_TreeEntry], visit_file: Callable[[_TreeEntry], FileDigest]
) -> FileDigest:
    """The directory checksum of the module docstring; ``visit_file`` digests each file."""
    hasher = new_hasher(alg)
    total = 0
    for entry in entries:
        if not entry.is_dir:
            digest = visit_file(entry)
            hasher.update(_tree_record(entry.relative, digest))
            total += digest.size
    return FileDigest(format_checksum(alg, hasher.hexdigest()), total)


def _tree_record(relative: str, digest: FileDigest) -> bytes:
    hexdigest = parse_checksum(digest.checksum)[1]
    return b"%s\0%d\0%s\n" % (os.fsencode(relative), digest.size, hexdigest.encode("ascii"))


def _list_tree(root: Path) -> list[_TreeEntry]:
    """Every directory and regular file below ``root``, sorted by relative path bytes."""
    entries: list[_TreeEntry] = []
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as scan:
            for item in scan:
                entry = _tree_entry(root, item)
                entries.append(entry)
                if entry.is_dir:
                    pending.append(entry.path)
    return sorted(entries, key=lambda entry: os.fsencode(entry.relative))


def _tree_entry(root: Path, item: os.DirEntry[str]) -> _TreeEntry:
    """Classify one directory item; links and special files have no defined checksum."""
    path = Path(item.path)
    relative = path.relative_to(root).as_posix()
    mode = item.stat(follow_symlinks=False).st_mode
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return _TreeEntry(relative, path, stat.S_ISDIR(mode))
    kind = "symbolic link" if stat.S_ISLNK(mode) else "special file"
    raise ChecksumError(f"cannot checksum directory {root}: {relative!r} is a {kind}")


# --- copying -----------------------------------------------------------------------------


async def copy_and_hash(
    source: Path, target: Path, alg: str = DEFAULT_ALGORITHM, *, chunk_size: int = CHUNK_SIZE
) -> FileDigest:
    """Copy ``source`` (file or directory) to the new path ``target``, hashing in one pass.

    ``target`` must not exist (it is never overwritten). The copy is fsynced before this
    returns; on any error or cancellation nothing is left at ``target``.
    """
    _require_algorithm(alg, alg)
    return await run_interruptible(copy_and_hash_sync, source, target, alg, chunk_size=chunk_size)


def copy_and_hash_sync(
    source: Path,
    target: Path,
    alg: str = DEFAULT_ALGORITHM,
    stop: threading.Event | None = None,
    *,
    chunk_size: int = CHUNK_SIZE,
    sync: bool = True,
) -> FileDigest:
    """:func:`copy_and_hash` in the calling thread. With ``sync=False`` a copied file is
    not fsynced: the caller makes a whole batch durable at once (:func:`sync_files`)."""
    buffer = thread_buffer(chunk_size)
    if is_directory(source):
        return _copy_tree(source, target, alg, stop, buffer)
    return _copy_one(source, target, alg, stop, buffer, sync)


def _copy_one(
    source: Path,
    target: Path,
    alg: str,
    stop: threading.Event | None,
    buffer: memoryview,
    sync: bool = True,
) -> FileDigest:
    hasher = new_hasher(alg)
    with open(source, "rb", buffering=0) as reader:
        direct = None
        length = os.fstat(reader.fileno()).st_size
        if length >= DIRECT_MIN_BYTES:
            direct = create_direct(target)
        if direct is not None:
            file = DirectFile(direct, direct_buffers(), length)
            size = _copy_direct(reader, hasher, stop, file, target, sync, len(buffer))
        else:
            with open(target, "xb") as writer, _removed_on_failure(target):
                size = _pump(reader, hasher, buffer, stop, writer)
                finish_copy(writer, size, sync)
    return FileDigest(format_checksum(alg, hasher.hexdigest()), size)


def _copy_direct(
    reader: _Reader,
    hasher: Hasher,
    stop: threading.Event | None,
    file: DirectFile,
    target: Path,
    sync: bool,
    chunk_size: int,
) -> int:
    """Copy into the new direct ``file`` (closed here): read and hash in chunks of
    ``chunk_size`` straight into its aligned buffers; it writes each full one while the next
    fills (see :mod:`librarian_async.storage.direct`)."""
    size = 0
    with _removed_on_failure(target), closing(file):
        while True:
            space = file.space()
            filled = _fill(reader, hasher, space, chunk_size, stop)
            file.filled(filled)
            size += filled
            if filled < len(space):
                break
        file.finish()
        if sync:
            os.fsync(file.descriptor)
    return size


def _fill(
    reader: _Reader,
    hasher: Hasher,
    buffer: memoryview,
    chunk_size: int,
    stop: threading.Event | None,
) -> int:
    """Read into ``buffer`` until it is full or the file ends, hashing each chunk as it comes
    (while it is still in the CPU cache); the bytes read."""
    filled = 0
    while filled < len(buffer):
        raise_if_stopped(stop)
        chunk = buffer[filled : filled + chunk_size]
        count = reader.readinto(chunk) or 0
        if count == 0:
            break
        hasher.update(chunk[:count])
        filled += count
    return filled


def finish_copy(writer: BinaryIO, size: int, sync: bool) -> None:
    """fsync a finished copy of ``size`` bytes, or, unsynced, hand a big one's bytes to the
    disk now (the caller's later sync finds them already on their way; small ones are left
    for that sync to write in one sweep)."""
    writer.flush()
    if sync:
        os.fsync(writer.fileno())
    elif size >= WRITEBACK_MIN_BYTES:
        start_writeback(writer.fileno())


def _copy_tree(
    source: Path, target: Path, alg: str, stop: threading.Event | None, buffer: memoryview
) -> FileDigest:
    """Recreate the tree (empty directories included), copying each file, then fsync dirs."""
    os.mkdir(target)
    created = [target]

    def visit(entry: _TreeEntry) -> FileDigest:
        return _copy_one(entry.path, target / entry.relative, alg, stop, buffer)

    with _removed_on_failure(target):
        entries = _list_tree(source)
        for entry in entries:
            if entry.is_dir:
                os.mkdir(target / entry.relative)
                created.append(target / entry.relative)
        digest = _digest_tree(alg, entries, visit)
        for directory in created:
            fsync_directory(directory)
    return digest


@contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Remove ``path`` (which we created) if the block fails or is interrupted."""
    try:
        yield
    except BaseException:
        remove_file_or_tree(path)
        raise


def remove_file_or_tree(path: Path) -> None:
    """Remove a file, a symlink (not what it points to) or a directory tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def sync_files(paths: Sequence[Path]) -> None:
    """Make the data of these files durable: for a batch, one ``syncfs`` of each filesystem
    holding them (far cheaper than an fsync per small file), else an fsync of each. A file
    gone meanwhile is skipped: another run moved it on (a staged file it received), and
    made it durable itself."""
    if len(paths) > 1 and _syncfs_each_filesystem({path.parent for path in paths}):
        return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            fsync_file(path)


def _syncfs_each_filesystem(directories: set[Path]) -> bool:
    """``syncfs`` once per filesystem holding one of these directories (those gone are
    skipped); False when syncfs is not available."""
    synced: set[int] = set()
    for directory in directories:
        try:
            device = os.stat(directory).st_dev
            if device not in synced:
                if not _syncfs(directory):
                    return False
                synced.add(device)
        except FileNotFoundError:
            continue
    return True


def stat_fingerprint(path: Path) -> str | None:
    """What identifies this exact version of a regular file: device, inode, size, and
    modification and change times in nanoseconds (``lstat``). Writing to the file, replacing
    it or touching it changes the ctime, which no unprivileged process can set back. None for
    anything else: a directory's own stat does not change when the files in it do."""
    found = os.lstat(path)
    if not stat.S_ISREG(found.st_mode):
        return None
    return f"{found.st_dev}:{found.st_ino}:{found.st_size}:{found.st_mtime_ns}:{found.st_ctime_ns}"


def fsync_file(path: Path) -> None:
    """Make one file's bytes durable (never follows a symlink, never blocks on a FIFO)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@functools.cache
def _libc_sync_file_range() -> Any | None:
    function = libc_function("sync_file_range")
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
        function.restype = ctypes.c_int
    return function


def start_writeback(descriptor: int) -> None:
    """Ask the kernel to start writing this file's dirty pages now, without waiting.

    Without it the kernel keeps gigabytes dirty for up to 30 s and the final fsync (or
    syncfs) then waits for all of them while the CPU idles; started early, the disk writes
    while the next chunks are hashed. Only a hint: durability still comes from fsync, and
    an error here is left for that fsync to report."""
    sync_file_range = _libc_sync_file_range()
    if sync_file_range is not None:
        sync_file_range(descriptor, 0, 0, SYNC_FILE_RANGE_WRITE)


def _syncfs(directory: Path) -> bool:
    """Flush the filesystem holding ``directory``; False when syncfs is not available."""
    syncfs = libc_function("syncfs")
    if syncfs is None:
        return False
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(descriptor) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs: {os.strerror(error)}", str(directory))
    finally:
        os.close(descriptor)
    return True


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
