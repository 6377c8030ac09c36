"""A client for a peer named in our ``librarians`` table, built from the context's settings."""

from __future__ import annotations

from librarian_async.context import Context
from librarian_async.db.models import Librarian
from librarian_async.remote.client import PeerClient, RetryPolicy


def peer_client(app: Context, librarian: Librarian, retry: RetryPolicy | None = None) -> PeerClient:
    """A PeerClient for ``librarian`` with its decrypted credentials; close it when done."""
    return PeerClient.from_librarian(
        librarian, app.settings.load_encryption_key(), app.settings, retry=retry
    )
