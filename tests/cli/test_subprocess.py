"""The real entry points as separate processes: ``python -m librarian_async`` and alembic."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from librarian_async.db.engine import create_engine
from librarian_async.db.models import Base

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        argv, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stderr
    return completed


def librarian(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "librarian_async", *args], env, cwd)


def table_names(url: str) -> set[str]:
    async def inspect_tables() -> set[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(inspect_tables())


def test_python_dash_m_runs_a_command(database_url: str, tmp_path: Path) -> None:
    env = {"LIBRARIAN_DATABASE_URL": database_url, "LIBRARIAN_HOME": str(tmp_path / "home")}
    added = librarian(
        "store", "add", "main", "--create",
        "--staging-path", str(tmp_path / "staging"),
        "--store-path", str(tmp_path / "store"),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = librarian("store", "list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["name"] == "main" and row["available"] is True


def test_errors_in_a_real_process_are_one_line(tmp_path: Path) -> None:
    env = {"LIBRARIAN_HOME": str(tmp_path / "home"), "LIBRARIAN_PORT": "abc"}
    bad_setting = librarian("status", env=env, cwd=tmp_path)
    assert bad_setting.returncode == 2
    assert bad_setting.stderr.startswith("error: LIBRARIAN_PORT: ")
    assert len(bad_setting.stderr.splitlines()) == 1
    del env["LIBRARIAN_PORT"]
    no_schema = librarian("status", env=env, cwd=tmp_path)
    assert no_schema.returncode == 1
    assert "has no schema; run `librarian-async db upgrade`" in no_schema.stderr
    assert len(no_schema.stderr.splitlines()) == 1


def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "librarian-async"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}")
    completed = run([str(script), "--help"], {}, tmp_path)
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: librarian-async")


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        [sys.executable, "-m", "librarian_async", "db", "upgrade"],
    ],
    ids=["alembic", "db-upgrade"],
)
def test_migrating_a_fresh_database(
    empty_database_url: str, tmp_path: Path, command: list[str]
) -> None:
    assert table_names(empty_database_url) == set()
    env = {"LIBRARIAN_DATABASE_URL": empty_database_url, "LIBRARIAN_HOME": str(tmp_path)}
    completed = run(command, env, REPO_ROOT)
    assert completed.returncode == 0, completed.stderr
    tables = table_names(empty_database_url)
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    again = run(command, env, REPO_ROOT)
    assert again.returncode == 0, again.stderr
