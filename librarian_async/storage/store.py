"""A local store: a staging area and a store area on disk, and safe moves between them.

Incoming bytes land in a fresh per-transfer directory under staging, are verified, then
committed into the store area at the file's name. Every name is confined to its area (no
``..``, no absolute path, no symlink leading out). A commit never overwrites a different
file and is crash-safe: bytes are written under a temporary dot-name (see
:func:`temporary_sibling`), fsynced, then renamed into place and the directory fsynced, so a
restart finds either nothing or a complete file at the final name. A complete identical file
already at the final name (left by a crash after the rename) is adopted, not refused.
The thread-side variants (:meth:`LocalStore.commit_sync`, :meth:`LocalStore.copy_in_sync`)
can leave the directory fsync to a caller that batches small files: it fsyncs each
directory once, before it records any of the batch's files.

This module does not touch the database: the ``stores`` row is turned into a
:class:`LocalStore` elsewhere.
"""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from librarian_async.errors import (
    ChecksumError,
    ConfigError,
    ConflictError,
    PathEscapeError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
)
from librarian_async.storage.checksum import (
    DEFAULT_ALGORITHM,
    FileDigest,
    checksums_match,
    copy_and_hash,
    copy_and_hash_sync,
    fsync_directory,
    fsync_file,
    hash_file,
    hash_file_sync,
    parse_checksum,
    remove_file_or_tree,
    run_interruptible,
)

TEMPORARY_MARKER = ".partial-"
_TEMPORARY_NAME = re.compile(r"^\..*\.partial-[0-9a-f]{16}$", re.DOTALL)
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


class VfsStats(Protocol):
    """The part of ``os.statvfs_result`` that free-space accounting reads."""

    @property
    def f_bavail(self) -> int: ...

    @property
    def f_blocks(self) -> int: ...

    @property
    def f_frsize(self) -> int: ...


StatVfs = Callable[[Path], VfsStats]


def temporary_sibling(target: Path) -> Path:
    """A fresh hidden name beside ``target`` that :meth:`LocalStore.leftover_temporaries` knows."""
    return target.with_name(f".{target.name[:128]}{TEMPORARY_MARKER}{secrets.token_hex(8)}")


@dataclass(eq=False)
class LocalStore:
    """One local store; ``report_full_fraction`` is the share of each disk we may fill."""

    name: str
    staging_path: Path
    store_path: Path
    report_full_fraction: float = 1.0
    statvfs: StatVfs = field(default=os.statvfs, repr=False)

    def __post_init__(self) -> None:
        self.staging_path = Path(os.path.abspath(self.staging_path))
        self.store_path = Path(os.path.abspath(self.store_path))
        if not 0.0 <= self.report_full_fraction <= 1.0:
            fraction = self.report_full_fraction
            raise ConfigError(f"store {self.name!r}: report_full_fraction {fraction} not in [0, 1]")

    # --- paths --------------------------------------------------------------------------

    def resolve_in_store(self, name: str, plain_dirs: set[str] | None = None) -> Path:
        """The path of file ``name`` in the store area; raises PathEscapeError if it leaves it
        (``plain_dirs``: see :meth:`resolve_in_staging`)."""
        return self._confine(self.store_path, "store", name, plain_dirs)

    def resolve_in_staging(self, relative: str, plain_dirs: set[str] | None = None) -> Path:
        """The path of ``relative`` in the staging area, confined like store names.

        ``plain_dirs``, shared by the calls for one batch of files, remembers the
        directories found not to be links, so that files side by side cost one lstat each
        instead of one per component."""
        return self._confine(self.staging_path, "staging", relative, plain_dirs)

    def _confine(
        self, area: Path, area_kind: str, relative: str, plain_dirs: set[str] | None = None
    ) -> Path:
        problem = name_problem(relative)
        if problem is not None:
            raise PathEscapeError(f"store {self.name!r}: {area_kind} path {relative!r} {problem}")
        parts = relative.split("/")
        candidate = area.joinpath(*parts)
        if self._plain_below(area, parts, plain_dirs):  # no link below: lexically inside
            return candidate
        # realpath resolves every existing component, dangling links included, so a link
        # anywhere along the way that leads out of the area shows up here.
        if not _strictly_inside(Path(os.path.realpath(candidate)), self._real_area(area)):
            message = f"{area_kind} path {relative!r} leads outside {area} through a symlink"
            raise PathEscapeError(f"store {self.name!r}: {message}")
        return candidate

    def _plain_below(
        self, area: Path, parts: list[str], plain_dirs: set[str] | None = None
    ) -> bool:
        """True when no existing component of ``parts`` below ``area`` is a symlink.

        One lstat per existing component (the walk stops at the first missing one): far
        cheaper than realpath, which re-resolves the area's own components for every file;
        none for a directory in ``plain_dirs``, to which the directories found are added.
        A missing area is StoreUnavailableError, not a missing file."""
        path = os.fspath(area)
        for index, part in enumerate(parts):
            path = os.path.join(path, part)
            if plain_dirs is not None and path in plain_dirs:
                continue
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                if index == 0:
                    self._real_area(area)
                return True
            except NotADirectoryError:
                return True  # the caller's open or create then fails with a clear error
            if stat.S_ISLNK(mode):
                return False
            if plain_dirs is not None and stat.S_ISDIR(mode):
                plain_dirs.add(path)
        return True

    def _real_area(self, area: Path) -> Path:
        try:
            return Path(os.path.realpath(area, strict=True))
        except OSError as error:
            raise StoreUnavailableError(f"store {self.name!r}: {area} is missing") from error

    # --- flags and space ------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Both directories exist (a missing mount or a deleted directory makes it False)."""
        return self.staging_path.is_dir() and self.store_path.is_dir()

    def ensure_available(self) -> None:
        if not self.available:
            raise StoreUnavailableError(f"store {self.name!r}: staging or store area is missing")

    def free_space(self) -> int:
        """Bytes we may still write: the smaller of both areas, minus the reserved share."""
        areas = (self.staging_path, self.store_path)
        return max(0, min(self._usable_bytes(area) for area in areas))

    def _usable_bytes(self, area: Path) -> int:
        stats = self.statvfs(area)
        free = stats.f_bavail * stats.f_frsize
        reserved = math.ceil(stats.f_blocks * stats.f_frsize * (1.0 - self.report_full_fraction))
        return free - reserved

    def has_room(self, size: int) -> bool:
        """A store is full for a file when its free space is less than the file's size."""
        return self.free_space() >= size

    def ensure_room(self, size: int) -> None:
        free = self.free_space()
        if free < size:
            raise StoreFullError(f"store {self.name!r}: {size} bytes needed, {free} free")

    # --- staging --------------------------------------------------------------------------

    def make_staging_dir(self, tag: str) -> Path:
        """A new, empty, private directory under staging for one transfer."""
        if not self.staging_path.is_dir():
            raise StoreUnavailableError(f"store {self.name!r}: {self.staging_path} is missing")
        prefix = re.sub(r"[^A-Za-z0-9._-]", "_", tag)[:64].lstrip(".") + "-"
        return Path(tempfile.mkdtemp(dir=self.staging_path, prefix=prefix))

    def remove_staging_dir(self, path: Path, inner: str | None = None) -> None:
        """Delete a staging directory (or file); refuses anything outside staging.

        With ``inner`` (a transfer's upload name) only ``path/inner`` is deleted, then each
        directory that leaves empty, bottom-up up to ``path`` itself: the other transfers
        staged in a shared directory keep their files."""
        if not path.is_absolute() or ".." in path.parts or path.name == "":
            raise PathEscapeError(f"store {self.name!r}: refusing to remove {str(path)!r}")
        real = self._real_in_staging(path)
        if real is None:
            message = f"refusing to remove {path}: not inside staging area {self.staging_path}"
            raise PathEscapeError(f"store {self.name!r}: {message}")
        if inner is None:
            remove_file_or_tree(real)
            return
        if real.is_dir() and not real.is_symlink():
            try:
                target = self._confine(real, "staging", inner)
            except StoreUnavailableError:
                self.ensure_available()  # the area itself gone (unmounted) is still an error
                return  # only the directory is gone: the calls for its other transfers took it
            remove_file_or_tree(target)
            _remove_empty_parents(real, inner)
        else:  # not the directory it should be: nothing of another transfer can be inside
            remove_file_or_tree(real)

    def _real_in_staging(self, path: Path) -> Path | None:
        """``path`` with its parent resolved (the last component, a link or not, is itself),
        if that lies strictly inside the staging area; else None. A path written below the
        staging area without a symlink among its parents is inside as it is (no realpath)."""
        if path.parent.is_relative_to(self.staging_path):
            parents = list(path.parent.relative_to(self.staging_path).parts)
            if parents:
                plain = self._plain_below(self.staging_path, parents)
            else:  # a direct child: only the area itself must be there
                plain = self.staging_path.is_dir()
            if plain:
                return path
        real = Path(os.path.realpath(path.parent)) / path.name  # the link itself, not its target
        return real if _strictly_inside(real, self._real_area(self.staging_path)) else None

    # --- commit -----------------------------------------------------------------------------

    async def commit(self, staged: Path, name: str, expected: FileDigest | None = None) -> Path:
        """Move a verified staged file or directory to ``name`` in the store; return its path.

        ``expected`` (the verified digest) decides whether a file already at ``name`` is the
        same one (adopted; the staged copy is removed) or a different one (ConflictError, the
        staged copy is kept). Across filesystems the bytes are copied to a temporary name,
        checked against ``expected`` and renamed, and the staged copy is then removed.
        """
        target = self.resolve_in_store(name)
        self._refuse_symlink(staged)
        self._make_parents(target)
        await run_interruptible(_sync_data, staged)
        try:
            return await self._install(staged, target, expected)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
        return await self._commit_across_filesystems(staged, target, expected)

    async def _commit_across_filesystems(
        self, staged: Path, target: Path, expected: FileDigest | None
    ) -> Path:
        temporary = temporary_sibling(target)
        algorithm = expected.algorithm if expected is not None else DEFAULT_ALGORITHM
        try:
            copied = await copy_and_hash(staged, temporary, algorithm)
            _require_same_copy(staged, copied, expected)
            await self._install(temporary, target, copied)
        finally:
            await run_interruptible(_discard, temporary)
        await run_interruptible(_discard, staged)
        return target

    def commit_sync(
        self,
        staged: Path,
        name: str,
        expected: FileDigest | None = None,
        stop: threading.Event | None = None,
        *,
        sync_directory: bool = False,
        sync_data: bool = True,
        plain_dirs: set[str] | None = None,
    ) -> Path:
        """:meth:`commit` in the calling thread, for callers that commit small files in
        batches; return the file's path in the store.

        Same guarantees: a staged symlink is refused, nothing is clobbered, an identical
        file at ``name`` is adopted (the staged copy is removed), a different one raises
        ConflictError (the staged copy is kept); across filesystems the bytes are copied to
        a temporary name, checked against ``expected`` and renamed. ``stop`` interrupts
        that copy between chunks, never a rename. With ``sync_directory=False`` (the
        default) the caller must fsync the returned path's directory itself (once for a
        whole batch, :func:`~librarian_async.storage.checksum.fsync_directory`) before it
        records the file anywhere. ``plain_dirs``: see :meth:`resolve_in_staging`.
        """
        target = self.resolve_in_store(name, plain_dirs)
        self._refuse_symlink(staged)
        self._make_parents(target)
        reference = expected if expected is not None else hash_file_sync(staged, stop=stop)
        if sync_data:  # else the caller made the staged bytes durable already
            _sync_data(staged)
        try:
            self._install_sync(staged, target, reference, sync_directory)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            self._commit_across_filesystems_sync(staged, target, reference, stop, sync_directory)
        return target

    def _commit_across_filesystems_sync(
        self,
        staged: Path,
        target: Path,
        expected: FileDigest,
        stop: threading.Event | None,
        sync_directory: bool,
    ) -> None:
        temporary = temporary_sibling(target)
        try:
            copied = copy_and_hash_sync(staged, temporary, expected.algorithm, stop)
            _require_same_copy(staged, copied, expected)
            self._install_sync(temporary, target, copied, sync_directory)
        finally:
            remove_file_or_tree(temporary)
        remove_file_or_tree(staged)

    async def copy_in(
        self,
        source: Path,
        name: str,
        alg: str | None = None,
        expected_checksum: str | None = None,
    ) -> tuple[Path, FileDigest]:
        """Copy an outside file or directory into the store at ``name``, hashing as it goes.

        The hash uses ``alg``, else the algorithm of ``expected_checksum``, else md5. A
        mismatch with ``expected_checksum`` raises ChecksumError. An error or cancellation
        before the final rename leaves neither the temporary copy nor a file at ``name``.
        """
        target = self.resolve_in_store(name)
        algorithm = _choose_algorithm(source, alg, expected_checksum)
        self._make_parents(target)
        temporary = temporary_sibling(target)
        try:
            digest = await copy_and_hash(source, temporary, algorithm)
            _require_checksum(source, digest, expected_checksum)
            await self._install(temporary, target, digest)
        finally:
            await run_interruptible(_discard, temporary)
        return target, digest

    def copy_in_sync(
        self,
        source: Path,
        name: str,
        expected_checksum: str | None = None,
        stop: threading.Event | None = None,
        *,
        sync_directory: bool = True,
    ) -> tuple[Path, FileDigest]:
        """:meth:`copy_in` in the calling thread, for callers that batch small files.

        Same guarantees: temporary sibling, fsync, ChecksumError on a mismatch (nothing is
        left), rename without clobbering, an identical file at ``name`` adopted (ConflictError
        if different). ``stop`` interrupts the copy between chunks, never the rename.
        With ``sync_directory=False`` the caller fsyncs the target's directory itself (once
        for a whole batch) before it records the copy anywhere.
        """
        target = self.resolve_in_store(name)
        return self.copy_to_sync(source, target, expected_checksum, stop, sync_directory)

    def copy_to_sync(
        self,
        source: Path,
        target: Path,
        expected_checksum: str | None,
        stop: threading.Event | None,
        sync_directory: bool,
    ) -> tuple[Path, FileDigest]:
        """:meth:`copy_in_sync` to a ``target`` that :meth:`resolve_in_store` returned (the
        caller already resolved it; resolving costs more than copying a small file)."""
        algorithm = _choose_algorithm(source, None, expected_checksum)
        self._make_parents(target)
        temporary = temporary_sibling(target)
        try:
            digest = copy_and_hash_sync(source, temporary, algorithm, stop)
            _require_checksum(source, digest, expected_checksum)
            self._install_sync(temporary, target, digest, sync_directory)
        finally:
            remove_file_or_tree(temporary)
        return target, digest

    def prepare_copy_sync(
        self, source: Path, target: Path, expected_checksum: str, stop: threading.Event | None
    ) -> tuple[Path, FileDigest]:
        """Copy ``source`` to a temporary sibling of ``target`` (from :meth:`resolve_in_store`)
        and verify it, WITHOUT fsync; return the temporary and its digest. For batches: the
        caller makes all temporaries durable at once (``checksum.sync_files``), then calls
        :meth:`install_prepared_sync` for each. A mismatch raises ChecksumError, and on any
        failure nothing is left."""
        algorithm = _choose_algorithm(source, None, expected_checksum)
        self._make_parents(target)
        temporary = temporary_sibling(target)
        try:
            digest = copy_and_hash_sync(source, temporary, algorithm, stop, sync=False)
            _require_checksum(source, digest, expected_checksum)
        except BaseException:
            remove_file_or_tree(temporary)
            raise
        return temporary, digest

    def install_prepared_sync(self, temporary: Path, target: Path, digest: FileDigest) -> None:
        """Rename a durable prepared copy to ``target`` (no clobbering; an identical file
        there is adopted). The caller fsyncs the directory before recording the file."""
        try:
            self._install_sync(temporary, target, digest, sync_directory=False)
        except BaseException:
            remove_file_or_tree(temporary)
            raise

    def _install_sync(
        self, ready: Path, target: Path, expected: FileDigest, sync_directory: bool
    ) -> None:
        """:meth:`_install` in the calling thread."""
        try:
            _move_without_clobbering(ready, target, sync_directory=sync_directory)
        except FileExistsError:
            if not hash_file_sync(target, expected.algorithm).matches(expected):
                message = f"{target} exists with different content"
                raise ConflictError(f"store {self.name!r}: {message}") from None
            remove_file_or_tree(ready)

    async def _install(self, ready: Path, target: Path, expected: FileDigest | None) -> Path:
        """Rename ``ready`` to ``target`` without clobbering; adopt an identical ``target``.

        The rename and directory fsync finish even if we are cancelled meanwhile (then the
        file at ``target`` is complete, and a retry adopts it).
        """
        try:
            await run_interruptible(_move_without_clobbering, ready, target)
        except FileExistsError:
            await self._adopt_existing(ready, target, expected)
        return target

    async def _adopt_existing(self, ready: Path, target: Path, expected: FileDigest | None) -> None:
        """Keep an identical ``target`` and drop ``ready``; refuse a different one."""
        reference = expected if expected is not None else await hash_file(ready)
        existing = await hash_file(target, reference.algorithm)
        if not existing.matches(reference):
            raise ConflictError(f"store {self.name!r}: {target} exists with different content")
        await run_interruptible(_discard, ready)

    def _refuse_symlink(self, staged: Path) -> None:
        """A staged symlink could point anywhere; committing it would import that file."""
        if staged.is_symlink():
            raise StoreError(f"store {self.name!r}: staged {staged} is a symlink; not committing")

    def _make_parents(self, target: Path) -> None:
        """Create the missing directories above ``target``, each made durable in its parent
        (a file recorded in the catalogue must not vanish with a lost directory entry)."""
        missing, directory = [], target.parent
        while not directory.is_dir():  # one stat when the directory exists (the usual case)
            missing.append(directory)
            directory = directory.parent
        try:
            for directory in reversed(missing):
                directory.mkdir(exist_ok=True)
                fsync_directory(directory.parent)
        except (FileExistsError, NotADirectoryError) as error:
            message = f"cannot create the directory of {target}: a file is in the way"
            raise ConflictError(f"store {self.name!r}: {message}") from error

    # --- crash leftovers ------------------------------------------------------------------

    def leftover_temporaries(self, older_than_seconds: float = 0.0) -> list[Path]:
        """Temporary copies left in the store area by a killed process.

        Walks the whole store (run it in a thread for big stores). A copy still in progress
        also matches: sweep at start-up, or with ``older_than_seconds`` (by mtime).
        """
        cutoff = time.time() - older_than_seconds
        found: list[Path] = []
        for directory, subdirectories, files in os.walk(self.store_path):
            for entry in [*subdirectories, *files]:
                path = Path(directory, entry)
                if _TEMPORARY_NAME.match(entry) and _modified_before(path, cutoff):
                    found.append(path)
            subdirectories[:] = [d for d in subdirectories if not _TEMPORARY_NAME.match(d)]
        return sorted(found)

    def remove_leftover_temporaries(self, older_than_seconds: float = 0.0) -> list[Path]:
        """Delete what :meth:`leftover_temporaries` finds; return what was removed."""
        leftovers = self.leftover_temporaries(older_than_seconds)
        for path in leftovers:
            remove_file_or_tree(path)
        return leftovers


# --- helpers ----------------------------------------------------------------------------


def name_problem(relative: str) -> str | None:
    """Why ``relative`` is not an acceptable name inside a store or staging area, or None."""
    if not relative:
        return "is empty"
    if "\0" in relative or "\\" in relative:
        return "contains a NUL byte or a backslash"
    if relative.startswith("/"):
        return "is absolute"
    parts = relative.split("/")
    if ".." in parts:
        return "has a '..' component (it would leave its area)"
    if "" in parts or "." in parts:
        return "has an empty or '.' component"
    return None


def _remove_empty_parents(directory: Path, inner: str) -> None:
    """Remove the parents of ``inner`` inside ``directory``, then ``directory``, bottom-up,
    stopping at the first that is not empty (one rmdir each, no tree walk)."""
    parents = inner.split("/")[:-1]
    for depth in range(len(parents), -1, -1):
        try:
            os.rmdir(directory.joinpath(*parents[:depth]))
        except FileNotFoundError:
            continue
        except OSError:  # not empty (another transfer's file) or not a plain directory
            return


def _modified_before(path: Path, cutoff: float) -> bool:
    """False for a path gone since it was listed (a copy in progress finished meanwhile)."""
    try:
        return path.lstat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def _strictly_inside(path: Path, area: Path) -> bool:
    return path != area and path.is_relative_to(area)


def _choose_algorithm(source: Path, alg: str | None, expected_checksum: str | None) -> str:
    if expected_checksum is None:
        return alg or DEFAULT_ALGORITHM
    expected_algorithm = parse_checksum(expected_checksum)[0]
    if alg is not None and alg != expected_algorithm:
        raise ChecksumError(f"{source}: cannot verify {alg} against {expected_checksum!r}")
    return expected_algorithm


def _require_checksum(source: Path, digest: FileDigest, expected_checksum: str | None) -> None:
    if expected_checksum is not None and not checksums_match(digest.checksum, expected_checksum):
        message = f"{source}: checksum {digest.checksum} differs from expected {expected_checksum}"
        raise ChecksumError(message)


def _require_same_copy(staged: Path, copied: FileDigest, expected: FileDigest | None) -> None:
    if expected is not None and not copied.matches(expected):
        found = f"{copied.checksum} ({copied.size} bytes)"
        wanted = f"{expected.checksum} ({expected.size} bytes)"
        raise ChecksumError(f"{staged}: copy into the store has {found}, expected {wanted}")


def _sync_data(path: Path, *, stop: threading.Event | None = None) -> None:
    """Make the bytes of a staged file (or of every file of a staged tree) durable before
    they are linked into the store: senders write staging without fsync."""
    if path.is_dir():
        for directory, _, files in os.walk(path):
            for name in files:
                fsync_file(Path(directory, name))
        return
    fsync_file(path)


def _discard(path: Path, *, stop: threading.Event) -> None:
    """Cleanup that must run to the end, so it ignores the stop flag."""
    remove_file_or_tree(path)


def _move_without_clobbering(
    ready: Path, target: Path, *, stop: threading.Event | None = None, sync_directory: bool = True
) -> None:
    """Rename ``ready`` to ``target`` unless it exists (FileExistsError); fsync the directory.

    Files use link + unlink, which fails atomically if ``target`` exists. Directories (which
    cannot be linked: EPERM) and filesystems without hard links check first, then rename:
    a tiny race we accept.
    """
    _link_then_unlink(ready, target)  # a directory cannot be linked (EPERM): renamed instead
    if sync_directory:
        fsync_directory(target.parent)


def _link_then_unlink(ready: Path, target: Path) -> None:
    try:
        os.link(ready, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _LINK_UNSUPPORTED:
            raise
        _rename_if_absent(ready, target)
        return
    ready.unlink()


def _rename_if_absent(ready: Path, target: Path) -> None:
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    os.rename(ready, target)
