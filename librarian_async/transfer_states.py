"""The transfer state machine (PROTOCOL §3): the one place that says which moves are allowed.

Every route and task that changes the status of an incoming or outgoing transfer asks here:

* INITIATED -> ONGOING, STAGED, FAILED, CANCELLED
* ONGOING   -> STAGED, FAILED, CANCELLED
* STAGED    -> FAILED, CANCELLED
* COMPLETED, FAILED and CANCELLED are final.

COMPLETED is never reached by an ordinary move: only a successful ingest completes an incoming
transfer (from STAGED) and only ``clone/complete`` completes an outgoing one (from ONGOING or
STAGED); see :func:`can_complete`. Asking for the status a transfer already has is not a move
and is reported as "already there" (:func:`refusal` returns None), so that a retried call
neither fails nor changes anything.
"""

from __future__ import annotations

from typing import Literal

from librarian_async.enums import TransferStatus

__all__ = [
    "FINAL",
    "LIVE",
    "Direction",
    "can_complete",
    "can_move",
    "ends_staging",
    "refusal",
    "sources_of",
]

Direction = Literal["incoming", "outgoing"]

S = TransferStatus
MOVES: dict[TransferStatus, frozenset[TransferStatus]] = {
    S.INITIATED: frozenset({S.ONGOING, S.STAGED, S.FAILED, S.CANCELLED}),
    S.ONGOING: frozenset({S.STAGED, S.FAILED, S.CANCELLED}),
    S.STAGED: frozenset({S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
COMPLETE_FROM: dict[Direction, frozenset[TransferStatus]] = {
    "incoming": frozenset({S.STAGED}),
    "outgoing": frozenset({S.ONGOING, S.STAGED}),
}
FINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
LIVE = frozenset({S.INITIATED, S.ONGOING, S.STAGED})
"""Statuses of a transfer that still holds (or expects) bytes in staging."""


def can_move(current: TransferStatus, new: TransferStatus) -> bool:
    """True when ``current -> new`` is an allowed ordinary move (never to COMPLETED)."""
    return new in MOVES[current]


def can_complete(direction: Direction, current: TransferStatus) -> bool:
    """True when a transfer in ``current`` may be completed (ingest or ``clone/complete``)."""
    return current in COMPLETE_FROM[direction]


def sources_of(new: TransferStatus) -> frozenset[TransferStatus]:
    """Every status from which an ordinary move to ``new`` is allowed."""
    return frozenset(status for status, targets in MOVES.items() if new in targets)


def ends_staging(new: TransferStatus) -> bool:
    """A move of an incoming transfer to this status removes its staged file."""
    return new in (S.FAILED, S.CANCELLED)


def refusal(current: TransferStatus, new: TransferStatus) -> str | None:
    """Why ``current -> new`` is refused, or None when it is allowed or already done."""
    if current == new or can_move(current, new):
        return None
    if new == S.COMPLETED:
        return f"cannot set {S.COMPLETED.name} by request (from {current.name})"
    if current in FINAL:
        return f"{current.name} is final"
    return f"{current.name} cannot become {new.name}"
