"""HTTP Basic authentication against the ``users`` table, with a short-lived check cache.

Passwords are stored as slow scrypt hashes (~50 ms per check). A busy peer calls us for
every file, so a successful check is remembered for ``ttl`` seconds under a fast digest of
the credentials (HMAC-SHA256 with a random per-process key: the cache never holds a
password, and its keys mean nothing outside this process). An entry is only used while the
user's stored hash is unchanged, so a new password takes effect at once; failed checks are
never cached. :attr:`CredentialCache.slow_checks` counts the scrypt checks really done.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from librarian_async.api.errors import ProtocolError
from librarian_async.db import peers
from librarian_async.db.engine import SessionMaker
from librarian_async.db.models import IncomingTransfer, OutgoingTransfer
from librarian_async.enums import AuthLevel
from librarian_async.remote.schemas import ErrorBody
from librarian_async.security import hash_password, verify_password

BASIC = HTTPBasic(auto_error=False, realm="librarian")
CHALLENGE = {"WWW-Authenticate": 'Basic realm="librarian"'}


@dataclass(frozen=True)
class Caller:
    """Who is calling: the authenticated username (empty for anonymous) and its level."""

    username: str
    level: AuthLevel

    @property
    def is_admin(self) -> bool:
        return self.level >= AuthLevel.ADMIN


def may_change_incoming(caller: Caller, row: IncomingTransfer) -> bool:
    """Only the sender of an incoming transfer (or an ADMIN) may change it."""
    return caller.is_admin or caller.username in (row.source, row.uploader)


def may_change_outgoing(caller: Caller, row: OutgoingTransfer) -> bool:
    """Only the receiver of an outgoing transfer (or an ADMIN) may change it."""
    return caller.is_admin or caller.username == row.destination


class CredentialCache:
    """Successful password checks, remembered for ``ttl`` seconds (at most ``max_entries``)."""

    def __init__(
        self,
        ttl: float = 60.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.slow_checks = 0
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[str, float]] = {}

    async def verify(self, username: str, password: str, stored_hash: str) -> bool:
        """True when ``password`` matches; pays for scrypt only on a cache miss."""
        digest = self._digest(username, password)
        hit = self._entries.get(digest)
        if hit is not None and hit[0] == stored_hash and hit[1] > self._clock():
            return True
        self.slow_checks += 1
        matches = await asyncio.to_thread(verify_password, password, stored_hash)
        if matches:
            self._remember(digest, stored_hash)
        return matches

    def _digest(self, username: str, password: str) -> bytes:
        message = len(username).to_bytes(4, "big") + username.encode() + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _remember(self, digest: bytes, stored_hash: str) -> None:
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[digest] = (stored_hash, now + self.ttl)


class Authenticator:
    """Turns Basic credentials into a :class:`Caller` of at least a required level."""

    def __init__(self, sessions: SessionMaker, cache: CredentialCache) -> None:
        self.sessions = sessions
        self.cache = cache
        self._decoy: str | None = None

    def require(self, level: AuthLevel) -> Callable[..., Awaitable[Caller]]:
        """A FastAPI dependency: the caller, or 401 when it is not at least ``level``."""

        async def caller(
            credentials: Annotated[HTTPBasicCredentials | None, Depends(BASIC)],
        ) -> Caller:
            return await self.authenticate(credentials, level)

        return caller

    async def authenticate(
        self, credentials: HTTPBasicCredentials | None, level: AuthLevel
    ) -> Caller:
        if level == AuthLevel.NONE:
            return Caller(credentials.username if credentials else "", AuthLevel.NONE)
        if credentials is None:
            raise unauthorised("This endpoint needs HTTP Basic credentials.")
        found = await self._check(credentials.username, credentials.password)
        if found is None:
            raise unauthorised("Unknown user or wrong password.")
        if found < level:
            message = f"User {credentials.username!r} has level {found.name}; "
            raise unauthorised(message + f"this endpoint needs {level.name}.")
        return Caller(credentials.username, found)

    async def _check(self, username: str, password: str) -> AuthLevel | None:
        """The user's level if the password is right; an unknown user costs the same time."""
        async with self.sessions() as session:
            user = await peers.user_by_name(session, username)
        if user is None:
            await self.cache.verify(username, password, await self._decoy_hash())
            return None
        if not await self.cache.verify(username, password, user.password_hash):
            return None
        return user.auth_level

    async def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = await asyncio.to_thread(hash_password, secrets.token_hex(16))
        return self._decoy


def unauthorised(reason: str) -> ProtocolError:
    body = ErrorBody(reason=reason, suggested_remedy="Check the username, password and level.")
    return ProtocolError(401, body, CHALLENGE)
