"""Network cloning between two real librarians, once per transfer method, on both backends.

The seed's "Inter-Librarian Transfer (Source)" and "(Destination)" configurations run as
written; 200 files of mixed sizes added at the source must end up at the destination
byte-identical, with COMPLETED transfers on both sides and a remote instance per file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from librarians import librarian_pair

from librarian_async.db.models import IncomingTransfer, OutgoingTransfer
from librarian_async.enums import TransferStatus

from .network import (
    add_files,
    clone_round,
    digest,
    file_names,
    queue_rows,
    remote_copies,
    sample_files,
    staging_entries,
    statuses,
    stored_digests,
    verified_by_sender_or_upload,
)

S = TransferStatus
HOST = os.uname().nodename
METHODS = {
    "http": {"http": {}},
    "local": {"local": {"hostnames": [HOST]}},
    "rsync": {"rsync": {"hostname": HOST}},
}


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_every_file_reaches_the_destination(
    method: str, database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    files = sample_files(200)
    async with librarian_pair(
        database_url, second_database_url, tmp_path, destination_methods=METHODS[method]
    ) as (source, destination):
        await add_files(source, files)

        results = await clone_round(source, destination)

        assert [r.outcome for r in results] == ["ok"] * 4, [r.report for r in results]
        expected = {name: digest(content) for name, content in files.items()}
        assert stored_digests(destination, files) == expected
        assert await file_names(destination) == set(files)
        assert await statuses(source, OutgoingTransfer) == {S.COMPLETED: len(files)}
        assert await statuses(destination, IncomingTransfer) == {S.COMPLETED: len(files)}
        assert await remote_copies(source) == set(files)
        assert staging_entries(destination) == []
        assert {item.transfer_method for item in await queue_rows(source)} == {method}
        # http and local verify the bytes as they write them; rsync's are hashed on receipt
        verified = 0 if method == "rsync" else len(files)
        assert await verified_by_sender_or_upload(destination) == verified
        second = await clone_round(source, destination)
        assert second[0].report.counts.get("queued", 0) == 0
