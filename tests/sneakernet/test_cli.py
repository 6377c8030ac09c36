"""``manifest export|ingest`` through ``main(argv)``: exit codes, one-line errors, JSON."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from librarian_async.cli import main
from librarian_async.cli.manifest import ProgressLine
from librarian_async.config import Settings
from librarian_async.context import Context, open_context
from librarian_async.db import peers
from librarian_async.db.models import Librarian

from .helpers import catalogue, header, make_store, sample, shipment, write_drive, write_manifest

T = TypeVar("T")
FILES = sample(4)


def on_database(url: str, home: Path, step: Callable[[Context], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_context(Settings(name="cli", home=home, database_url=url)) as app:
            return await step(app)

    return asyncio.run(run())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> str:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", database_url)
    monkeypatch.setenv("LIBRARIAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIBRARIAN_NAME", "cli")
    return database_url


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_export_writes_the_manifest_and_summarises(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def prepare(app: Context) -> None:
        drive = await make_store(app, tmp_path, "drive", ingestable=False)
        await catalogue(app, drive, FILES)
        async with app.sessions.begin() as session:
            await peers.add_librarian(
                session, Librarian(name="far", url="u", port=1, authenticator="a")
            )

    on_database(env, tmp_path, prepare)
    output = tmp_path / "drive.json"

    code, out, err = run(
        capsys, "manifest", "export", "--store", "drive", "--destination", "far",
        "--disable-store", "-o", output, "--json",
    )  # fmt: skip

    assert code == 0, err
    summary = json.loads(out)
    assert (summary["entries"], summary["transfers_created"]) == (4, 4)
    assert summary["store_disabled"] is True
    assert len(json.loads(output.read_text())["store_files"]) == 4
    code, out, _ = run(capsys, "manifest", "export", "--store", "drive", "-o", output)
    assert code == 0 and out.startswith(f"manifest {output}: 4 files")


def test_export_of_an_unknown_store_is_one_error_line(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "manifest", "export", "--store", "nope", "-o", tmp_path / "m")

    assert (code, out, err) == (1, "", "error: no store named 'nope'\n")


@pytest.fixture
def destination(env: str, tmp_path: Path) -> Path:
    """A store to stage into; returns a drive holding FILES."""
    on_database(env, tmp_path, lambda app: make_store(app, tmp_path, "main"))
    return write_drive(tmp_path / "mnt", FILES)


def test_ingest_stages_and_exits_0(
    destination: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.json", header("cli"), shipment(FILES))

    code, out, err = run(capsys, "manifest", "ingest", manifest, "--store-root", destination)

    assert code == 0, err
    assert "staged: 4 (" in out
    assert err == "warning: librarian 'far' is not known here: it will be told about these " \
        "transfers once it is added (`librarian add`)\n"  # fmt: skip
    code, out, _ = run(
        capsys, "manifest", "ingest", manifest, "--store-root", destination, "--json"
    )
    assert code == 0 and json.loads(out)["skipped"] == {"already staged by an earlier run": 4}


def test_ingest_lists_each_failed_entry_and_exits_1(
    destination: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.json", header("cli"), shipment(FILES))
    broken = next(iter(FILES))
    destination.joinpath(*broken.split("/")).write_bytes(b"changed")

    code, out, err = run(capsys, "manifest", "ingest", manifest, "--store-root", destination)

    assert code == 1
    [failed] = [line for line in err.splitlines() if line.startswith("failed:")]
    assert failed.startswith(f"failed: {broken}: damaged on the drive: ")
    assert "staged: 3 (" in out and "failed: 1" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "not a JSON manifest"),
        ('{"format": "librarian-manifest", "version": 9, "store_files": []}', "version 9"),
        ('{"format": "librarian-manifest", "version": 1, "store_files": []}', "missing field"),
    ],
)
def test_a_bad_manifest_exits_2_with_one_line(
    destination: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(text)

    code, out, err = run(capsys, "manifest", "ingest", manifest, "--store-root", destination)

    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: manifest ") and expected in err


def test_a_manifest_for_another_librarian_exits_2(
    destination: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.json", header("elsewhere"), shipment(FILES))

    code, _, err = run(capsys, "manifest", "ingest", manifest, "--store-root", destination)

    assert code == 2 and "is for librarian 'elsewhere', this is 'cli'" in err


def test_a_missing_manifest_or_store_root_is_one_error_line(
    destination: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.json", header("cli"), [])

    missing = run(capsys, "manifest", "ingest", tmp_path / "nope.json", "--store-root", destination)
    no_root = run(capsys, "manifest", "ingest", manifest, "--store-root", tmp_path / "nope")

    assert missing[0] == 1 and missing[2].startswith("error: ") and "nope.json" in missing[2]
    assert no_root == (1, "", f"error: store root {tmp_path / 'nope'} is not a directory\n")


@pytest.mark.parametrize("action", [[], ["export"], ["ingest"]])
def test_help(capsys: pytest.CaptureFixture[str], action: list[str]) -> None:
    code, out, _ = run(capsys, "manifest", *action, "--help")

    assert code == 0 and out.startswith("usage: ")


def test_the_progress_line_rewrites_itself_and_ends_with_a_newline() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream)

    progress(0, 128)
    progress(64, 128)
    progress.end()

    assert stream.getvalue() == "\ringesting: 0/128 files\ringesting: 64/128 files\n"


def test_no_progress_means_no_newline() -> None:
    stream = io.StringIO()
    ProgressLine(stream).end()

    assert stream.getvalue() == ""
