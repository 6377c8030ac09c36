"""The ``rsync`` method: one ``rsync`` process per batch, to the receiver's host over SSH.

The staging locations of a batch do not mirror our tree (each file has its own per-transfer
directory on the receiver), and one process per file would spend most of its time starting
up. So we build a temporary farm of symbolic links whose layout mirrors the staging
locations relative to their common parent, each link pointing at our file, and run one
``rsync --recursive --copy-links`` of the farm onto that parent. rsync writes each file under
a temporary name and renames it, so a staging location never holds a partial file.
Without ``--perms``/``--owner`` and with ``--omit-dir-times``, rsync leaves the receiver's
existing directories as they are. Arguments go to the process directly, never through a
shell. The receiver verifies sizes and checksums when the sender reports the files staged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from librarian_async.errors import TransferError
from librarian_async.remote.client import PeerClient
from librarian_async.storage.checksum import Interrupted, run_interruptible
from librarian_async.transfer.base import Fields, FileMove, VerifiedStats
from librarian_async.transfer.local import this_host_names

RSYNC = "rsync"
OPTIONS = ("--recursive", "--copy-links", "--times", "--omit-dir-times")
# --protect-args (renamed --secluded-args in rsync 3.3, old name still accepted) keeps the
# remote shell from splitting paths with spaces; rsync 3.0 and later know it.
REMOTE_OPTIONS = ("--protect-args", "--rsh=ssh -o BatchMode=yes")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TERMINATE_GRACE_SECONDS = 5.0


def is_this_host(hostname: str) -> bool:
    """True when ``hostname`` names this machine, so its paths are our local paths."""
    name = hostname.strip().lower()
    return name in LOOPBACK_NAMES or name in this_host_names()


class RsyncMethod:
    """Copy with the ``rsync`` binary: locally, or over SSH to another host."""

    name = "rsync"

    def valid(self, fields: Fields) -> bool:
        hostname = fields.get("hostname")
        if not isinstance(hostname, str) or not hostname.strip() or hostname.startswith("-"):
            return False
        return shutil.which(RSYNC) is not None

    async def send(
        self, fields: Fields, moves: Sequence[FileMove], peer: PeerClient
    ) -> VerifiedStats:
        if not moves:
            return {}
        root, relatives = farm_layout(moves)
        farm = tempfile.TemporaryDirectory(prefix="librarian-rsync-")
        try:
            await run_interruptible(build_farm, Path(farm.name), moves, relatives)
            arguments = rsync_arguments(str(fields["hostname"]).strip(), farm.name, root)
            await run_rsync(arguments, f"rsync of {len(moves)} files to {arguments[-1]}")
        finally:
            await run_interruptible(_remove_farm, farm)
        return {}  # the receiver hashes what rsync wrote


def farm_layout(moves: Sequence[FileMove]) -> tuple[str, list[str]]:
    """The common parent of the staging locations, and each location relative to it."""
    locations = [os.path.normpath(move.staging_location) for move in moves]
    for move, location in zip(moves, locations, strict=True):
        if not os.path.isabs(location):
            transfer = move.destination_transfer_id
            raise TransferError(f"transfer {transfer}: staging location {location!r} is relative")
    root = os.path.commonpath([os.path.dirname(location) for location in locations])
    return root, [os.path.relpath(location, root) for location in locations]


def build_farm(
    farm: Path, moves: Sequence[FileMove], relatives: Sequence[str], *, stop: threading.Event
) -> None:
    """One link per file, at its staging location's place in the farm, to our file."""
    for move, relative in zip(moves, relatives, strict=True):
        if stop.is_set():
            raise Interrupted
        source = os.path.abspath(move.source)
        if not os.path.exists(source):
            raise TransferError(f"rsync cannot send {source}: it does not exist")
        link = farm / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(source)
        except FileExistsError as error:
            message = f"two files of the batch go to the same staging location {relative!r}"
            raise TransferError(message) from error


def rsync_arguments(hostname: str, farm: str, root: str) -> list[str]:
    """The command line: the farm's contents onto ``root``, here or on ``hostname``."""
    if is_this_host(hostname):
        return [RSYNC, *OPTIONS, "--", f"{farm}/", f"{root}/"]
    return [RSYNC, *OPTIONS, *REMOTE_OPTIONS, "--", f"{farm}/", f"{hostname}:{root}/"]


async def run_rsync(arguments: Sequence[str], what: str) -> None:
    """Run rsync to the end; TransferError naming the exit code and its error on failure.

    On cancellation the process is terminated (killed if it lingers) and waited for, so
    nothing is still writing into the receiver's staging area once we return.
    """
    process = await asyncio.create_subprocess_exec(
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, errors = await process.communicate()
    except BaseException:
        await _stop(process)
        raise
    if process.returncode != 0:
        summary = error_summary(errors.decode("utf-8", errors="replace"))
        raise TransferError(f"{what} failed with exit code {process.returncode}: {summary}")


def error_summary(stderr: str) -> str:
    """The last line of rsync's stderr that says what went wrong.

    rsync ends with a generic "rsync error: ... (code N) at main.c(...)" line; the line
    before it names the file and the system error, so it is preferred when there is one.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith("rsync error:")]
    return (specific or lines or ["(no error output)"])[-1]


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Terminate (then kill) the process and wait for it, even if cancelled meanwhile."""
    if process.returncode is None:
        process.terminate()
    waiting = asyncio.ensure_future(process.wait())
    await _wait_through_cancellation(waiting, TERMINATE_GRACE_SECONDS)
    if not waiting.done():
        process.kill()
        await _wait_through_cancellation(waiting, None)


async def _wait_through_cancellation(waiting: asyncio.Future[int], limit: float | None) -> None:
    """Wait for ``waiting`` (at most ``limit`` seconds); a further cancellation is ignored
    here because the caller is already stopping and re-raises its own exception."""
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    while not waiting.done():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            return
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({waiting}, timeout=left)


def _remove_farm(farm: tempfile.TemporaryDirectory[str], *, stop: threading.Event) -> None:
    """Cleanup that must run to the end, so it ignores the stop flag."""
    farm.cleanup()
