"""``config check``: every example loads; every problem is one line naming entry and key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from librarian_async.config import strip_trailing_commas

from .conftest import Cli

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))
STORES = ("store", "clone", "sneakernet-1", "sneakernet-2")


def test_the_examples_are_there() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_passes_offline(cli: Cli, example: Path) -> None:
    result = cli("config", "check", "--offline", example)
    assert result.code == 0, result.err
    assert result.error_lines == []
    assert result.out.startswith(f"{example}: ok, ")


@pytest.fixture
def named_things(cli: Cli, make_store: Callable[[str], Path], encryption_key: str) -> None:
    """The stores and the librarian that the examples name."""
    for name in STORES:
        make_store(name)
    result = cli(
        "librarian", "add", "destination",
        "--url", "http://127.0.0.1", "--port", "21109", "--authenticator", "u:p", "--no-check",
    )  # fmt: skip
    assert result.code == 0, result.err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_passes_against_the_catalogue(
    cli: Cli, named_things: None, example: Path
) -> None:
    result = cli("config", "check", example)
    assert result.code == 0, result.err
    assert result.error_lines == []
    document = json.loads(strip_trailing_commas(example.read_text()))
    entries = sum(len(value) for value in document.values())
    assert f"ok, {entries} task entries" in result.out


BAD_CONFIG = """{
    "check_integrity": [
        {"task_name": "typo", "every": "1h", "age_in_days": 1, "store_name": "store",
         "concurency": 4},
        {"task_name": "negative", "every": "-01:00:00", "age_in_days": 1, "store_name": "store"},
        {"task_name": "string", "every": "1h", "age_in_days": "7", "store_name": "store"}
    ]
}"""


def test_three_problems_are_three_lines_naming_entry_and_key(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(BAD_CONFIG)
    result = cli("config", "check", "--offline", config)
    assert result.code == 2
    assert result.out == ""
    lines = result.error_lines
    assert len(lines) == 3, result.err
    where = f"error: {config}: check_integrity: entry"
    typo, negative, string = lines
    assert typo.startswith(f'{where} 0 ("typo"): concurency: unknown key')
    assert 'did you mean "concurrency"' in typo
    assert negative.startswith(f'{where} 1 ("negative"): every: must be greater than zero')
    assert string.startswith(f'{where} 2 ("string"): age_in_days: ')
    assert '"7"' in string


def test_an_unknown_store_is_named(
    cli: Cli, make_store: Callable[[str], Path], tmp_path: Path
) -> None:
    make_store("store")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "check_integrity": [
                    {"task_name": "ic", "every": "1h", "age_in_days": 1, "store_name": "stroe"}
                ]
            }
        )
    )
    result = cli("config", "check", config)
    assert result.code == 2
    assert result.error_lines == [
        f'error: {config}: check_integrity: entry 0 ("ic"): store_name: unknown store "stroe";'
        ' did you mean "store"?'
    ]
    assert cli("config", "check", "--offline", config).code == 0


def test_an_unknown_librarian_is_named(cli: Cli, env: Path, tmp_path: Path) -> None:
    example = next(path for path in EXAMPLES if path.name == "inter-librarian-source.json")
    result = cli("config", "check", example)
    assert result.code == 2
    assert any('unknown librarian "destination"' in line for line in result.error_lines)
    assert any('unknown store "store"' in line for line in result.error_lines)


def test_invalid_json_and_a_missing_file_are_one_line(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "check_integrity": [\n    {"task_name": }\n  ]\n}')
    result = cli("config", "check", "--offline", broken)
    assert result.code == 2
    assert len(result.error_lines) == 1
    assert f"{broken}: line 3" in result.error_lines[0]
    missing = cli("config", "check", "--offline", tmp_path / "absent.json")
    assert missing.code == 2
    assert len(missing.error_lines) == 1 and "absent.json" in missing.err
    nothing = cli("config", "check", "--offline")
    assert nothing.code == 2
    assert "LIBRARIAN_BACKGROUND_CONFIG" in nothing.err


def test_the_file_named_by_the_setting_is_the_default(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = EXAMPLES[0]
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", str(example))
    result = cli("config", "check", "--offline")
    assert result.code == 0, result.err
    assert result.out.startswith(f"{example}: ok")
