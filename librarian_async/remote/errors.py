"""How a peer's failures become our errors (all under :class:`librarian_async.errors.PeerError`).

* no answer (connection refused or reset, DNS failure, timeout): ``PeerUnreachableError``;
* an error status: ``PeerRefusedError(status, reason, body)``, whatever the body's shape;
* a success whose body is not what the protocol says: :class:`PeerProtocolError`.

Error bodies come in three shapes (PROTOCOL §1): ``{reason, suggested_remedy, ...}`` at top
level, ``{"detail": "<that object as a JSON string>"}`` or ``{"detail": {that object}}``.
``PeerRefusedError.body`` is the object in whichever shape it came (or ``{"reason": ...}``
for a plain-text detail), None when the body was not JSON.
"""

from __future__ import annotations

import json
from typing import Any

from librarian_async.errors import PeerError, PeerRefusedError, PeerUnreachableError

__all__ = [
    "PeerProtocolError",
    "PeerRefusedError",
    "PeerUnreachableError",
    "error_object",
    "refusal",
]

MAX_TEXT = 300


class PeerProtocolError(PeerError):
    """The peer answered with success but its body does not follow the protocol."""


def refusal(status: int, content: bytes, phrase: str = "") -> PeerRefusedError:
    """The PeerRefusedError for an error answer with this status and body."""
    body = error_object(content)
    if body is not None:
        reason = str(body["reason"])
    else:
        reason = content.decode("utf-8", errors="replace").strip()[:MAX_TEXT] or phrase
    return PeerRefusedError(status, reason or f"HTTP {status}", body)


def error_object(content: bytes) -> dict[str, Any] | None:
    """``{reason, ...}`` from any of the three shapes; None if the body is not JSON."""
    try:
        data = json.loads(content)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return {"reason": _text(data)}
    if "reason" in data:
        return data
    return _from_detail(data.get("detail", data))


def _from_detail(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict) and "reason" in detail:
        return detail
    if isinstance(detail, str):
        try:
            inner = json.loads(detail)
        except ValueError:
            return {"reason": detail}
        if isinstance(inner, dict) and "reason" in inner:
            return inner
        return {"reason": detail}
    return {"reason": _text(detail)}


def _text(value: Any) -> str:
    return json.dumps(value)[:MAX_TEXT]
