"""The manifest format: atomic incremental writing, streaming reading, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from librarian_async.sneakernet.manifest import (
    ManifestError,
    ManifestWriter,
    check_manifest,
    read_entries,
)

from .helpers import EXPORTED_ROOT, entry, header, sample, write_manifest

FILES = sample(5)


def entries() -> list[Any]:
    return [entry(name, content, 10 + i) for i, (name, content) in enumerate(FILES.items())]


@pytest.mark.parametrize("chunk_chars", [1, 7, 64 * 1024])
def test_what_is_written_reads_back_at_any_chunk_size(tmp_path: Path, chunk_chars: int) -> None:
    path = write_manifest(tmp_path / "m.json", header("dest"), entries())

    info = check_manifest(path, chunk_chars)

    assert info.header == header("dest")
    assert (info.entries, info.total_bytes) == (5, sum(map(len, FILES.values())))
    assert list(read_entries(path, chunk_chars)) == entries()


def test_the_text_is_self_describing_json_with_protocol_field_names(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", header(None), entries()[:1])

    document = json.loads(path.read_text())

    assert list(document)[:2] == ["format", "version"]
    assert (document["format"], document["version"]) == ("librarian-manifest", 1)
    assert document["store_path"] == EXPORTED_ROOT and document["destination"] is None
    [item] = document["store_files"]
    assert set(item) == {
        "name", "create_time", "size", "checksum", "uploader", "source", "instance_path",
        "deletion_policy", "instance_create_time", "instance_available", "outgoing_transfer_id",
    }  # fmt: skip
    assert item["deletion_policy"] == 0 and item["outgoing_transfer_id"] == 10


def test_any_layout_and_key_order_is_read(tmp_path: Path) -> None:
    document = json.loads(write_manifest(tmp_path / "m.json", header("d"), entries()).read_text())
    reordered = {"store_files": document.pop("store_files"), "extra": [1, {"a": 2}], **document}
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(reordered, indent=4))

    assert check_manifest(path, 3).header == header("d")
    assert list(read_entries(path, 3)) == entries()


def test_an_empty_store_has_an_empty_list(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", header("d"), [])

    assert check_manifest(path).entries == 0
    assert list(read_entries(path)) == []


def test_nothing_appears_before_commit_and_discard_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text("old")
    writer = ManifestWriter(target, header("d"))
    writer.add(entries())
    assert target.read_text() == "old"

    writer.discard()

    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_commit_replaces_an_older_manifest_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text("old")

    write_manifest(target, header("d"), entries())

    assert check_manifest(target).entries == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def document_with(**changes: Any) -> dict[str, Any]:
    return {**header("d").model_dump(mode="json"), "store_files": [], **changes}


BAD_DOCUMENTS = {
    "not json": ("hello", "not a JSON manifest"),
    "empty": ("", "expected '{' at character 0, found the end of the file"),
    "a list": ("[1, 2]", "expected '{'"),
    "truncated": (json.dumps(document_with())[:-3], "not a JSON manifest"),
    "trailing": (json.dumps(document_with()) + " {}", "unexpected data after the object"),
    "format": (json.dumps(document_with(format="other")), "format is 'other'"),
    "no format": (json.dumps({"store_files": []}), "format is None"),
    "version": (json.dumps(document_with(version=2)), "version 2 is not supported"),
    "header field": (
        json.dumps({k: v for k, v in document_with().items() if k != "store_path"}),
        "missing field 'store_path'",
    ),
    "no entries": (
        json.dumps({k: v for k, v in document_with().items() if k != "store_files"}),
        "missing field 'store_files'",
    ),
    "entry field": (
        json.dumps(document_with(store_files=[{"name": "x"}])),
        "store_files[0]: missing field 'create_time'",
    ),
    "entry type": (
        json.dumps(
            document_with(store_files=[entry("a", b"1", 1).model_dump(mode="json") | {"size": -1}])
        ),
        "store_files[0]: size: Input should be greater than or equal to 0",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_a_bad_manifest_is_one_clear_line(tmp_path: Path, case: str) -> None:
    text, expected = BAD_DOCUMENTS[case]
    path = tmp_path / "bad.json"
    path.write_text(text)

    with pytest.raises(ManifestError) as raised:
        check_manifest(path, 16)

    message = str(raised.value)
    assert message.startswith(f"manifest {path}") and expected in message, message
    assert "\n" not in message


def test_a_binary_file_is_not_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe\x00garbage")

    with pytest.raises(ManifestError, match="not UTF-8 text"):
        check_manifest(path)
