"""Fixtures for the CLI tests: ``main(argv)`` called in-process against a real database.

``main`` runs its own event loop (``asyncio.run``), so these tests are sync functions. The
``database_url`` fixture of the root conftest is async; pytest-asyncio sets it up on its own
loop, which is idle while a sync test body runs, so ``main`` can start a loop of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from librarian_async.cli import main
from librarian_async.config import load_settings
from librarian_async.context import Context, open_context

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """Exit code and captured output of one CLI call."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``main(argv)``; argparse exits become exit codes; a traceback fails the test."""

    def run(*argv: str | Path) -> Result:
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, out + err
        return Result(code, out, err)

    return run


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Path:
    """LIBRARIAN_* variables pointing at a fresh migrated database; returns the home folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", database_url)
    monkeypatch.setenv("LIBRARIAN_HOME", str(home))
    monkeypatch.setenv("LIBRARIAN_NAME", "cli-test")
    return home


@pytest.fixture
def encryption_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "a long test passphrase"
    monkeypatch.setenv("LIBRARIAN_ENCRYPTION_KEY", key)
    return key


@pytest.fixture
def make_store(cli: Cli, env: Path, tmp_path: Path) -> Callable[[str], Path]:
    """``store add NAME --create`` under tmp_path; returns the store area."""

    def make(name: str) -> Path:
        root = tmp_path / "stores" / name
        result = cli(
            "store",
            "add",
            name,
            "--staging-path",
            root / "staging",
            "--store-path",
            root / "store",
            "--create",
        )
        assert result.code == 0, result.err
        return root / "store"

    return make


def with_context(work: Callable[[Context], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` with a Context built from the current LIBRARIAN_* environment."""

    async def go() -> T:
        async with open_context(load_settings()) as app:
            return await work(app)

    return asyncio.run(go())
