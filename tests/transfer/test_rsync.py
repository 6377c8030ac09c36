"""The ``rsync`` method: the real rsync binary, one process per batch, through a link farm."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from librarian_async.errors import TransferError
from librarian_async.remote.client import PeerClient
from librarian_async.transfer.rsync import RsyncMethod, error_summary, rsync_arguments

from . import entries, files_under, make_moves, source_bytes, staged_bytes, staged_names, write

HERE = {"hostname": socket.gethostname()}


@pytest.fixture
async def peer() -> AsyncIterator[PeerClient]:
    """``send`` takes the peer's client; the rsync method never calls it."""
    async with PeerClient("http://127.0.0.1", 9, "unused", "unused") as client:
        yield client


@pytest.fixture
def farms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the temporary link farms go (the standard library's temporary directory)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_valid_needs_a_hostname_and_the_rsync_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    method = RsyncMethod()
    assert method.valid({"hostname": "elsewhere.example"}) is True
    for fields in ({"hostname": ""}, {"hostname": "  "}, {"hostname": None}, {}):
        assert method.valid(fields) is False
    assert method.valid({"hostname": "-oProxyCommand=x"}) is False
    monkeypatch.setenv("PATH", str(tmp_path))  # no rsync to be found
    assert method.valid({"hostname": "elsewhere.example"}) is False


@pytest.mark.parametrize("hostname", [socket.gethostname(), "localhost", "127.0.0.1"])
def test_this_host_gets_a_local_target(hostname: str) -> None:
    arguments = rsync_arguments(hostname, "/tmp/farm", "/data/staging")
    assert arguments[-3:] == ["--", "/tmp/farm/", "/data/staging/"]
    assert all(":" not in argument for argument in arguments[-2:])


def test_another_host_gets_an_ssh_target_that_never_prompts() -> None:
    arguments = rsync_arguments("elsewhere.example", "/tmp/farm", "/data/staging")
    assert arguments[-3:] == ["--", "/tmp/farm/", "elsewhere.example:/data/staging/"]
    assert "--rsh=ssh -o BatchMode=yes" in arguments
    assert "--protect-args" in arguments


async def test_a_batch_of_300_files_lands_byte_identical(
    tmp_path: Path, peer: PeerClient, farms: Path
) -> None:
    contents = {
        (f"night/{n:03d}.uvh5" if n % 2 else f"{n:03d}.uvh5"): os.urandom(n * 37)
        for n in range(300)
    }
    moves = make_moves(tmp_path, contents)
    await RsyncMethod().send(HERE, moves, peer)
    assert staged_bytes(moves) == source_bytes(moves)
    assert files_under(tmp_path / "staging") == staged_names(tmp_path, moves)
    assert entries(farms) == []  # the link farm is gone


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
async def test_loopback_names_copy_locally(
    tmp_path: Path, peer: PeerClient, farms: Path, hostname: str
) -> None:
    moves = make_moves(tmp_path, {"a.uvh5": b"a" * 10, "deep/er/b.uvh5": b"b"})
    await RsyncMethod().send({"hostname": hostname}, moves, peer)
    assert staged_bytes(moves) == source_bytes(moves)


async def test_the_receivers_directories_keep_their_modes(
    tmp_path: Path, peer: PeerClient, farms: Path
) -> None:
    moves = make_moves(tmp_path, {"a.uvh5": b"a", "night/b.uvh5": b"b"})
    staging = tmp_path / "staging"
    directories = [staging, *(Path(move.staging_location).parent for move in moves[:1])]
    directories.append(Path(moves[1].staging_location).parents[1])
    for directory in directories:
        directory.chmod(0o751)
    await RsyncMethod().send(HERE, moves, peer)
    assert {stat.S_IMODE(d.stat().st_mode) for d in directories} == {0o751}
    assert staged_bytes(moves) == source_bytes(moves)


async def test_a_retry_overwrites_what_a_failed_attempt_left(
    tmp_path: Path, peer: PeerClient, farms: Path
) -> None:
    moves = make_moves(tmp_path, {"a.uvh5": b"the real bytes"})
    write(moves[0].staging_location, b"half")
    await RsyncMethod().send(HERE, moves, peer)
    assert staged_bytes(moves) == [b"the real bytes"]


async def test_a_missing_target_directory_fails_with_rsyncs_reason(
    tmp_path: Path, peer: PeerClient, farms: Path
) -> None:
    [move] = make_moves(tmp_path, {"a.uvh5": b"data"})
    move = dataclasses.replace(move, staging_location=str(tmp_path / "gone" / "deeper" / "a.uvh5"))
    with pytest.raises(TransferError) as raised:
        await RsyncMethod().send(HERE, [move], peer)
    message = str(raised.value)
    assert "exit code 11" in message and "No such file or directory" in message
    assert str(tmp_path / "gone" / "deeper") in message
    assert entries(farms) == []


async def test_a_target_blocked_by_a_file_fails(
    tmp_path: Path, peer: PeerClient, farms: Path
) -> None:
    [move] = make_moves(tmp_path, {"a.uvh5": b"data"})
    (tmp_path / "blocker").write_bytes(b"")
    move = dataclasses.replace(move, staging_location=str(tmp_path / "blocker" / "a.uvh5"))
    with pytest.raises(TransferError, match=r"exit code \d+: .*Not a directory"):
        await RsyncMethod().send(HERE, [move], peer)


async def test_a_missing_source_is_named(tmp_path: Path, peer: PeerClient, farms: Path) -> None:
    moves = make_moves(tmp_path, {"a.uvh5": b"a", "gone.uvh5": b"g"})
    moves[1].source.unlink()
    with pytest.raises(TransferError, match=str(moves[1].source)):
        await RsyncMethod().send(HERE, moves, peer)
    assert files_under(tmp_path / "staging") == []
    assert entries(farms) == []


async def test_a_relative_staging_location_is_refused(tmp_path: Path, peer: PeerClient) -> None:
    [move] = make_moves(tmp_path, {"a.uvh5": b"a"})
    move = dataclasses.replace(move, staging_location="staging/a.uvh5")
    with pytest.raises(TransferError, match="relative"):
        await RsyncMethod().send(HERE, [move], peer)


def test_the_error_summary_prefers_the_line_naming_the_problem() -> None:
    specific = 'rsync: [Receiver] mkdir "/x" failed: No such file or directory (2)'
    generic = "rsync error: error in file IO (code 11) at main.c(808) [Receiver=3.5.0]"
    assert error_summary(f"{specific}\n{generic}\n") == specific
    assert error_summary(f"{generic}\n") == generic
    assert error_summary("") == "(no error output)"
