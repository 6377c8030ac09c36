"""Bad settings and unusable databases stop a command with one line, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .conftest import Cli

COMMANDS = [("status",), ("store", "list"), ("file", "list"), ("librarian", "list")]


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LIBRARIAN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_port_that_is_not_a_number(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_PORT", "abc")
    result = cli("status")
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: LIBRARIAN_PORT: ")


def test_a_missing_background_config_file(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "tasks.json"
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", str(missing))
    result = cli("status")
    assert result.code == 2
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: LIBRARIAN_BACKGROUND_CONFIG: ")
    assert str(missing) in result.err


@pytest.mark.parametrize("url", ["mysql://user@host/db", "not a url"])
def test_a_database_url_of_an_unknown_scheme(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", url)
    result = cli("store", "list")
    assert result.code == 2
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: LIBRARIAN_DATABASE_URL: ")


def test_several_bad_settings_are_reported_together(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBRARIAN_PORT", "70000")
    monkeypatch.setenv("LIBRARIAN_LOG_LEVEL", "chatty")
    result = cli("status")
    assert result.code == 2
    assert sorted(line.split(":")[1].strip() for line in result.error_lines) == [
        "LIBRARIAN_LOG_LEVEL",
        "LIBRARIAN_PORT",
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_database_without_schema_says_to_upgrade(
    cli: Cli,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    empty_database_url: str,
    command: tuple[str, ...],
) -> None:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", empty_database_url)
    result = cli(*command)
    assert result.code == 1
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: database ")
    assert result.err.rstrip().endswith("has no schema; run `librarian-async db upgrade`")


def test_db_upgrade_then_the_command_works(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, empty_database_url: str
) -> None:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", empty_database_url)
    upgraded = cli("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert "is at revision head" in upgraded.out
    assert cli("store", "list").out == "(none)\n"
    assert cli("db", "upgrade").code == 0  # idempotent


def test_the_default_database_lives_under_home(cli: Cli, home: Path) -> None:
    assert cli("db", "upgrade").code == 0
    assert (home / "librarian.sqlite3").is_file()
    assert cli("status").code == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:{port}/librarian",
        "postgresql://postgres@no-such-host.invalid/librarian",
    ],
)
def test_an_unreachable_database_is_one_line(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", url.format(port=free_port()))
    result = cli("status")
    assert result.code == 1
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: database postgresql+asyncpg://postgres@")


def test_a_missing_postgres_database_is_one_line(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, absent_postgres_url: str
) -> None:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", absent_postgres_url)
    result = cli("store", "list")
    assert result.code == 1
    assert len(result.err.splitlines()) == 1
    assert "does not exist" in result.err
