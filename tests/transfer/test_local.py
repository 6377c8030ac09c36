"""The ``local`` method: checked, atomic copies into staging through the filesystem."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from librarian_async.errors import TransferError
from librarian_async.remote.client import PeerClient
from librarian_async.storage.checksum import stat_fingerprint
from librarian_async.transfer.local import LocalMethod

from . import (
    exists,
    files_under,
    make_moves,
    source_bytes,
    staged_bytes,
    staged_names,
    write,
)

MiB = 1024 * 1024
HERE = {"hostnames": [socket.gethostname()]}


@pytest.fixture
async def peer() -> AsyncIterator[PeerClient]:
    """``send`` takes the peer's client; the local method never calls it."""
    async with PeerClient("http://127.0.0.1", 9, "unused", "unused") as client:
        yield client


async def wait_until(condition: Callable[[], object]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


def test_valid_only_when_this_host_is_listed() -> None:
    method = LocalMethod()
    assert method.valid({"hostnames": [socket.gethostname()]}) is True
    assert method.valid({"hostnames": ["elsewhere.invalid", socket.gethostname().upper()]})
    assert method.valid({"hostnames": ["elsewhere.invalid"]}) is False
    assert method.valid({"hostnames": []}) is False
    assert method.valid({"hostnames": socket.gethostname()}) is False  # not a list
    assert method.valid({}) is False


async def test_copies_byte_identical_files_into_subdirectories(
    tmp_path: Path, peer: PeerClient
) -> None:
    contents = {
        "a.uvh5": b"alpha" * 1000,
        "night/empty.uvh5": b"",
        "night/deep/big.uvh5": os.urandom(5 * MiB),
    }
    moves = make_moves(tmp_path, contents)
    await LocalMethod().send(HERE, moves, peer)
    assert staged_bytes(moves) == source_bytes(moves)
    assert files_under(tmp_path / "staging") == staged_names(tmp_path, moves)  # no temporaries left


@pytest.mark.parametrize("algorithm", ["md5", "xxh3", "sha256"])
async def test_many_small_files_with_each_algorithm(
    tmp_path: Path, peer: PeerClient, algorithm: str
) -> None:
    contents = {f"obs/{n:04d}.uvh5": os.urandom(4096) for n in range(600)}
    moves = make_moves(tmp_path, contents, algorithm)
    await LocalMethod().send(HERE, moves, peer)
    assert staged_bytes(moves) == source_bytes(moves)
    assert files_under(tmp_path / "staging") == staged_names(tmp_path, moves)


async def test_a_retry_replaces_what_a_failed_attempt_left(
    tmp_path: Path, peer: PeerClient
) -> None:
    moves = make_moves(tmp_path, {"a.uvh5": b"the real bytes"})
    write(moves[0].staging_location, b"half of a")
    await LocalMethod().send(HERE, moves, peer)
    assert staged_bytes(moves) == [b"the real bytes"]


def tree_checksum(files: dict[str, bytes]) -> str:
    """The directory checksum by its documented definition, computed independently."""
    records = b"".join(
        b"%s\0%d\0%s\n" % (name.encode(), len(data), hashlib.md5(data).hexdigest().encode())
        for name, data in sorted(files.items(), key=lambda item: item[0].encode())
    )
    return "md5:::" + hashlib.md5(records).hexdigest()


async def test_a_directory_is_copied_as_a_tree(tmp_path: Path, peer: PeerClient) -> None:
    files = {"x.dat": b"x" * 100, "sub/y.dat": b"why"}
    [move] = make_moves(tmp_path, {"d.tar": b""})
    move.source.unlink()
    for name, data in files.items():
        (move.source / name).parent.mkdir(parents=True, exist_ok=True)
        (move.source / name).write_bytes(data)
    move = dataclasses.replace(move, size=103, checksum=tree_checksum(files))
    verified = await LocalMethod().send(HERE, [move], peer)
    staged = Path(move.staging_location)
    assert {name: (staged / name).read_bytes() for name in files} == files
    assert verified == {}  # a directory's stat does not cover its files: the receiver hashes


async def test_a_source_of_another_size_is_refused_and_leaves_no_file(
    tmp_path: Path, peer: PeerClient
) -> None:
    moves = make_moves(tmp_path, {"a.uvh5": b"first", "b.uvh5": b"second"})
    moves[1].source.write_bytes(b"second, grown since it was catalogued")
    with pytest.raises(TransferError) as raised:
        await LocalMethod().send(HERE, moves, peer)
    message = str(raised.value)
    assert str(moves[1].source) in message and f"expected {moves[1].size}" in message
    assert "\n" not in message
    assert not exists(moves[1].staging_location)
    assert files_under(tmp_path / "staging") == staged_names(tmp_path, moves[:1])


async def test_same_size_damage_is_refused_at_the_sender_and_leaves_no_file(
    tmp_path: Path, peer: PeerClient
) -> None:
    """The sender hashes as it copies: a source whose bytes no longer match the catalogue
    is never staged (the receiver would otherwise trust the stat the sender reports)."""
    moves = make_moves(tmp_path, {"a.uvh5": b"first", "b.uvh5": b"second"})
    moves[1].source.write_bytes(b"secont")
    with pytest.raises(TransferError) as raised:
        await LocalMethod().send(HERE, moves, peer)
    message = str(raised.value)
    assert str(moves[1].source) in message and moves[1].checksum in message
    assert "\n" not in message
    assert not exists(moves[1].staging_location)
    assert files_under(tmp_path / "staging") == staged_names(tmp_path, moves[:1])


@pytest.mark.parametrize("size", [4096, 3 * MiB + 5])  # a cached and a direct copy
async def test_reports_the_stat_of_each_staged_file(
    tmp_path: Path, peer: PeerClient, size: int
) -> None:
    contents = {"a.uvh5": os.urandom(size), "night/b.uvh5": os.urandom(size)}
    moves = make_moves(tmp_path, contents)
    verified = await LocalMethod().send(HERE, moves, peer)
    assert staged_bytes(moves) == source_bytes(moves)
    assert verified == {
        move.destination_transfer_id: stat_fingerprint(Path(move.staging_location))
        for move in moves
    }
    await asyncio.sleep(0.05)  # past the kernel's clock tick: timestamps are that coarse
    write(moves[0].staging_location, contents["a.uvh5"])  # the same bytes, written again
    changed = stat_fingerprint(Path(moves[0].staging_location))
    assert changed != verified[moves[0].destination_transfer_id]


async def test_a_missing_source_names_the_file(tmp_path: Path, peer: PeerClient) -> None:
    moves = make_moves(tmp_path, {"gone.uvh5": b"data"})
    moves[0].source.unlink()
    with pytest.raises(TransferError, match=r"gone\.uvh5"):
        await LocalMethod().send(HERE, moves, peer)
    assert files_under(tmp_path / "staging") == []


async def test_cancelling_a_copy_leaves_no_temporary_file(tmp_path: Path, peer: PeerClient) -> None:
    """The source is 4 GiB of holes: hashing it takes seconds, so the copy is caught
    mid-file for sure."""
    [move] = make_moves(tmp_path, {"big.uvh5": b""})
    size = 4 * 1024**3
    os.truncate(move.source, size)
    move = dataclasses.replace(move, size=size)
    directory = Path(move.staging_location).parent
    sending = asyncio.create_task(LocalMethod().send(HERE, [move], peer))
    await wait_until(lambda: files_under(directory))  # the temporary sibling exists
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert files_under(directory) == []


async def test_a_fifo_is_refused_without_waiting_for_a_writer(
    tmp_path: Path, peer: PeerClient
) -> None:
    [move] = make_moves(tmp_path, {"pipe.uvh5": b""})
    move.source.unlink()
    os.mkfifo(move.source)
    with pytest.raises(TransferError, match="not a regular file or directory") as raised:
        await asyncio.wait_for(LocalMethod().send(HERE, [move], peer), 10)
    assert str(move.source) in str(raised.value)
    assert files_under(tmp_path / "staging") == []
