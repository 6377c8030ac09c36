"""Fixtures for the storage tests: real directories under ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest

from librarian_async.storage.store import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A store whose staging and store areas are fresh directories."""
    (tmp_path / "staging").mkdir()
    (tmp_path / "store").mkdir()
    return LocalStore("pot", tmp_path / "staging", tmp_path / "store")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the store that nothing may reach through it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("secret")
    return path


@pytest.fixture
def sparse_file(tmp_path: Path) -> Path:
    """A 4 GiB file of holes: md5 needs seconds for it, one chunk about a millisecond."""
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as handle:
        handle.truncate(4 * 1024**3)
    return path
