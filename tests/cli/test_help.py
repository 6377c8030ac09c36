"""``--help`` works for the top level and every subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from librarian_async.cli import build_parser

from .conftest import Cli


def command_paths(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from command_paths(child, (*path, name))


PATHS = list(command_paths(build_parser()))


def test_every_command_of_the_spec_is_there() -> None:
    expected = {
        ("db", "upgrade"),
        ("run",),
        ("status",),
        ("config", "check"),
        ("store", "add"),
        ("store", "list"),
        ("store", "enable"),
        ("store", "disable"),
        ("user", "add"),
        ("librarian", "add"),
        ("librarian", "list"),
        ("librarian", "remove"),
        ("librarian", "enable-transfers"),
        ("librarian", "disable-transfers"),
        ("file", "add"),
        ("file", "list"),
        ("file", "show"),
    }
    assert expected <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "top")
def test_help_exits_0(cli: Cli, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.code == 0
    assert result.out.startswith("usage: librarian-async")
    assert result.err == ""


@pytest.mark.parametrize("argv", [(), ("store",), ("nonsense",), ("file", "add")])
def test_incomplete_commands_are_usage_errors(cli: Cli, argv: tuple[str, ...]) -> None:
    result = cli(*argv)
    assert result.code == 2
    assert "usage: librarian-async" in result.err
