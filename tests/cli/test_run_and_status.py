"""``run --once`` with a real check_integrity entry, and ``status`` afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cli

CONTENTS = {f"raw/obs-{i}.dat": bytes([i]) * (1000 + i) for i in range(4)}


def integrity_entry(task_name: str = "Integrity check", store: str = "main") -> dict[str, Any]:
    return {
        "task_name": task_name,
        "every": "24:00:00",
        "soft_timeout": "00:10:00",
        "age_in_days": 30,
        "store_name": store,
    }


@pytest.fixture
def area(cli: Cli, make_store: Callable[[str], Path], tmp_path: Path) -> Path:
    """Store ``main`` with a few files added through the CLI."""
    store_area = make_store("main")
    for name, content in CONTENTS.items():
        source = tmp_path / "incoming" / name.replace("/", "_")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(content)
        result = cli("file", "add", source, "--store", "main", "--name", name)
        assert result.code == 0, result.err
    return store_area


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"check_integrity": [integrity_entry()]}))
    return path


def test_a_clean_store_exits_0(cli: Cli, area: Path, config: Path) -> None:
    result = cli("run", "--once", "--config", config)
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("Integrity check: ok in ")
    assert f"checked={len(CONTENTS)}" in result.out
    assert f"ok={len(CONTENTS)}" in result.out


def test_a_damaged_file_exits_1_and_is_named(cli: Cli, area: Path, config: Path) -> None:
    damaged = area / "raw" / "obs-2.dat"
    damaged.write_bytes(b"\xff" + damaged.read_bytes()[1:])
    result = cli("run", "--once", "--config", config)
    assert result.code == 1
    assert "Integrity check: problems" in result.out
    assert "corrupt=1" in result.out
    problem_lines = [line.strip() for line in result.out.splitlines() if line.startswith("  ")]
    assert len(problem_lines) == 1
    assert problem_lines[0].startswith(f"corrupt: raw/obs-2.dat ({damaged})")


def test_a_deleted_file_exits_1_as_missing(cli: Cli, area: Path, config: Path) -> None:
    (area / "raw" / "obs-0.dat").unlink()
    result = cli("run", "--once", "--config", config)
    assert result.code == 1
    assert "missing=1" in result.out
    assert "missing: raw/obs-0.dat" in result.out
    assert "corrupt:" not in result.out


def test_the_setting_names_the_default_config(
    cli: Cli, area: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", str(config))
    result = cli("run", "--once")
    assert result.code == 0, result.out + result.err
    assert "Integrity check: ok" in result.out


def test_a_bad_config_exits_2(cli: Cli, area: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"check_integrity": [integrity_entry() | {"every": "-1h"}]}))
    result = cli("run", "--once", "--config", bad)
    assert result.code == 2
    assert len(result.error_lines) == 1 and "every" in result.error_lines[0]
    unknown_store = tmp_path / "unknown-store.json"
    unknown_store.write_text(json.dumps({"check_integrity": [integrity_entry(store="elsewhere")]}))
    result = cli("run", "--once", "--config", unknown_store)
    assert result.code == 2
    assert 'unknown store "elsewhere"' in result.err
    missing = cli("run", "--once", "--config", tmp_path / "absent.json")
    assert missing.code == 2 and len(missing.error_lines) == 1
    nothing = cli("run", "--once")
    assert nothing.code == 2
    assert "LIBRARIAN_BACKGROUND_CONFIG" in nothing.err


def test_only_runs_the_named_entries(cli: Cli, area: Path, tmp_path: Path) -> None:
    two = tmp_path / "two.json"
    entries = [integrity_entry("first"), integrity_entry("second")]
    two.write_text(json.dumps({"check_integrity": entries}))
    result = cli("run", "--once", "--config", two, "--only", "second")
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("second: ok")
    assert "first" not in result.out
    unknown = cli("run", "--once", "--config", two, "--only", "third")
    assert unknown.code == 2
    assert unknown.error_lines == ["error: --only: no task named 'third'"]


def test_status_after_a_run(cli: Cli, area: Path, config: Path) -> None:
    (area / "raw" / "obs-3.dat").write_bytes(b"changed")
    assert cli("run", "--once", "--config", config).code == 1
    result = cli("status", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["librarian"] == "cli-test"
    [last] = report["last_runs"]
    assert last["task_name"] == "Integrity check"
    assert last["task_type"] == "check_integrity"
    assert last["outcome"] == "problems"
    assert last["counts"]["corrupt"] == 1
    assert last["counts"]["checked"] == len(CONTENTS)
    [store] = report["stores"]
    assert store["name"] == "main"
    assert store["instances"] == len(CONTENTS)
    assert store["available"] is True and store["free_bytes"] > 0
    assert report["corrupt_files"] == 1
    text = cli("status")
    assert text.code == 0
    assert "Integrity check" in text.out and "problems" in text.out
    assert "corrupt files: 1" in text.out


def test_status_of_an_idle_librarian(cli: Cli, env: Path) -> None:
    result = cli("status", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["last_runs"] == [] and report["stores"] == []
    assert report["corrupt_files"] == 0
    assert "(none)" in cli("status").out


def test_status_shows_the_next_run_of_configured_entries(
    cli: Cli, area: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "two.json"
    entries = [integrity_entry("ran"), integrity_entry("idle") | {"every": "2h"}]
    path.write_text(json.dumps({"check_integrity": entries}))
    assert cli("run", "--once", "--config", path, "--only", "ran").code == 0
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", str(path))
    result = cli("status", "--json")
    assert result.code == 0, result.err
    rows = {row["task_name"]: row for row in json.loads(result.out)["last_runs"]}
    ran = rows["ran"]
    started = datetime.fromisoformat(ran["started_at"])
    assert datetime.fromisoformat(ran["next_run"]) == started + timedelta(hours=24)
    assert rows["idle"]["outcome"] == "never run"
    assert rows["idle"]["next_run"] is None
    text = cli("status")
    assert "never run" in text.out and "next_run" in text.out
