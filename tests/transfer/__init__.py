"""Tests of the transfer methods, and helpers they share.

Files are real files in ``tmp_path``; checksums come from hashlib and xxhash directly, not
from our checksum module, so the methods are checked against an independent reference.
A "staging area" here is a directory with one fresh sub-directory per transfer, laid out
like a receiver's (``<staging>/<transfer dir>/<upload name>``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import xxhash

from librarian_async.transfer.base import FileMove


def checksum_of(content: bytes, algorithm: str = "md5") -> str:
    if algorithm == "xxh3":
        return f"xxh3:::{xxhash.xxh3_128(content).hexdigest()}"
    return f"{algorithm}:::{hashlib.new(algorithm, content).hexdigest()}"


def make_moves(
    root: Path, contents: dict[str, bytes], algorithm: str = "md5", first_id: int = 1
) -> list[FileMove]:
    """Source files under ``root/source`` and one staging directory per file under
    ``root/staging`` (made, like a receiver does; the file's sub-directories are not)."""
    moves = []
    for number, (name, content) in enumerate(contents.items(), start=first_id):
        source = root / "source" / name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(content)
        directory = root / "staging" / f"peer-{number}-x{number:04d}"
        directory.mkdir(parents=True)
        moves.append(
            FileMove(
                source=source,
                staging_location=str(directory / name),
                size=len(content),
                checksum=checksum_of(content, algorithm),
                source_transfer_id=number,
                destination_transfer_id=1000 + number,
            )
        )
    return moves


def staged_bytes(moves: list[FileMove]) -> list[bytes]:
    """What each move's staging location holds, in order (a missing file raises)."""
    return [Path(move.staging_location).read_bytes() for move in moves]


def source_bytes(moves: list[FileMove]) -> list[bytes]:
    return [move.source.read_bytes() for move in moves]


def staged_names(root: Path, moves: list[FileMove]) -> list[str]:
    """The staging locations of ``moves`` relative to ``root/staging``, sorted."""
    staging = root / "staging"
    return sorted(Path(move.staging_location).relative_to(staging).as_posix() for move in moves)


def files_under(directory: Path) -> list[str]:
    """Every file and link below ``directory``, relative, sorted (temporaries included)."""
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() or path.is_symlink()
    )


def exists(location: str | Path) -> bool:
    return Path(location).exists()


def write(location: str | Path, content: bytes) -> None:
    Path(location).write_bytes(content)


def entries(directory: Path) -> list[str]:
    """Everything directly in ``directory`` (files, links and directories)."""
    return sorted(path.name for path in directory.iterdir())
