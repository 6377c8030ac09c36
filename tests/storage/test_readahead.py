"""Hashing batches of files with a second thread reading ahead, against real files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from librarian_async.errors import ChecksumError
from librarian_async.storage import readahead
from librarian_async.storage.checksum import Interrupted, hash_file_sync
from librarian_async.storage.readahead import READ_SIZE, hash_files_sync, worth_reading_ahead


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_each_file_gets_the_digest_of_a_plain_hash_in_order(tmp_path: Path) -> None:
    files = [
        (write(tmp_path / "empty.bin", 0), "md5"),
        (write(tmp_path / "one-read.bin", READ_SIZE), "xxh3"),
        (write(tmp_path / "reads.bin", 2 * READ_SIZE + 5), "sha256"),
        (write(tmp_path / "small.bin", 17), "md5"),
        (write(tmp_path / "many.bin", 9 * READ_SIZE + 1), "md5"),  # more reads than buffers
    ]
    assert hash_files_sync(files) == [hash_file_sync(path, alg) for path, alg in files]


def test_problems_are_reported_in_place_and_the_others_hashed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree / "a.bin", 10)
    write(tree / "sub" / "b.bin", READ_SIZE + 3)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading would block forever
    big = write(tmp_path / "big.bin", 3 * READ_SIZE)
    files = [(tmp_path / "gone.bin", "md5"), (tree, "md5"), (fifo, "md5"), (big, "md5")]

    gone, directory, special, digest = hash_files_sync(files)

    assert isinstance(gone, FileNotFoundError)
    assert directory == hash_file_sync(tree, "md5")
    assert isinstance(special, ChecksumError) and "not a regular file" in str(special)
    assert digest == hash_file_sync(big, "md5")


def test_a_stop_interrupts_and_the_reader_has_ended(tmp_path: Path) -> None:
    files = [(write(tmp_path / f"{n}.bin", 2 * READ_SIZE), "md5") for n in range(3)]
    stop = threading.Event()
    stop.set()
    threads_before = set(threading.enumerate())
    with pytest.raises(Interrupted):
        hash_files_sync(files, stop)
    assert set(threading.enumerate()) == threads_before


def test_an_unexpected_reader_failure_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bool:
        raise RuntimeError("reader broke")

    monkeypatch.setattr(readahead, "_read_one", broken)
    with pytest.raises(RuntimeError, match="reader broke"):
        hash_files_sync([(write(tmp_path / "a.bin", 10), "md5")])


@pytest.mark.parametrize(
    ("sizes", "worth"),
    [([], False), ([4096] * 100, False), ([READ_SIZE] * 3, True), ([0, READ_SIZE], True)],
)
def test_read_ahead_only_pays_for_big_files(sizes: list[int], worth: bool) -> None:
    assert worth_reading_ahead(sizes) is worth
