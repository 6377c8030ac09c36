"""``file add|list|show``: files go through staging into the store, then the catalogue."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from librarian_async.context import Context

from .conftest import Cli, with_context

StoreMaker = Callable[[str], Path]


def md5(content: bytes) -> str:
    return f"md5:::{hashlib.md5(content).hexdigest()}"


def source_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def show(cli: Cli, name: str) -> dict[str, Any]:
    result = cli("file", "show", name, "--json")
    assert result.code == 0, result.err
    shown: dict[str, Any] = json.loads(result.out)
    return shown


def names(cli: Cli, *options: str) -> list[str]:
    result = cli("file", "list", "--json", *options)
    assert result.code == 0, result.err
    return [row["name"] for row in json.loads(result.out)]


def everything_under(path: Path) -> list[str]:
    return sorted(str(item.relative_to(path)) for item in path.rglob("*"))


@pytest.fixture
def area(make_store: StoreMaker) -> Path:
    """The store area of store ``main``."""
    return make_store("main")


@pytest.fixture
def staging(area: Path) -> Path:
    return area.parent / "staging"


def test_add_copies_and_catalogues_with_size_and_md5(
    cli: Cli, area: Path, staging: Path, tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    source = source_file(tmp_path, "obs-1.uvh5", content)
    result = cli("file", "add", source, "--store", "main")
    assert result.code == 0, result.err
    assert "added obs-1.uvh5" in result.err
    assert (area / "obs-1.uvh5").read_bytes() == content
    assert source.read_bytes() == content  # copied, not moved
    shown = show(cli, "obs-1.uvh5")
    assert shown["size"] == len(content)
    assert shown["checksum"] == md5(content)
    assert shown["source"] == "cli-test"
    assert shown["instances"] == [
        {
            "store": "main",
            "path": str(area / "obs-1.uvh5"),
            "available": True,
            "deletion_policy": "DISALLOWED",
            "created_time": shown["create_time"],
        }
    ]
    assert everything_under(staging) == []


def test_several_files_and_a_plain_show(
    cli: Cli, area: Path, staging: Path, tmp_path: Path
) -> None:
    sources = [source_file(tmp_path, f"f{i}.dat", bytes([i]) * (i + 1)) for i in range(3)]
    result = cli("file", "add", *sources, "--store", "main", "--checksum-algorithm", "sha256")
    assert result.code == 0, result.err
    assert [line.split()[0] for line in result.err.splitlines()] == ["[1/3]", "[2/3]", "[3/3]"]
    assert names(cli) == ["f0.dat", "f1.dat", "f2.dat"]
    assert show(cli, "f2.dat")["checksum"] == "sha256:::" + hashlib.sha256(b"\2" * 3).hexdigest()
    plain = cli("file", "show", "f1.dat")
    assert plain.code == 0 and str(area / "f1.dat") in plain.out
    assert everything_under(staging) == []


def test_a_taken_name_changes_nothing(cli: Cli, area: Path, staging: Path, tmp_path: Path) -> None:
    first = source_file(tmp_path, "x.bin", b"first version")
    assert cli("file", "add", first, "--store", "main").code == 0
    before = show(cli, "x.bin")
    stat_before = (area / "x.bin").stat()
    second = source_file(tmp_path / "other", "x.bin", b"second, different version")
    result = cli("file", "add", second, "--store", "main")
    assert result.code == 1
    assert result.error_lines == [f"error: {second}: file 'x.bin' is already catalogued"]
    assert (area / "x.bin").read_bytes() == b"first version"
    assert (area / "x.bin").stat().st_mtime_ns == stat_before.st_mtime_ns
    assert show(cli, "x.bin") == before
    assert everything_under(area) == ["x.bin"]
    assert everything_under(staging) == []


def test_a_name_with_directories_lands_in_subdirectories(
    cli: Cli, area: Path, tmp_path: Path
) -> None:
    source = source_file(tmp_path, "local.bin", b"nested")
    result = cli("file", "add", source, "--store", "main", "--name", "sub/dir/x.bin")
    assert result.code == 0, result.err
    assert (area / "sub" / "dir" / "x.bin").read_bytes() == b"nested"
    assert show(cli, "sub/dir/x.bin")["instances"][0]["path"] == str(area / "sub/dir/x.bin")
    assert names(cli) == ["sub/dir/x.bin"]


@pytest.mark.parametrize("bad_name", ["../escape", "sub/../../escape", "/tmp/escape"])
def test_a_name_leaving_the_store_is_refused(
    cli: Cli, area: Path, staging: Path, tmp_path: Path, bad_name: str
) -> None:
    source = source_file(tmp_path, "local.bin", b"escapee")
    result = cli("file", "add", source, "--store", "main", "--name", bad_name)
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert repr(bad_name) in result.error_lines[0]
    assert "'..'" in result.error_lines[0] or "absolute" in result.error_lines[0]
    assert not (area.parent / "escape").exists()
    assert not (area.parent.parent / "escape").exists()
    assert everything_under(area) == [] and everything_under(staging) == []
    assert names(cli) == []


def test_a_disabled_or_not_ingestable_store_takes_nothing(
    cli: Cli, area: Path, tmp_path: Path
) -> None:
    source = source_file(tmp_path, "local.bin", b"data")
    assert cli("store", "disable", "main").code == 0
    disabled = cli("file", "add", source, "--store", "main")
    assert disabled.code == 1
    assert disabled.error_lines == ["error: store 'main' is disabled"]
    result = cli(
        "store", "add", "archive", "--no-ingestable", "--create",
        "--staging-path", tmp_path / "archive" / "staging",
        "--store-path", tmp_path / "archive" / "store",
    )  # fmt: skip
    assert result.code == 0, result.err
    closed = cli("file", "add", source, "--store", "archive")
    assert closed.code == 1
    assert "not ingestable" in closed.err
    unknown = cli("file", "add", source, "--store", "nowhere")
    assert unknown.error_lines == ["error: no store named 'nowhere'"]
    assert everything_under(area) == [] and names(cli) == []


def test_one_bad_path_does_not_stop_the_others(cli: Cli, area: Path, tmp_path: Path) -> None:
    good = source_file(tmp_path, "good.bin", b"good")
    missing = tmp_path / "missing.bin"
    result = cli("file", "add", missing, good, "--store", "main")
    assert result.code == 1
    assert result.error_lines == [f"error: {missing}: not a regular file"]
    assert names(cli) == ["good.bin"]
    several = cli("file", "add", good, good, "--store", "main", "--name", "x")
    assert several.code == 1
    assert several.error_lines == ["error: --name needs exactly one PATH"]


def test_an_identical_uncatalogued_leftover_is_adopted(
    cli: Cli, area: Path, staging: Path, tmp_path: Path
) -> None:
    (area / "left.bin").write_bytes(b"same bytes")
    (area / "other.bin").write_bytes(b"someone else's bytes")
    same = source_file(tmp_path, "left.bin", b"same bytes")
    assert cli("file", "add", same, "--store", "main").code == 0
    assert show(cli, "left.bin")["checksum"] == md5(b"same bytes")
    different = source_file(tmp_path, "other.bin", b"new bytes")
    result = cli("file", "add", different, "--store", "main")
    assert result.code == 1
    assert "exists with different content" in result.err
    assert (area / "other.bin").read_bytes() == b"someone else's bytes"
    assert names(cli) == ["left.bin"]
    assert everything_under(staging) == []


def refuse_file_named(name: str) -> None:
    """Make the database itself reject one file name (a CHECK or a trigger, no patching)."""

    async def install(app: Context) -> None:
        async with app.engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                statement = (
                    "CREATE TRIGGER refuse BEFORE INSERT ON files "
                    f"WHEN NEW.name = '{name}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            else:
                statement = f"ALTER TABLE files ADD CONSTRAINT refuse CHECK (name <> '{name}')"
            await connection.execute(text(statement))

    with_context(install)


def test_a_failed_catalogue_insert_leaves_no_file(
    cli: Cli, area: Path, staging: Path, tmp_path: Path
) -> None:
    refuse_file_named("refused.bin")
    source = source_file(tmp_path, "refused.bin", b"will not be catalogued")
    result = cli("file", "add", source, "--store", "main")
    assert result.code == 1
    assert len(result.error_lines) == 1, result.err
    assert everything_under(area) == []
    assert everything_under(staging) == []
    assert names(cli) == []


def test_list_pages_with_limit_and_after(cli: Cli, area: Path, tmp_path: Path) -> None:
    sources = [source_file(tmp_path, f"n{i:02}.bin", b"x" * i) for i in range(7)]
    assert cli("file", "add", *sources, "--store", "main").code == 0
    first = names(cli, "--limit", "3")
    assert first == ["n00.bin", "n01.bin", "n02.bin"]
    second = names(cli, "--limit", "3", "--after", first[-1])
    assert second == ["n03.bin", "n04.bin", "n05.bin"]
    assert names(cli, "--limit", "3", "--after", second[-1]) == ["n06.bin"]
    assert names(cli, "--after", "n06.bin") == []
    rows = json.loads(cli("file", "list", "--json", "--limit", "1").out)
    assert rows[0]["size"] == 0 and rows[0]["checksum"] == md5(b"")
    assert names(cli, "--store", "main", "--limit", "2") == ["n00.bin", "n01.bin"]
    assert cli("file", "list", "--limit", "0").code == 2
    table = cli("file", "list", "--limit", "2")
    assert table.code == 0 and "n01.bin" in table.out and "n02.bin" not in table.out


def test_show_of_an_unknown_file_is_one_line(cli: Cli, area: Path) -> None:
    result = cli("file", "show", "nothing.bin")
    assert result.code == 1
    assert result.err == "error: no file named 'nothing.bin'\n"


def test_a_store_without_room_takes_nothing(cli: Cli, env: Path, tmp_path: Path) -> None:
    result = cli(
        "store", "add", "tiny", "--create", "--report-full-fraction", "0.000001",
        "--staging-path", tmp_path / "tiny" / "staging",
        "--store-path", tmp_path / "tiny" / "store",
    )  # fmt: skip
    assert result.code == 0, result.err
    source = source_file(tmp_path, "big.bin", b"x" * 4096)
    refused = cli("file", "add", source, "--store", "tiny")
    assert refused.code == 1
    assert len(refused.error_lines) == 1 and "bytes needed" in refused.error_lines[0]
    assert everything_under(tmp_path / "tiny") == ["staging", "store"]
    assert names(cli) == []
