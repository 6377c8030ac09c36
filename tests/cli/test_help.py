"""``--help`` works for the top level and every subcommand."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from librarian_async.cli import COMMAND_GROUPS, build_parser

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


def top_level_commands(parser: argparse.ArgumentParser) -> set[str]:
    return {path[0] for path in command_paths(parser) if len(path) == 1}


def test_every_command_is_mapped_to_the_group_that_registers_it() -> None:
    assert top_level_commands(build_parser()) == set(COMMAND_GROUPS)
    for command in COMMAND_GROUPS:
        assert command in top_level_commands(build_parser([command, "--help"]))


def test_a_command_imports_only_its_own_group() -> None:
    script = (
        "import sys\n"
        "from librarian_async.cli import build_parser\n"
        "build_parser(['-v', 'run', '--once'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('librarian_async.cli.')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "['librarian_async.cli.common', 'librarian_async.cli.running']"
