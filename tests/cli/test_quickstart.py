"""``quickstart``: a demo librarian is set up, its tasks run once, and a rerun reuses it."""

from __future__ import annotations

from pathlib import Path

from librarian_async.cli.quickstart import SAMPLES

from .conftest import Cli


def test_quickstart_sets_up_and_runs_the_tasks_once(cli: Cli, env: Path) -> None:
    first = cli("quickstart")
    assert first.code == 0, first.err
    assert f"sample files: {len(SAMPLES)} added" in first.out
    assert "Integrity check: ok" in first.out
    assert f"checked={len(SAMPLES)} ok={len(SAMPLES)}" in first.out
    assert f"cloned={len(SAMPLES)}" in first.out
    clones = [path for path in (env / "stores" / "clone" / "store").rglob("*") if path.is_file()]
    assert len(clones) == len(SAMPLES)

    again = cli("quickstart")
    assert again.code == 0, again.err
    assert f"0 added, {len(SAMPLES)} already catalogued" in again.out
    assert "cloned=0" in again.out


def test_quickstart_reports_a_damaged_sample(cli: Cli, env: Path) -> None:
    assert cli("quickstart").code == 0
    name, _ = SAMPLES[3]
    damaged = env / "stores" / "store" / "store" / name
    damaged.write_bytes(b"not the original bytes")

    result = cli("quickstart")
    assert result.code == 1
    assert f"corrupt: {name}" in result.out
