"""The two-librarian fixture itself: both serve, and each accepts the other's credentials."""

from __future__ import annotations

from pathlib import Path

from librarians import librarian_pair

from librarian_async.db import peers
from librarian_async.remote.peers import peer_client


async def test_each_librarian_reaches_the_other(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    async with librarian_pair(database_url, second_database_url, tmp_path) as (source, dest):
        for me, other in ((source, dest), (dest, source)):
            async with me.app.sessions() as session:
                row = await peers.librarian_by_name(session, other.name)
            async with peer_client(me.app, row) as client:
                assert (await client.ping_logged()).name == other.name
