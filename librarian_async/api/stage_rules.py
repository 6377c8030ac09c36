"""The checks of ``clone/batch_stage`` and ``clone/stage`` (PROTOCOL §2.1), without I/O.

1. A malformed request is 400: a negative size, an empty batch, a name that is empty,
   absolute or has a ``..`` component (it would leave staging or the store), a repeated
   ``destination_location``, a checksum we cannot verify.
2. (The store choice, 413, needs the disk: see :mod:`librarian_async.api.staging`.)
3. Per item: a catalogued file of that name is "409"; a live transfer of the same name and
   checksum is "425" when ONGOING, "406" when INITIATED or STAGED (that older transfer is
   then failed and unstaged: the sender has given up on it).
4. Any list non-empty rejects the whole batch with one status, priority 425 > 409 > 406.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from librarian_async.db.models import IncomingTransfer
from librarian_async.enums import TransferStatus
from librarian_async.errors import ChecksumError
from librarian_async.remote.schemas import UploadItem
from librarian_async.storage.checksum import checksums_match, parse_checksum
from librarian_async.storage.store import name_problem

FIX_REQUEST = "Fix the request; see the reason."
MAX_NAMED = 5


class StagingRefused(Exception):
    """The whole request is refused with ``status``; the ids say which items caused it."""

    def __init__(
        self,
        status: int,
        reason: str,
        remedy: str,
        source_ids: Sequence[int] = (),
        destination_ids: Sequence[int] = (),
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.remedy = remedy
        self.source_ids = list(source_ids)
        self.destination_ids = list(destination_ids)


# --- 1. the request itself ----------------------------------------------------------------


def check_request(total_size: int, items: Sequence[UploadItem]) -> None:
    """Raise a 400 StagingRefused naming every problem of a malformed request."""
    problems = [] if items else ["uploads: the batch is empty"]
    if total_size < 0:
        problems.append(f"total_size: {total_size} is negative")
    for index, item in enumerate(items):
        problems += [f"uploads.{index}.{problem}" for problem in item_problems(item)]
    repeated = [name for name, n in Counter(i.destination_location for i in items).items() if n > 1]
    if repeated:
        problems.append(f"destination_location repeated in the batch: {_named(repeated)}")
    if problems:
        reason = "invalid request: " + "; ".join(problems[:MAX_NAMED])
        raise StagingRefused(400, reason, FIX_REQUEST, [i.source_transfer_id for i in items])


def item_problems(item: UploadItem) -> list[str]:
    problems = [] if item.upload_size >= 0 else [f"upload_size: {item.upload_size} is negative"]
    names = {"upload_name": item.upload_name, "destination_location": item.destination_location}
    for label, name in names.items():
        problem = name_problem(name)
        if problem is not None:
            problems.append(f"{label}: {name!r} {problem}")
    try:
        parse_checksum(item.upload_checksum)
    except ChecksumError as error:
        problems.append(f"upload_checksum: {error}")
    return problems


# --- 3 and 4. conflicts with the catalogue and with live transfers ------------------------


@dataclass
class Verdict:
    """Items of a batch by the status they call for, with the older transfers involved."""

    ongoing: list[tuple[UploadItem, IncomingTransfer]] = field(default_factory=list)
    existing: list[UploadItem] = field(default_factory=list)
    stale: list[tuple[UploadItem, IncomingTransfer]] = field(default_factory=list)

    @property
    def stale_transfer_ids(self) -> list[int]:
        return [transfer.id for _, transfer in self.stale]


def classify(
    items: Sequence[UploadItem],
    catalogued: Collection[str],
    live: Sequence[IncomingTransfer],
) -> Verdict:
    verdict = Verdict()
    for item in items:
        if item.destination_location in catalogued:
            verdict.existing.append(item)
        for transfer in live:
            if not _same_file(item, transfer):
                continue
            if transfer.status == TransferStatus.ONGOING:
                verdict.ongoing.append((item, transfer))
            else:
                verdict.stale.append((item, transfer))
    return verdict


def _same_file(item: UploadItem, transfer: IncomingTransfer) -> bool:
    if transfer.store_path != item.destination_location:
        return False
    try:
        return checksums_match(item.upload_checksum, transfer.transfer_checksum)
    except ChecksumError:
        return False


def refusal_of(verdict: Verdict) -> StagingRefused | None:
    """The one refusal for a batch, by priority 425 > 409 > 406; None to go ahead."""
    if verdict.ongoing:
        items, transfers = zip(*verdict.ongoing, strict=True)
        return StagingRefused(
            425,
            f"being transferred right now (ONGOING): {_named_items(items)}",
            "Wait for the ongoing transfer to finish, then check its status.",
            [item.source_transfer_id for item in items],
            [transfer.id for transfer in transfers],
        )
    if verdict.existing:
        return StagingRefused(
            409,
            f"already catalogued here: {_named_items(verdict.existing)}",
            "Do not send these files again; search/file shows what is here.",
            [item.source_transfer_id for item in verdict.existing],
        )
    if verdict.stale:
        items, transfers = zip(*verdict.stale, strict=True)
        return StagingRefused(
            406,
            "an earlier transfer of the same file was unfinished (INITIATED or STAGED) and has "
            f"been failed and unstaged: {_named_items(items)}",
            "Send these files again.",
            [item.source_transfer_id for item in items],
            [transfer.id for transfer in transfers],
        )
    return None


def _named_items(items: Iterable[UploadItem]) -> str:
    return _named(item.destination_location for item in items)


def _named(names: Iterable[str]) -> str:
    listed = list(names)
    shown = ", ".join(repr(name) for name in listed[:MAX_NAMED])
    hidden = len(listed) - MAX_NAMED
    return shown + (f" and {hidden} more" if hidden > 0 else "")
