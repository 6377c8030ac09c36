"""``librarian add|list|remove|enable-transfers|disable-transfers`` and ``user add``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from librarian_async.cli.common import database, print_json, print_table
from librarian_async.config import Settings
from librarian_async.db import peers
from librarian_async.db.models import Librarian, User
from librarian_async.enums import AuthLevel, parse_enum
from librarian_async.errors import ConfigError
from librarian_async.security import encrypt_secret, hash_password

PASSWORD_ENV = "LIBRARIAN_USER_PASSWORD"


def register(commands: Any) -> None:
    _register_librarian(commands)
    _register_user(commands)


def _register_librarian(commands: Any) -> None:
    librarian = commands.add_parser("librarian", help="manage peer librarians")
    actions = librarian.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="register a peer librarian")
    add.add_argument("name", help="the peer's own LIBRARIAN_NAME")
    add.add_argument("--url", required=True, help="e.g. https://librarian.example.org")
    add.add_argument("--port", type=int, required=True)
    add.add_argument("--authenticator", required=True, metavar="USER:PASS")
    add.add_argument("--no-check", action="store_true", help="do not ping the peer first")
    add.set_defaults(handler=add_librarian)

    listing = actions.add_parser("list", help="list peer librarians")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_librarians)

    remove = actions.add_parser("remove", help="forget a peer librarian")
    remove.add_argument("name")
    remove.set_defaults(handler=remove_librarian)

    for action, enabled in (("enable-transfers", True), ("disable-transfers", False)):
        switch = actions.add_parser(action, help=f"{action.split('-')[0]} transfers to a peer")
        switch.add_argument("name")
        switch.set_defaults(handler=switch_transfers, enabled=enabled)


def _register_user(commands: Any) -> None:
    user = commands.add_parser("user", help="manage users allowed to call this librarian")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user (password from a prompt, file or env)")
    add.add_argument("name")
    add.add_argument("--level", required=True, type=auth_level, help="e.g. CALLBACK, ADMIN")
    add.add_argument("--password-file", type=Path)
    add.set_defaults(handler=add_user)


def auth_level(text: str) -> AuthLevel:
    try:
        return parse_enum(AuthLevel, text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


async def add_librarian(args: argparse.Namespace, settings: Settings) -> int:
    if ":" not in args.authenticator:
        raise ConfigError("--authenticator: expected USER:PASS")
    key = settings.load_encryption_key()
    row = Librarian(
        name=args.name,
        url=args.url.rstrip("/"),
        port=args.port,
        authenticator=encrypt_secret(key, args.authenticator),
        transfers_enabled=True,
    )
    if not args.no_check:
        from librarian_async.remote.ping import check_peer  # the HTTP client only when used

        await check_peer(row.url, row.port, args.authenticator, expected_name=args.name)
    async with database(settings) as app, app.sessions.begin() as session:
        await peers.add_librarian(session, row)
    print(f"librarian {args.name!r} added ({row.url}:{row.port})")
    return 0


async def list_librarians(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions() as session:
        rows = [
            {
                "name": peer.name,
                "url": peer.url,
                "port": peer.port,
                "transfers_enabled": peer.transfers_enabled,
                "last_seen": peer.last_seen,
                "last_heard": peer.last_heard,
            }
            for peer in await peers.all_librarians(session)
        ]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "url", "port", "transfers_enabled", "last_seen"])
    return 0


async def remove_librarian(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions.begin() as session:
        await peers.remove_librarian(session, args.name)
    print(f"librarian {args.name!r} removed")
    return 0


async def switch_transfers(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as app, app.sessions.begin() as session:
        peer = await peers.librarian_by_name(session, args.name)
        peer.transfers_enabled = args.enabled
    print(f"transfers to {args.name!r} {'enabled' if args.enabled else 'disabled'}")
    return 0


async def add_user(args: argparse.Namespace, settings: Settings) -> int:
    password = read_password(args.password_file)
    async with database(settings) as app, app.sessions.begin() as session:
        user = User(
            username=args.name, password_hash=hash_password(password), auth_level=args.level
        )
        await peers.add_user(session, user)
    print(f"user {args.name!r} added with level {args.level.name}")
    return 0


def read_password(path: Path | None) -> str:
    """From --password-file, else LIBRARIAN_USER_PASSWORD, else an interactive prompt."""
    if path is not None:
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f"--password-file {path}: {error.strerror}") from error
    else:
        password = os.environ.get(PASSWORD_ENV) or _prompt()
    if not password:
        raise ConfigError("password: must not be empty")
    return password


def _prompt() -> str:
    if not sys.stdin.isatty():
        raise ConfigError(
            f"password: no terminal to ask on; use --password-file or set {PASSWORD_ENV}"
        )
    try:
        first = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
    except EOFError as error:
        raise ConfigError("password: no input") from error
    if again != first:
        raise ConfigError("password: the two entries differ")
    return first
