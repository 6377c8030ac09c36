"""``store add|list|enable|disable``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .conftest import Cli


def listing(cli: Cli) -> dict[str, dict[str, object]]:
    result = cli("store", "list", "--json")
    assert result.code == 0, result.err
    return {row["name"]: row for row in json.loads(result.out)}


def test_add_creates_the_directories_and_lists_the_store(
    cli: Cli, env: Path, tmp_path: Path
) -> None:
    result = cli(
        "store", "add", "main",
        "--staging-path", tmp_path / "a" / "staging",
        "--store-path", tmp_path / "a" / "store",
        "--report-full-fraction", "0.9",
        "--create",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (tmp_path / "a" / "staging").is_dir()
    assert (tmp_path / "a" / "store").is_dir()
    row = listing(cli)["main"]
    assert row["enabled"] is True
    assert row["available"] is True
    assert row["ingestable"] is True
    assert isinstance(row["free_bytes"], int) and row["free_bytes"] > 0
    assert row["report_full_fraction"] == 0.9
    assert row["store_path"] == str((tmp_path / "a" / "store").resolve())
    table = cli("store", "list")
    assert table.code == 0
    assert "main" in table.out and "yes" in table.out


def test_disable_and_enable_show_in_the_listing(
    cli: Cli, make_store: Callable[[str], Path]
) -> None:
    make_store("main")
    make_store("other")
    result = cli("store", "disable", "main")
    assert result.code == 0, result.err
    rows = listing(cli)
    assert rows["main"]["enabled"] is False
    assert rows["other"]["enabled"] is True
    assert cli("store", "enable", "main").code == 0
    assert listing(cli)["main"]["enabled"] is True


def test_a_taken_name_is_one_line_and_creates_nothing(
    cli: Cli, make_store: Callable[[str], Path], tmp_path: Path
) -> None:
    make_store("main")
    result = cli(
        "store", "add", "main",
        "--staging-path", tmp_path / "b" / "staging",
        "--store-path", tmp_path / "b" / "store",
        "--create",
    )  # fmt: skip
    assert result.code == 1
    assert result.error_lines == ["error: store 'main' already exists"]
    assert result.err.count("\n") == 1
    assert not (tmp_path / "b").exists()
    assert list(listing(cli)) == ["main"]


def test_enabling_an_unknown_store_names_it(cli: Cli, env: Path) -> None:
    result = cli("store", "enable", "nowhere")
    assert result.code == 1
    assert result.err.strip() == "error: no store named 'nowhere'"


def test_directories_that_cannot_be_created_leave_no_store(
    cli: Cli, env: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    result = cli(
        "store", "add", "main",
        "--staging-path", blocker / "staging",
        "--store-path", tmp_path / "store",
        "--create",
    )  # fmt: skip
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert str(blocker / "staging") in result.err
    assert listing(cli) == {}


def test_missing_directories_without_create_are_accepted_with_a_warning(
    cli: Cli, env: Path, tmp_path: Path
) -> None:
    result = cli(
        "store", "add", "later",
        "--staging-path", tmp_path / "mnt" / "staging",
        "--store-path", tmp_path / "mnt" / "store",
    )  # fmt: skip
    assert result.code == 0
    assert "warning: store 'later' is unavailable" in result.err
    assert not (tmp_path / "mnt").exists()
    row = listing(cli)["later"]
    assert row["available"] is False
    assert row["free_bytes"] == 0


def test_a_fraction_outside_zero_to_one_is_a_usage_error(
    cli: Cli, env: Path, tmp_path: Path
) -> None:
    result = cli(
        "store", "add", "main",
        "--staging-path", tmp_path / "s",
        "--store-path", tmp_path / "t",
        "--report-full-fraction", "1.5",
    )  # fmt: skip
    assert result.code == 2
    assert "--report-full-fraction" in result.err
