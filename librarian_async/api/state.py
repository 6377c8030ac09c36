"""What the API's handlers share: the context, the authenticator and the store opener."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from librarian_async.api.auth import Authenticator, CredentialCache
from librarian_async.context import Context
from librarian_async.storage.convert import StoreRow, local_store
from librarian_async.storage.store import LocalStore

StoreOpener = Callable[[StoreRow], LocalStore]


def package_version() -> str:
    try:
        return version("librarian_async")
    except PackageNotFoundError:
        return "(unknown version)"


@dataclass
class ApiState:
    """One per app (or per mounted router)."""

    context: Context
    auth: Authenticator
    open_store: StoreOpener = local_store
    description: str = ""
    # Staging requests of this process one at a time: two racing requests would otherwise
    # both count the same free space and both pass the check for a live transfer.
    staging_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(
        cls,
        context: Context,
        *,
        open_store: StoreOpener = local_store,
        credential_ttl: float = 60.0,
        description: str | None = None,
    ) -> ApiState:
        """``open_store`` turns a ``stores`` row into the LocalStore doing the disk work."""
        cache = CredentialCache(ttl=credential_ttl, clock=context.monotonic)
        return cls(
            context=context,
            auth=Authenticator(context.sessions, cache),
            open_store=open_store,
            description=description or f"librarian_async {package_version()}",
        )
