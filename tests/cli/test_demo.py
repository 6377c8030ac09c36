"""``demo``: two librarians in one process go through every step, and say so.

The demo checks each step itself (a step that did not happen stops it with exit 1); these
tests hold it to its word from outside: the summary lines, and the folders and databases it
leaves behind.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from librarian_async.demo.sites import MARKER, prepare_folder
from librarian_async.errors import ConfigError

from .conftest import Cli


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LIBRARIAN_HOME", str(home))
    return home


def rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(sql).fetchall()


def test_demo_runs_every_step_and_a_rerun_starts_afresh(cli: Cli, home: Path) -> None:
    result = cli("demo")

    assert result.code == 0, result.out + result.err
    out = result.out
    titles = ["Set-up", "Sample files", "Network clone", "SneakerNet", "Integrity check", "Summary"]
    for number, title in enumerate(titles, 1):
        assert f"\n{number}. {title}" in out
    assert "night 2459001 (two days ago) added to 'store': 40 files" in out
    assert "receive_clone verified and stored 40 files, then 40 callbacks to the source" in out
    assert "source: transfers 40 COMPLETED; 40 files recorded as copied" in out
    assert "night 2459002 (today) added: 12 files" in out
    assert "send_clone indeed leaves them alone" in out
    assert "create_local_clone copied the last day's 12 files onto the drive" in out
    assert "(12 files, 12 transfers ONGOING)" in out
    assert "manifest ingest staged 12 files" in out
    assert "receive_clone verified and stored 12 files, then 12 callbacks to the source" in out
    assert "source: transfers 52 COMPLETED (40 by network, 12 by drive)" in out
    assert "check_integrity re-hashed 52 files: 51 ok, 1 corrupt (that very one)" in out
    assert "every step did what it should" in out
    assert "destination holds 52 files (40 came by network, 12 by drive)" in out

    folder = home / "demo"
    assert (folder / MARKER).is_file()
    source, destination = folder / "source", folder / "destination"
    assert rows(destination / "librarian.sqlite3", "select count(*) from files") == [(52,)]
    assert rows(destination / "librarian.sqlite3", "select count(*) from corrupt_files") == [(1,)]
    assert rows(source / "librarian.sqlite3", "select count(*) from remote_instances") == [(52,)]
    stored = [path for path in (destination / "stores" / "store" / "store").rglob("*")]
    assert sum(path.is_file() for path in stored) == 52

    leftover = source / "leftover"
    leftover.write_text("from the first run")
    again = cli("demo", "--home", folder)
    assert again.code == 0, again.out + again.err
    assert "every step did what it should" in again.out
    assert not leftover.exists()


def test_a_folder_the_demo_did_not_make_is_refused(cli: Cli, tmp_path: Path) -> None:
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "data.txt").write_text("keep me")

    result = cli("demo", "--home", foreign)

    assert result.code == 2
    assert result.error_lines == [
        f"error: --home {foreign}: exists and was not made by `demo`; choose another folder"
    ]
    assert [path.name for path in foreign.iterdir()] == ["data.txt"]


def test_prepare_folder_replaces_only_a_demo_folder(tmp_path: Path) -> None:
    prepare_folder(tmp_path / "fresh")
    (tmp_path / "fresh" / "old").write_text("old")
    prepare_folder(tmp_path / "fresh")
    assert sorted(path.name for path in (tmp_path / "fresh").iterdir()) == [MARKER]

    (tmp_path / "empty").mkdir()
    prepare_folder(tmp_path / "empty")
    assert (tmp_path / "empty" / MARKER).is_file()

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(ConfigError):
        prepare_folder(tmp_path / "other")
    assert [path.name for path in (tmp_path / "other").iterdir()] == ["file"]
