"""``user add`` and ``librarian add|list|remove|enable-transfers|disable-transfers``."""

from __future__ import annotations

import io
import json
import socket
import sys
from pathlib import Path

import pytest

from librarian_async.context import Context
from librarian_async.db import peers
from librarian_async.db.models import Librarian, User
from librarian_async.enums import AuthLevel
from librarian_async.security import decrypt_secret, verify_password

from .conftest import Cli, Result, with_context


def user_row(name: str) -> User | None:
    async def load(app: Context) -> User | None:
        async with app.sessions() as session:
            return await peers.user_by_name(session, name)

    return with_context(load)


def librarian_row(name: str) -> Librarian:
    async def load(app: Context) -> Librarian:
        async with app.sessions() as session:
            return await peers.librarian_by_name(session, name)

    return with_context(load)


def librarians(cli: Cli) -> dict[str, dict[str, object]]:
    result = cli("librarian", "list", "--json")
    assert result.code == 0, result.err
    return {row["name"]: row for row in json.loads(result.out)}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- users ----------------------------------------------------------------------------------


def test_user_add_stores_a_hash_of_the_password_file(cli: Cli, env: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("correct horse\n")
    result = cli("user", "add", "peer-a", "--level", "CALLBACK", "--password-file", secret)
    assert result.code == 0, result.err
    user = user_row("peer-a")
    assert user is not None
    assert user.auth_level == AuthLevel.CALLBACK
    assert "correct horse" not in user.password_hash
    assert verify_password("correct horse", user.password_hash)
    assert not verify_password("wrong", user.password_hash)


def test_user_password_from_the_environment(
    cli: Cli, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBRARIAN_USER_PASSWORD", "from-env")
    result = cli("user", "add", "peer-b", "--level", "readonly")
    assert result.code == 0, result.err
    user = user_row("peer-b")
    assert user is not None and user.auth_level == AuthLevel.READONLY
    assert verify_password("from-env", user.password_hash)


def test_a_bad_level_is_a_usage_error(cli: Cli, env: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw")
    result = cli("user", "add", "peer-a", "--level", "SUPERUSER", "--password-file", secret)
    assert result.code == 2
    assert "--level" in result.err and "SUPERUSER" in result.err
    assert user_row("peer-a") is None


def test_no_password_source_without_a_terminal_is_one_line(
    cli: Cli, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    result = cli("user", "add", "peer-a", "--level", "CALLBACK")
    assert result.code == 2
    assert result.error_lines == [
        "error: password: no terminal to ask on; use --password-file or set LIBRARIAN_USER_PASSWORD"
    ]
    assert user_row("peer-a") is None


def test_an_unreadable_password_file_and_a_taken_name(cli: Cli, env: Path, tmp_path: Path) -> None:
    missing = cli("user", "add", "u", "--level", "ADMIN", "--password-file", tmp_path / "nope")
    assert missing.code == 2
    assert len(missing.error_lines) == 1 and "--password-file" in missing.err
    secret = tmp_path / "password"
    secret.write_text("pw")
    assert cli("user", "add", "u", "--level", "ADMIN", "--password-file", secret).code == 0
    taken = cli("user", "add", "u", "--level", "ADMIN", "--password-file", secret)
    assert taken.code == 1
    assert taken.error_lines == ["error: user 'u' already exists"]


# --- librarians -----------------------------------------------------------------------------


def add_peer(cli: Cli, *extra: str, port: int = 21109) -> Result:
    return cli(
        "librarian", "add", "destination",
        "--url", "http://127.0.0.1/",
        "--port", str(port),
        "--authenticator", "us:pa:ss",
        *extra,
    )  # fmt: skip


def test_adding_a_peer_needs_the_encryption_key(cli: Cli, env: Path) -> None:
    result = add_peer(cli, "--no-check")
    assert result.code == 2
    assert len(result.error_lines) == 1
    assert "LIBRARIAN_ENCRYPTION_KEY" in result.error_lines[0]
    assert librarians(cli) == {}


def test_an_unreadable_key_file_names_the_setting(
    cli: Cli, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBRARIAN_ENCRYPTION_KEY_FILE", str(tmp_path / "no-key"))
    result = add_peer(cli, "--no-check")
    assert result.code == 2
    assert len(result.error_lines) == 1
    assert "LIBRARIAN_ENCRYPTION_KEY_FILE" in result.error_lines[0]
    assert librarians(cli) == {}


def test_add_stores_the_authenticator_encrypted(cli: Cli, env: Path, encryption_key: str) -> None:
    result = add_peer(cli, "--no-check")
    assert result.code == 0, result.err
    row = librarian_row("destination")
    assert (row.url, row.port, row.transfers_enabled) == ("http://127.0.0.1", 21109, True)
    assert "pa:ss" not in row.authenticator
    assert decrypt_secret(encryption_key.encode(), row.authenticator) == "us:pa:ss"
    listed = librarians(cli)["destination"]
    assert listed == {
        "name": "destination",
        "url": "http://127.0.0.1",
        "port": 21109,
        "transfers_enabled": True,
        "last_seen": None,
        "last_heard": None,
    }
    table = cli("librarian", "list")
    assert table.code == 0 and "destination" in table.out and "pa:ss" not in table.out


def test_transfers_can_be_switched_off_and_on(cli: Cli, env: Path, encryption_key: str) -> None:
    assert add_peer(cli, "--no-check").code == 0
    assert cli("librarian", "disable-transfers", "destination").code == 0
    assert librarians(cli)["destination"]["transfers_enabled"] is False
    assert cli("librarian", "enable-transfers", "destination").code == 0
    assert librarians(cli)["destination"]["transfers_enabled"] is True
    unknown = cli("librarian", "disable-transfers", "elsewhere")
    assert unknown.code == 1
    assert unknown.error_lines == ["error: no librarian named 'elsewhere'"]


def test_remove_forgets_the_peer(cli: Cli, env: Path, encryption_key: str) -> None:
    assert add_peer(cli, "--no-check").code == 0
    assert add_peer(cli, "--no-check").code == 1  # the name is taken
    result = cli("librarian", "remove", "destination")
    assert result.code == 0, result.err
    assert librarians(cli) == {}
    again = cli("librarian", "remove", "destination")
    assert again.code == 1
    assert again.error_lines == ["error: no librarian named 'destination'"]


def test_an_unreachable_peer_is_not_added(cli: Cli, env: Path, encryption_key: str) -> None:
    result = add_peer(cli, port=closed_port())
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "unreachable" in result.error_lines[0]
    assert librarians(cli) == {}


def test_an_authenticator_without_a_colon_is_refused(
    cli: Cli, env: Path, encryption_key: str
) -> None:
    result = cli(
        "librarian", "add", "destination",
        "--url", "http://127.0.0.1", "--port", "1", "--authenticator", "nocolon", "--no-check",
    )  # fmt: skip
    assert result.code == 2
    assert result.error_lines == ["error: --authenticator: expected USER:PASS"]
