"""Checksum strings, file and directory hashing, copying, and cancellation of the thread work."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import xxhash
from direct_io import record_opens

from librarian_async.errors import ChecksumError
from librarian_async.storage import checksum
from librarian_async.storage.checksum import (
    CHUNK_SIZE,
    DEFAULT_ALGORITHM,
    FileDigest,
    checksums_match,
    copy_and_hash,
    format_checksum,
    hash_file,
    hash_file_sync,
    new_hasher,
    parse_checksum,
    run_interruptible,
    stat_fingerprint,
)
from librarian_async.storage.direct import DIRECT_CHUNK, DIRECT_MIN_BYTES

MD5_OF_ABC = "900150983cd24fb0d6963f7d28e17f72"


def reference_hex(alg: str, data: bytes) -> str:
    if alg == "xxh3":
        return xxhash.xxh3_128(data).hexdigest()
    return hashlib.new(alg, data).hexdigest()


async def cancel_after(task: asyncio.Task[object], delay: float) -> float:
    """Cancel ``task`` after ``delay``; return how long the cancellation took to land."""
    await asyncio.sleep(delay)
    assert not task.done(), "the work finished before it could be cancelled"
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


# --- the checksum string ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"md5:::{MD5_OF_ABC}", ("md5", MD5_OF_ABC)),
        (MD5_OF_ABC, ("md5", MD5_OF_ABC)),
        (MD5_OF_ABC.upper(), ("md5", MD5_OF_ABC)),
        (f"XXH3:::{'A' * 32}", ("xxh3", "a" * 32)),
        (f"sha256:::{'0' * 64}", ("sha256", "0" * 64)),
    ],
)
def test_parse_checksum_normalises(text: str, expected: tuple[str, str]) -> None:
    assert parse_checksum(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (f"crc32:::{MD5_OF_ABC}", "unknown checksum algorithm 'crc32'"),
        ("md5:::" + "g" * 32, "not hexadecimal"),
        ("md5:::", "not hexadecimal"),
        ("", "not hexadecimal"),
        ("abc", "md5 needs 32 hex digits"),
        ("sha256:::" + "0" * 32, "sha256 needs 64 hex digits"),
        ("md5:::" + "0" * 33, "md5 needs 32 hex digits"),
    ],
)
def test_parse_checksum_refuses_bad_input(text: str, complaint: str) -> None:
    with pytest.raises(ChecksumError, match=complaint) as raised:
        parse_checksum(text)
    assert "\n" not in str(raised.value)


def test_format_checksum_always_uses_the_separator_form() -> None:
    assert format_checksum("md5", MD5_OF_ABC.upper()) == f"md5:::{MD5_OF_ABC}"
    with pytest.raises(ChecksumError):
        format_checksum("sha256", MD5_OF_ABC)


def test_checksums_match_compares_algorithm_and_digest() -> None:
    assert checksums_match(MD5_OF_ABC, f"md5:::{MD5_OF_ABC.upper()}")
    assert not checksums_match(f"md5:::{'0' * 32}", f"xxh3:::{'0' * 32}")
    assert not checksums_match(f"md5:::{'0' * 32}", f"md5:::{'1' * 32}")
    with pytest.raises(ChecksumError):
        checksums_match(MD5_OF_ABC, "nonsense")


def test_file_digest_matches_needs_same_size_and_checksum() -> None:
    digest = FileDigest(f"md5:::{MD5_OF_ABC}", 3)
    assert digest.matches(FileDigest(MD5_OF_ABC, 3))
    assert not digest.matches(FileDigest(MD5_OF_ABC, 4))
    assert digest.algorithm == "md5"


@pytest.mark.parametrize("alg", ["md5", "xxh3", "sha256"])
def test_new_hasher_agrees_with_the_reference(alg: str) -> None:
    hasher = new_hasher(alg)
    hasher.update(b"ab")
    hasher.update(memoryview(b"c"))
    assert hasher.hexdigest() == reference_hex(alg, b"abc")


def test_new_hasher_refuses_unknown_algorithm() -> None:
    with pytest.raises(ChecksumError, match="sha1"):
        new_hasher("sha1")


# --- hashing files ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["md5", "xxh3", "sha256"])
@pytest.mark.parametrize("size", [0, 1, 3 * CHUNK_SIZE + 17])
async def test_hash_file_equals_reference(tmp_path: Path, alg: str, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    digest = await hash_file(path, alg)
    assert digest == FileDigest(f"{alg}:::{reference_hex(alg, data)}", size)


def test_hash_file_sync_with_tiny_chunks(tmp_path: Path) -> None:
    data = os.urandom(1000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    digest = hash_file_sync(path, "sha256", chunk_size=7)
    assert digest == FileDigest(f"sha256:::{reference_hex('sha256', data)}", 1000)


async def test_hash_file_defaults_to_md5(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    assert DEFAULT_ALGORITHM == "md5"
    assert (await hash_file(tmp_path / "abc")).checksum == f"md5:::{MD5_OF_ABC}"


async def test_hash_file_of_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await hash_file(tmp_path / "missing")


async def test_special_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ChecksumError, match="not a regular file or directory"):
        await hash_file(tmp_path / "fifo")
    with pytest.raises(ChecksumError, match="not a regular file or directory"):
        await copy_and_hash(tmp_path / "fifo", tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


# --- hashing directories -------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"abc")
    (root / "sub" / "b.bin").write_bytes(b"hello")
    return root


async def test_directory_checksum_follows_the_documented_scheme(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    records = b"a.txt\x003\x00%s\nsub/b.bin\x005\x00%s\n" % (
        MD5_OF_ABC.encode(),
        hashlib.md5(b"hello").hexdigest().encode(),
    )
    digest = await hash_file(tree)
    assert digest == FileDigest(f"md5:::{hashlib.md5(records).hexdigest()}", 8)


async def test_directory_checksum_changes_with_a_name(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    before = await hash_file(tree)
    (tree / "a.txt").rename(tree / "c.txt")
    after = await hash_file(tree)
    assert after.size == before.size
    assert after.checksum != before.checksum


async def test_directory_checksum_changes_with_a_folder(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    before = await hash_file(tree)
    (tree / "other").mkdir()
    (tree / "sub" / "b.bin").rename(tree / "other" / "b.bin")
    assert (await hash_file(tree)).checksum != before.checksum


async def test_directory_checksum_changes_with_content(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    before = await hash_file(tree, "xxh3")
    (tree / "sub" / "b.bin").write_bytes(b"hellO")
    after = await hash_file(tree, "xxh3")
    assert after.checksum != before.checksum
    assert (await hash_file(tree, "xxh3")) == after


async def test_empty_directory_hashes_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    digest = await hash_file(tmp_path / "empty", "sha256")
    assert digest == FileDigest(f"sha256:::{hashlib.sha256().hexdigest()}", 0)


async def test_directory_with_symlink_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "sub" / "link").symlink_to(tree / "a.txt")
    with pytest.raises(ChecksumError, match=r"'sub/link' is a symbolic link"):
        await hash_file(tree)


# --- copying ------------------------------------------------------------------------------


async def test_copy_and_hash_copies_and_hashes(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    (tmp_path / "source").write_bytes(data)
    digest = await copy_and_hash(tmp_path / "source", tmp_path / "target", "xxh3")
    assert (tmp_path / "target").read_bytes() == data
    assert digest == FileDigest(f"xxh3:::{reference_hex('xxh3', data)}", len(data))


async def test_copy_and_hash_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "source").write_bytes(b"new")
    (tmp_path / "target").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        await copy_and_hash(tmp_path / "source", tmp_path / "target")
    assert (tmp_path / "target").read_bytes() == b"old"


async def test_copy_and_hash_copies_a_directory(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "empty").mkdir()
    digest = await copy_and_hash(tree, tmp_path / "copy", "sha256")
    assert digest == await hash_file(tree, "sha256")
    assert (tmp_path / "copy" / "sub" / "b.bin").read_bytes() == b"hello"
    assert (tmp_path / "copy" / "empty").is_dir()


async def test_failed_directory_copy_leaves_no_target(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "zz-link").symlink_to(tree / "a.txt")
    with pytest.raises(ChecksumError):
        await copy_and_hash(tree, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize(
    "size",
    [DIRECT_MIN_BYTES, 2 * DIRECT_CHUNK, DIRECT_CHUNK + 12_345, 3 * DIRECT_CHUNK - 1],
)
async def test_big_copies_write_around_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = os.urandom(size)
    (tmp_path / "source").write_bytes(data)
    flags_seen = record_opens(monkeypatch)
    digest = await copy_and_hash(tmp_path / "source", tmp_path / "target", "md5")
    assert any(flags & os.O_DIRECT for flags in flags_seen)
    assert (tmp_path / "target").read_bytes() == data
    assert digest == FileDigest(f"md5:::{reference_hex('md5', data)}", size)


async def test_small_copies_go_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "source").write_bytes(b"x" * (DIRECT_MIN_BYTES - 1))
    flags_seen = record_opens(monkeypatch)
    await copy_and_hash(tmp_path / "source", tmp_path / "target")
    assert not any(flags & os.O_DIRECT for flags in flags_seen)
    assert (tmp_path / "target").stat().st_size == DIRECT_MIN_BYTES - 1


async def test_a_filesystem_without_direct_writes_gets_a_cached_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(DIRECT_CHUNK + 7)
    (tmp_path / "source").write_bytes(data)
    flags_seen = record_opens(monkeypatch, refuse_direct=True)
    digest = await copy_and_hash(tmp_path / "source", tmp_path / "target", "sha256")
    assert any(flags & os.O_DIRECT for flags in flags_seen)
    assert (tmp_path / "target").read_bytes() == data
    assert digest.checksum == f"sha256:::{reference_hex('sha256', data)}"
    assert sorted(os.listdir(tmp_path)) == ["source", "target"]


@pytest.mark.parametrize("refused_from", [1, 2])
async def test_a_device_refusing_direct_writes_gets_the_rest_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_from: int
) -> None:
    """Like a device with blocks bigger than our alignment: from the ``refused_from``-th
    direct write on, O_DIRECT writes fail with EINVAL (and write nothing)."""
    data = os.urandom(3 * DIRECT_CHUNK + 999)
    (tmp_path / "source").write_bytes(data)
    real_write = os.write
    direct_writes: list[int] = []

    def picky(descriptor: int, chunk: bytes) -> int:
        if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_DIRECT:
            direct_writes.append(len(chunk))
            if len(direct_writes) >= refused_from:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(descriptor, chunk)

    monkeypatch.setattr(os, "write", picky)
    digest = await copy_and_hash(tmp_path / "source", tmp_path / "target", "md5")
    assert len(direct_writes) == refused_from
    assert (tmp_path / "target").read_bytes() == data
    assert digest == FileDigest(f"md5:::{reference_hex('md5', data)}", len(data))


async def test_a_failed_direct_write_leaves_no_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "source").write_bytes(os.urandom(3 * DIRECT_CHUNK))
    real_write = os.write
    writes: list[int] = []

    def full_disk(descriptor: int, data: bytes) -> int:
        writes.append(len(data))
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        await copy_and_hash(tmp_path / "source", tmp_path / "target")
    assert writes[0] == DIRECT_CHUNK
    assert not (tmp_path / "target").exists()


# --- making a batch durable ---------------------------------------------------------------


def recording_syncfs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Let the real libc ``syncfs`` run, recording the directory each call was given."""
    real = checksum.libc_function("syncfs")
    assert real is not None
    synced: list[str] = []

    def syncfs(descriptor: int) -> int:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        return int(real(descriptor))

    monkeypatch.setattr(checksum, "libc_function", lambda name: syncfs)
    return synced


def test_sync_files_skips_files_moved_on_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver running beside another: the other moved some staged files on and removed
    their directory before this one made its batch durable."""
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    for folder in (kept, gone):
        folder.mkdir()
        (folder / "a.dat").write_bytes(b"a")
    batch = [gone / "a.dat", kept / "a.dat", gone / "b.dat"]
    (gone / "a.dat").unlink()
    gone.rmdir()
    synced = recording_syncfs(monkeypatch)

    checksum.sync_files(batch)

    assert synced == [str(kept)]
    monkeypatch.setattr(checksum, "libc_function", lambda name: None)  # fsync each
    checksum.sync_files(batch)


def test_sync_files_syncs_each_filesystem_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Path("/dev/shm")  # a second filesystem (tmpfs) on Linux
    assert other.stat().st_dev != tmp_path.stat().st_dev
    elsewhere = Path(tempfile.mkdtemp(dir=other))
    try:
        batch = [tmp_path / f"{n}.dat" for n in range(3)] + [elsewhere / "x.dat"]
        for path in batch:
            path.write_bytes(b"x")
        synced = recording_syncfs(monkeypatch)

        checksum.sync_files(batch)

        assert sorted(synced) == sorted([str(tmp_path), str(elsewhere)])
    finally:
        shutil.rmtree(elsewhere)


# --- cancellation and the event loop --------------------------------------------------------


async def test_run_interruptible_returns_and_raises() -> None:
    def add(first: int, second: int, *, stop: threading.Event) -> int:
        return first + second

    def fail(*, stop: threading.Event) -> None:
        raise ValueError("boom")

    assert await run_interruptible(add, 2, 3) == 5
    with pytest.raises(ValueError, match="boom"):
        await run_interruptible(fail)


async def test_cancellation_waits_for_the_thread_to_stop() -> None:
    finished = threading.Event()
    steps: list[int] = []

    def count_until_stopped(*, stop: threading.Event) -> None:
        while not stop.wait(0.001):
            steps.append(1)
        time.sleep(0.05)  # slow cleanup: cancellation must still wait for it
        finished.set()

    task = asyncio.create_task(run_interruptible(count_until_stopped))
    await cancel_after(task, 0.05)
    assert finished.is_set()
    seen = len(steps)
    await asyncio.sleep(0.05)
    assert len(steps) == seen


async def test_cancelling_hash_file_lands_quickly(sparse_file: Path) -> None:
    task = asyncio.create_task(hash_file(sparse_file))
    assert await cancel_after(task, 0.2) < 1.0


async def test_cancelling_copy_leaves_no_partial_target(tmp_path: Path, sparse_file: Path) -> None:
    target = tmp_path / "copy.bin"
    task = asyncio.create_task(copy_and_hash(sparse_file, target))
    await asyncio.sleep(0.1)
    assert target.exists()
    assert await cancel_after(task, 0.1) < 1.0
    assert not target.exists()


async def test_hashing_does_not_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    # Big enough (~0.1 s of sha256) that even a loop waiting up to a GIL switch interval
    # (5 ms) per tick gets its ticks; a blocking hash would give it none.
    path.write_bytes(os.urandom(1024 * 1024) * 48)
    ticks = 0
    hashing = asyncio.create_task(hash_file(path, "sha256"))
    while not hashing.done():
        ticks += 1
        await asyncio.sleep(0)
    await hashing
    assert ticks >= 10


# --- stat fingerprints -------------------------------------------------------------------


def test_a_fingerprint_changes_with_any_write_and_exists_only_for_regular_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.dat"
    path.write_bytes(b"abc")
    first = stat_fingerprint(path)
    assert first is not None and first == stat_fingerprint(path)
    time.sleep(0.05)  # past the kernel's clock tick: timestamps are that coarse
    path.write_bytes(b"abc")  # the same bytes again
    assert stat_fingerprint(path) not in (None, first)
    folder = tmp_path / "tree"
    folder.mkdir()
    (folder / "inside.dat").write_bytes(b"x")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(path, tmp_path / "link")
    for other in (folder, tmp_path / "pipe", tmp_path / "link"):
        assert stat_fingerprint(other) is None
