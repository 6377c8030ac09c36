"""LocalStore: path confinement, free space, staging directories and crash-safe commits."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from librarian_async.errors import (
    ChecksumError,
    ConfigError,
    ConflictError,
    PathEscapeError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
)
from librarian_async.storage.checksum import FileDigest, Interrupted, hash_file
from librarian_async.storage.store import LocalStore, VfsStats, temporary_sibling


def files_below(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def md5_digest(data: bytes) -> FileDigest:
    return FileDigest(f"md5:::{hashlib.md5(data).hexdigest()}", len(data))


def staged_file(store: LocalStore, data: bytes, name: str = "file.bin") -> Path:
    path = store.make_staging_dir("transfer") / name
    path.write_bytes(data)
    return path


# --- confinement -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("/etc/passwd", "is absolute"),
        ("../outside/secret.txt", "'..'"),
        ("a/../../outside", "'..'"),
        ("a/..", "'..'"),
        ("..", "'..'"),
        ("a\0b", "NUL"),
        ("a\\..\\b", "backslash"),
        ("./a", "'.' component"),
        (".", "'.' component"),
        ("a//b", "empty or '.' component"),
        ("a/", "empty or '.' component"),
    ],
)
def test_resolve_in_store_refuses_bad_names(store: LocalStore, name: str, problem: str) -> None:
    with pytest.raises(PathEscapeError, match=problem) as raised:
        store.resolve_in_store(name)
    assert "store 'pot'" in str(raised.value)
    assert repr(name) in str(raised.value)


def test_resolve_in_staging_refuses_bad_names(store: LocalStore) -> None:
    with pytest.raises(PathEscapeError, match=r"staging path '\.\./x'"):
        store.resolve_in_staging("../x")


@pytest.mark.parametrize("name", ["a", "zen.2459000.uvh5", "a/b/c.txt", ".hidden", "a..b"])
def test_resolve_in_store_accepts_plain_names(store: LocalStore, name: str) -> None:
    assert store.resolve_in_store(name) == store.store_path / name


def test_symlink_to_an_outside_file_is_refused(store: LocalStore, outside: Path) -> None:
    (store.store_path / "link").symlink_to(outside / "secret.txt")
    with pytest.raises(PathEscapeError, match="'link' leads outside"):
        store.resolve_in_store("link")


def test_symlinked_parent_directory_is_refused(store: LocalStore, outside: Path) -> None:
    (store.store_path / "sub").symlink_to(outside)
    with pytest.raises(PathEscapeError, match="symlink"):
        store.resolve_in_store("sub/new-file")
    with pytest.raises(PathEscapeError):
        store.resolve_in_store("sub/secret.txt")


def test_dangling_symlink_out_is_refused(store: LocalStore, outside: Path) -> None:
    (store.staging_path / "dangling").symlink_to(outside / "not-yet")
    with pytest.raises(PathEscapeError):
        store.resolve_in_staging("dangling")


def test_symlink_to_the_area_itself_is_refused(store: LocalStore) -> None:
    (store.store_path / "self").symlink_to(store.store_path)
    with pytest.raises(PathEscapeError):
        store.resolve_in_store("self")


def test_symlink_staying_inside_is_allowed(store: LocalStore) -> None:
    (store.store_path / "real").mkdir()
    (store.store_path / "alias").symlink_to(store.store_path / "real")
    assert store.resolve_in_store("alias/x") == store.store_path / "alias" / "x"


def test_area_reached_through_a_symlink_still_works(tmp_path: Path, store: LocalStore) -> None:
    (tmp_path / "mount").symlink_to(store.store_path)
    linked = LocalStore("pot", store.staging_path, tmp_path / "mount")
    assert linked.resolve_in_store("a/b") == tmp_path / "mount" / "a" / "b"


def recorded_lstats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the store passes to ``os.lstat`` (which still runs)."""
    seen: list[str] = []
    real = os.lstat

    def lstat(path: str) -> os.stat_result:
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "lstat", lstat)
    return seen


def test_files_side_by_side_share_the_checks_of_their_folders(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (store.staging_path / "batch" / "sub").mkdir(parents=True)
    names = [f"batch/sub/f{n}" for n in range(5)]
    seen = recorded_lstats(monkeypatch)
    plain_dirs: set[str] = set()

    paths = [store.resolve_in_staging(name, plain_dirs) for name in names]

    assert paths == [store.staging_path / name for name in names]
    assert seen.count(str(store.staging_path / "batch" / "sub")) == 1
    assert len(seen) == 2 + 5  # each folder once, then each file


def test_a_shared_check_still_refuses_a_linked_folder(store: LocalStore, outside: Path) -> None:
    (store.staging_path / "batch" / "real").mkdir(parents=True)
    (store.staging_path / "batch" / "link").symlink_to(outside)
    plain_dirs: set[str] = set()
    store.resolve_in_staging("batch/real/f", plain_dirs)
    with pytest.raises(PathEscapeError, match="symlink"):
        store.resolve_in_staging("batch/link/f", plain_dirs)
    assert str(store.staging_path / "batch" / "link") not in plain_dirs


def test_missing_area_is_unavailable(store: LocalStore) -> None:
    store.store_path.rmdir()
    with pytest.raises(StoreUnavailableError, match="'pot'"):
        store.resolve_in_store("a")


# --- availability and free space ---------------------------------------------------------------


def test_available_needs_both_directories(store: LocalStore) -> None:
    assert store.available
    store.staging_path.rmdir()
    store.staging_path.write_text("not a directory")
    assert not store.available
    with pytest.raises(StoreUnavailableError):
        store.ensure_available()


@dataclass
class FakeStats:
    f_bavail: int
    f_blocks: int
    f_frsize: int = 1000


def store_on_fake_disks(
    store: LocalStore, staging: FakeStats, area: FakeStats, fraction: float
) -> LocalStore:
    disks = {store.staging_path: staging, store.store_path: area}

    def statvfs(path: Path) -> VfsStats:
        return disks[path]

    return LocalStore("pot", store.staging_path, store.store_path, fraction, statvfs)


def test_free_space_is_the_smaller_area_minus_the_reserve(store: LocalStore) -> None:
    staging = FakeStats(f_bavail=500, f_blocks=1000)  # 500 kB free of 1 MB
    area = FakeStats(f_bavail=300, f_blocks=2000)  # 300 kB free of 2 MB
    full_at_90 = store_on_fake_disks(store, staging, area, 0.9)
    # staging: 500000 - 100000 = 400000; store: 300000 - 200000 = 100000
    assert full_at_90.free_space() == 100_000
    assert store_on_fake_disks(store, staging, area, 1.0).free_space() == 300_000


def test_free_space_is_never_negative(store: LocalStore) -> None:
    nearly_full = store_on_fake_disks(store, FakeStats(10, 1000), FakeStats(900, 1000), 0.5)
    assert nearly_full.free_space() == 0
    assert nearly_full.has_room(0)
    assert not nearly_full.has_room(1)


def test_has_room_compares_with_free_space(store: LocalStore) -> None:
    fake = store_on_fake_disks(store, FakeStats(500, 1000), FakeStats(500, 1000), 1.0)
    assert fake.has_room(500_000)
    assert not fake.has_room(500_001)
    with pytest.raises(StoreFullError, match="500001 bytes needed, 500000 free"):
        fake.ensure_room(500_001)


def test_real_statvfs_reports_something(store: LocalStore) -> None:
    assert store.free_space() > 0


def test_report_full_fraction_is_validated(store: LocalStore) -> None:
    with pytest.raises(ConfigError, match="report_full_fraction"):
        LocalStore("pot", store.staging_path, store.store_path, 1.5)


# --- staging directories -------------------------------------------------------------------------


def test_make_staging_dir_is_fresh_and_inside(store: LocalStore) -> None:
    first = store.make_staging_dir("batch/7 ../x")
    second = store.make_staging_dir("batch/7 ../x")
    assert first != second
    assert first.parent == second.parent == store.staging_path
    assert first.name.startswith("batch_7_.._x-")
    assert first.is_dir() and not any(first.iterdir())


def test_remove_staging_dir_is_idempotent(store: LocalStore) -> None:
    directory = store.make_staging_dir("t")
    (directory / "sub").mkdir()
    (directory / "sub" / "f").write_bytes(b"x")
    store.remove_staging_dir(directory)
    assert not directory.exists()
    store.remove_staging_dir(directory)


@pytest.mark.parametrize(
    ("inner", "staged", "others", "left"),
    [
        ("a/b/f", False, [], []),  # committed: its emptied parents and the directory go
        ("a/b/f", True, [], []),  # still staged (a failed transfer): removed first
        ("a/b/f", True, ["a/other"], ["a", "a/other"]),  # another transfer's file stays
        ("f", True, ["g"], ["g"]),
        ("gone/f", False, ["h"], ["h"]),  # parents that are not there
    ],
)
def test_remove_staging_dir_with_an_upload_name_removes_only_that_transfers_file(
    store: LocalStore, inner: str, staged: bool, others: list[str], left: list[str]
) -> None:
    directory = store.make_staging_dir("batch")
    if staged:
        (directory / inner).parent.mkdir(parents=True, exist_ok=True)
        (directory / inner).write_bytes(b"staged")
    for name in others:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(b"another transfer")
    store.remove_staging_dir(directory, inner)
    remaining = sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*"))
    assert remaining == left
    assert directory.exists() == bool(left)
    assert store.staging_path.is_dir()


@pytest.mark.parametrize("gone", ["directory", "staging area"])
def test_remove_staging_dir_of_a_shared_directory_removed_meanwhile_is_no_error(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, gone: str
) -> None:
    """Transfers of one batch share a staging directory and are unstaged by different
    calls (receive_clone's threads, the API): the call that finds the directory gone
    after checking it (the others removed their files and the emptied directory) has
    nothing left to do, and must not report the store as missing - unless the whole
    staging area went (unmounted) meanwhile."""
    directory = store.make_staging_dir("batch")
    real_lstat = os.lstat

    def lstat_after_another_remover(path: str | os.PathLike[str]) -> os.stat_result:
        if os.fspath(path) == os.fspath(directory / "a") and directory.exists():
            if gone == "directory":
                os.rmdir(directory)  # the other call removes the emptied directory just now
            else:
                store.staging_path.rename(store.staging_path.with_name("unmounted"))
        return real_lstat(path)

    monkeypatch.setattr(os, "lstat", lstat_after_another_remover)
    if gone == "directory":
        store.remove_staging_dir(directory, "a/f")
        assert store.staging_path.is_dir()
    else:
        with pytest.raises(StoreUnavailableError):
            store.remove_staging_dir(directory, "a/f")
    assert not directory.exists()


def test_remove_staging_dir_refuses_an_upload_name_that_leaves_it(
    store: LocalStore, outside: Path
) -> None:
    directory = store.make_staging_dir("batch")
    (directory / "kept").write_bytes(b"x")
    with pytest.raises(PathEscapeError):
        store.remove_staging_dir(directory, "../../outside/secret.txt")
    assert (outside / "secret.txt").exists()
    assert (directory / "kept").exists()


def test_remove_staging_dir_does_not_follow_a_linked_parent_out_of_staging(
    store: LocalStore, outside: Path
) -> None:
    directory = store.make_staging_dir("batch")
    (directory / "a").symlink_to(outside)
    with pytest.raises(PathEscapeError):
        store.remove_staging_dir(directory, "a/secret.txt")
    assert (outside / "secret.txt").exists()


@pytest.mark.parametrize("pick", ["outside", "staging", "dotdot", "relative", "store"])
def test_remove_staging_dir_refuses_outside_paths(
    store: LocalStore, outside: Path, pick: str
) -> None:
    paths = {
        "outside": outside,
        "staging": store.staging_path,
        "dotdot": store.staging_path / ".." / "outside",
        "relative": Path("staging"),
        "store": store.store_path,
    }
    with pytest.raises(PathEscapeError, match="refusing to remove"):
        store.remove_staging_dir(paths[pick])
    assert outside.is_dir() and store.staging_path.is_dir() and store.store_path.is_dir()


def test_remove_staging_dir_unlinks_a_symlink_only(store: LocalStore, outside: Path) -> None:
    link = store.staging_path / "link"
    link.symlink_to(outside)
    store.remove_staging_dir(link)
    assert not os.path.lexists(link)
    assert (outside / "secret.txt").read_text() == "secret"


# --- commit -------------------------------------------------------------------------------------


async def test_commit_moves_a_file_into_place(store: LocalStore) -> None:
    staged = staged_file(store, b"payload")
    path = await store.commit(staged, "2459000/zen.uvh5", md5_digest(b"payload"))
    assert path == store.store_path / "2459000" / "zen.uvh5"
    assert path.read_bytes() == b"payload"
    assert not staged.exists()


async def test_commit_moves_a_directory(store: LocalStore) -> None:
    staged = store.make_staging_dir("t") / "data.ms"
    (staged / "table").mkdir(parents=True)
    (staged / "table" / "f0").write_bytes(b"rows")
    expected = await hash_file(staged)
    path = await store.commit(staged, "data.ms", expected)
    assert (path / "table" / "f0").read_bytes() == b"rows"
    assert await hash_file(path) == expected


async def test_commit_adopts_an_identical_leftover(store: LocalStore) -> None:
    store.resolve_in_store("f").write_bytes(b"same")
    staged = staged_file(store, b"same")
    path = await store.commit(staged, "f", md5_digest(b"same"))
    assert path.read_bytes() == b"same"
    assert not staged.exists()


async def test_commit_adopts_without_expected_digest(store: LocalStore) -> None:
    store.resolve_in_store("f").write_bytes(b"same")
    staged = staged_file(store, b"same")
    assert await store.commit(staged, "f", None) == store.store_path / "f"
    assert not staged.exists()


async def test_commit_refuses_a_different_existing_file(store: LocalStore) -> None:
    store.resolve_in_store("f").write_bytes(b"old!")
    staged = staged_file(store, b"new!")
    with pytest.raises(ConflictError, match="exists with different content"):
        await store.commit(staged, "f", md5_digest(b"new!"))
    assert store.resolve_in_store("f").read_bytes() == b"old!"
    assert staged.read_bytes() == b"new!"


async def test_commit_refuses_a_staged_symlink(store: LocalStore, outside: Path) -> None:
    link = store.make_staging_dir("t") / "link"
    link.symlink_to(outside / "secret.txt")
    with pytest.raises(StoreError, match="symlink"):
        await store.commit(link, "f", None)
    assert files_below(store.store_path) == []


async def test_commit_refuses_a_file_in_the_way(store: LocalStore) -> None:
    store.resolve_in_store("a").write_bytes(b"file, not directory")
    with pytest.raises(ConflictError, match="in the way"):
        await store.commit(staged_file(store, b"x"), "a/b", None)


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem (tmpfs), so renames into the store fail with EXDEV."""
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different filesystem")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        yield Path(directory)


async def test_commit_across_filesystems(store: LocalStore, other_filesystem: Path) -> None:
    remote = LocalStore("pot", other_filesystem, store.store_path)
    staged = staged_file(remote, b"far away")
    path = await remote.commit(staged, "f", md5_digest(b"far away"))
    assert path.read_bytes() == b"far away"
    assert not staged.exists()
    assert remote.leftover_temporaries() == []


async def test_commit_across_filesystems_checks_the_copy(
    store: LocalStore, other_filesystem: Path
) -> None:
    remote = LocalStore("pot", other_filesystem, store.store_path)
    staged = staged_file(remote, b"bytes")
    with pytest.raises(ChecksumError, match="expected"):
        await remote.commit(staged, "f", md5_digest(b"other"))
    assert files_below(store.store_path) == []
    assert staged.exists()


# --- commit_sync (in the calling thread; the caller may sync the directory itself) -------------


@pytest.mark.parametrize("sync_directory", [False, True])
def test_commit_sync_moves_a_file_into_place(store: LocalStore, sync_directory: bool) -> None:
    staged = staged_file(store, b"payload")
    path = store.commit_sync(
        staged, "2459000/zen.uvh5", md5_digest(b"payload"), sync_directory=sync_directory
    )
    assert path == store.store_path / "2459000" / "zen.uvh5"
    assert path.read_bytes() == b"payload"
    assert not staged.exists()
    assert store.leftover_temporaries() == []


async def test_commit_sync_moves_a_directory(store: LocalStore) -> None:
    staged = store.make_staging_dir("t") / "data.ms"
    (staged / "table").mkdir(parents=True)
    (staged / "table" / "f0").write_bytes(b"rows")
    expected = await hash_file(staged)
    path = store.commit_sync(staged, "data.ms", expected)
    assert (path / "table" / "f0").read_bytes() == b"rows"
    assert await hash_file(path) == expected
    assert not staged.exists()


@pytest.mark.parametrize("expected", [md5_digest(b"same"), None], ids=["expected", "hashed"])
def test_commit_sync_adopts_an_identical_leftover(
    store: LocalStore, expected: FileDigest | None
) -> None:
    store.resolve_in_store("f").write_bytes(b"same")
    staged = staged_file(store, b"same")
    assert store.commit_sync(staged, "f", expected) == store.store_path / "f"
    assert store.resolve_in_store("f").read_bytes() == b"same"
    assert not staged.exists()


def test_commit_sync_refuses_a_different_existing_file(store: LocalStore) -> None:
    store.resolve_in_store("f").write_bytes(b"old!")
    staged = staged_file(store, b"new!")
    with pytest.raises(ConflictError, match="exists with different content"):
        store.commit_sync(staged, "f", md5_digest(b"new!"))
    assert store.resolve_in_store("f").read_bytes() == b"old!"
    assert staged.read_bytes() == b"new!"


def test_commit_sync_refuses_a_staged_symlink(store: LocalStore, outside: Path) -> None:
    link = store.make_staging_dir("t") / "link"
    link.symlink_to(outside / "secret.txt")
    with pytest.raises(StoreError, match="symlink"):
        store.commit_sync(link, "f", None)
    assert files_below(store.store_path) == []


def test_commit_sync_refuses_a_file_in_the_way_or_an_escaping_name(store: LocalStore) -> None:
    store.resolve_in_store("a").write_bytes(b"file, not directory")
    staged = staged_file(store, b"x")
    with pytest.raises(ConflictError, match="in the way"):
        store.commit_sync(staged, "a/b", None)
    with pytest.raises(PathEscapeError):
        store.commit_sync(staged, "../outside/x", None)
    assert staged.read_bytes() == b"x"


def test_commit_sync_of_a_vanished_staged_file_raises_file_not_found(store: LocalStore) -> None:
    staged = staged_file(store, b"gone")
    staged.unlink()
    with pytest.raises(FileNotFoundError):
        store.commit_sync(staged, "f", md5_digest(b"gone"))
    assert files_below(store.store_path) == []


def test_commit_sync_across_filesystems(store: LocalStore, other_filesystem: Path) -> None:
    remote = LocalStore("pot", other_filesystem, store.store_path)
    staged = staged_file(remote, b"far away")
    path = remote.commit_sync(staged, "d/f", md5_digest(b"far away"))
    assert path.read_bytes() == b"far away"
    assert not staged.exists()
    assert remote.leftover_temporaries() == []


def test_commit_sync_across_filesystems_checks_the_copy(
    store: LocalStore, other_filesystem: Path
) -> None:
    remote = LocalStore("pot", other_filesystem, store.store_path)
    staged = staged_file(remote, b"bytes")
    with pytest.raises(ChecksumError, match="expected"):
        remote.commit_sync(staged, "f", md5_digest(b"other"))
    assert files_below(store.store_path) == []
    assert staged.exists()


def test_commit_sync_across_filesystems_stops_when_asked(
    store: LocalStore, other_filesystem: Path
) -> None:
    remote = LocalStore("pot", other_filesystem, store.store_path)
    staged = staged_file(remote, b"bytes")
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        remote.commit_sync(staged, "f", md5_digest(b"bytes"), stop)
    assert files_below(store.store_path) == []
    assert staged.read_bytes() == b"bytes"


# --- copy_in ------------------------------------------------------------------------------------


async def test_copy_in_copies_and_reports_the_digest(store: LocalStore, outside: Path) -> None:
    path, digest = await store.copy_in(outside / "secret.txt", "dir/s.txt")
    assert path.read_text() == "secret"
    assert digest == md5_digest(b"secret")
    assert files_below(store.store_path) == ["dir", "dir/s.txt"]


async def test_copy_in_verifies_the_expected_checksum(store: LocalStore, outside: Path) -> None:
    good = md5_digest(b"secret").checksum.removeprefix("md5:::")  # legacy bare md5
    _, digest = await store.copy_in(outside / "secret.txt", "s", expected_checksum=good)
    assert digest.checksum == f"md5:::{good}"


async def test_copy_in_hashes_with_the_expected_algorithm(store: LocalStore, outside: Path) -> None:
    expected = (await hash_file(outside / "secret.txt", "xxh3")).checksum
    _, digest = await store.copy_in(outside / "secret.txt", "s", expected_checksum=expected)
    assert digest.checksum == expected
    with pytest.raises(ChecksumError, match="cannot verify"):
        await store.copy_in(outside / "secret.txt", "t", "sha256", expected)


async def test_copy_in_mismatch_leaves_nothing(store: LocalStore, outside: Path) -> None:
    wrong = md5_digest(b"other").checksum
    with pytest.raises(ChecksumError, match=r"secret\.txt: checksum .* differs"):
        await store.copy_in(outside / "secret.txt", "dir/s.txt", expected_checksum=wrong)
    assert files_below(store.store_path) == ["dir"]


async def test_copy_in_adopts_an_identical_file(store: LocalStore, outside: Path) -> None:
    store.resolve_in_store("s").write_text("secret")
    _, digest = await store.copy_in(outside / "secret.txt", "s")
    assert digest == md5_digest(b"secret")
    assert files_below(store.store_path) == ["s"]


async def test_copy_in_refuses_a_different_file(store: LocalStore, outside: Path) -> None:
    store.resolve_in_store("s").write_text("SECRET")
    with pytest.raises(ConflictError, match=r"'pot'.*different content"):
        await store.copy_in(outside / "secret.txt", "s")
    assert files_below(store.store_path) == ["s"]
    assert store.resolve_in_store("s").read_text() == "SECRET"


async def test_copy_in_refuses_escaping_names(store: LocalStore, outside: Path) -> None:
    with pytest.raises(PathEscapeError):
        await store.copy_in(outside / "secret.txt", "../outside/new")
    assert not (outside / "new").exists()


async def test_cancelled_copy_in_leaves_nothing(store: LocalStore, sparse_file: Path) -> None:
    task = asyncio.create_task(store.copy_in(sparse_file, "big/sparse.bin"))
    await asyncio.sleep(0.2)
    assert store.leftover_temporaries() != []  # the copy is under way
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert files_below(store.store_path) == ["big"]


# --- crash leftovers ------------------------------------------------------------------------------


def test_leftover_temporaries_are_found_and_swept(store: LocalStore) -> None:
    kept = ["f", ".hidden", "f.partial-0123456789abcdef", ".f.partial-short"]
    for name in kept:
        store.resolve_in_store(name).write_text("keep")
    (store.store_path / "sub").mkdir()
    crashed_file = temporary_sibling(store.store_path / "sub" / "file")
    crashed_file.write_text("half")
    crashed_dir = temporary_sibling(store.store_path / "dir")
    (crashed_dir / "inner").mkdir(parents=True)
    assert store.leftover_temporaries() == sorted([crashed_file, crashed_dir])
    assert store.remove_leftover_temporaries() == sorted([crashed_file, crashed_dir])
    assert files_below(store.store_path) == sorted([*kept, "sub"])


def test_leftover_sweep_can_spare_recent_files(store: LocalStore) -> None:
    old = temporary_sibling(store.store_path / "old")
    new = temporary_sibling(store.store_path / "new")
    old.write_text("old")
    new.write_text("new")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.remove_leftover_temporaries(older_than_seconds=600) == [old]
    assert new.exists() and not old.exists()
