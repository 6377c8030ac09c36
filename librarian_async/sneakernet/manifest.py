"""The SneakerNet manifest: its models, a streaming reader and an atomic incremental writer.

A manifest is one JSON object describing what a drive store holds (PROTOCOL §5)::

    {"format": "librarian-manifest", "version": 1,
     "librarian_name": "A", "store_name": "drive1", "store_path": "/mnt/drive1/store",
     "created": "2024-05-01T12:00:00+00:00", "destination": "B",
     "store_files": [
      {"name": ..., "create_time": ..., "size": ..., "checksum": ..., "uploader": ...,
       "source": ..., "instance_path": ..., "deletion_policy": 0,
       "instance_create_time": ..., "instance_available": true, "outgoing_transfer_id": 12},
      ...
     ]}

``store_path`` (a librarian_async addition) is the drive store's root at the exporter, so
that the importer can find each file at ``<mount>/<instance_path relative to store_path>``.
``destination`` is the librarian the outgoing transfers were created for (null: a plain
inventory). Unknown fields are ignored, so a later version 1 writer may add some.

Memory stays flat at both ends: the writer appends one entry per line to a temporary file
beside the target and renames it into place only when complete (fsync first), so a reader
never sees half a manifest; the reader decodes one value at a time from a bounded buffer,
whatever the layout of the JSON text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from librarian_async.enums import DeletionPolicy
from librarian_async.errors import LibrarianError
from librarian_async.remote.schemas import UTCDatetime
from librarian_async.storage.checksum import fsync_directory, remove_file_or_tree
from librarian_async.storage.store import temporary_sibling

FORMAT = "librarian-manifest"
VERSION = 1
CHUNK_CHARS = 64 * 1024
MAX_VALUE_CHARS = 1024 * 1024
"""A single value (one entry) longer than this is refused as malformed."""


class ManifestError(LibrarianError):
    """A manifest cannot be used: not JSON, another format or version, a missing or invalid
    field. The message is one line naming the file and the place."""


class ManifestHeader(BaseModel):
    """Everything in a manifest but its entries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["librarian-manifest"]
    version: Literal[1]
    librarian_name: str = Field(min_length=1)
    store_name: str = Field(min_length=1)
    store_path: str = Field(min_length=1)
    created: UTCDatetime
    destination: str | None = None


class ManifestEntry(BaseModel):
    """One instance on the drive (``store_files`` item), with PROTOCOL §5's field names."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    create_time: UTCDatetime
    size: int = Field(ge=0)
    checksum: str = Field(min_length=1)
    uploader: str
    source: str
    instance_path: str = Field(min_length=1)
    deletion_policy: DeletionPolicy
    instance_create_time: UTCDatetime
    instance_available: bool
    outgoing_transfer_id: int | None = None


@dataclass(frozen=True)
class ManifestInfo:
    """What a full check of a manifest found: its header, how many entries, their bytes."""

    header: ManifestHeader
    entries: int
    total_bytes: int


# --- writing ------------------------------------------------------------------------------


class ManifestWriter:
    """Writes a manifest entry by entry into a temporary file beside ``path``.

    :meth:`commit` ends the JSON text, fsyncs, renames it onto ``path`` (replacing an older
    manifest) and fsyncs the directory; :meth:`discard` removes the temporary file. Until
    commit, nothing at ``path`` changes. Blocking: call it from a worker thread.
    """

    def __init__(self, path: Path, header: ManifestHeader) -> None:
        self.path = path
        self.temporary = temporary_sibling(path)
        self.count = 0
        self._handle: TextIO = open(self.temporary, "x", encoding="utf-8")  # noqa: SIM115
        fields = header.model_dump(mode="json")
        opening = ", ".join(
            f"{json.dumps(key)}: {json.dumps(value)}" for key, value in fields.items()
        )
        self._handle.write("{" + opening + ',\n "store_files": [\n')

    def add(self, entries: list[ManifestEntry]) -> None:
        for entry in entries:
            separator = ",\n" if self.count else ""
            self._handle.write(separator + "  " + entry.model_dump_json())
            self.count += 1

    def commit(self) -> None:
        self._handle.write("\n ]}\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self.temporary, self.path)
        fsync_directory(self.path.parent)

    def discard(self) -> None:
        self._handle.close()
        remove_file_or_tree(self.temporary)


# --- reading ------------------------------------------------------------------------------


def check_manifest(path: Path, chunk_chars: int = CHUNK_CHARS) -> ManifestInfo:
    """Read the whole manifest once, validating the header and every entry; keep none.

    The header is judged first (a file of another format says so rather than complaining
    about its entries), then the first bad entry, if any. Raises ManifestError.
    """
    fields: dict[str, Any] = {}
    count = total = 0
    first_problem: str | None = None
    has_entries = False
    for key, value in _events(path, chunk_chars):
        if key != "store_files":
            fields[key] = value
            continue
        has_entries = True
        if value is None:
            continue
        try:
            entry = _entry(value, count)
        except ManifestError as error:
            first_problem = first_problem or str(error)
            continue
        count, total = count + 1, total + entry.size
    header = _header(path, fields)
    if not has_entries:
        raise ManifestError(f"manifest {path}: missing field 'store_files'")
    if first_problem is not None:
        raise ManifestError(f"manifest {path}: {first_problem}")
    return ManifestInfo(header, count, total)


def read_entries(
    path: Path, chunk_chars: int = CHUNK_CHARS
) -> Generator[ManifestEntry, None, None]:
    """The entries of a manifest, one at a time (check it first with :func:`check_manifest`)."""
    index = 0
    for key, value in _events(path, chunk_chars):
        if key == "store_files" and value is not None:
            try:
                yield _entry(value, index)
            except ManifestError as error:
                raise ManifestError(f"manifest {path}: {error}") from None
            index += 1


def _header(path: Path, fields: dict[str, Any]) -> ManifestHeader:
    if fields.get("format") != FORMAT:
        found = fields.get("format")
        raise ManifestError(f"manifest {path}: format is {found!r}, expected {FORMAT!r}")
    if fields.get("version") != VERSION:
        found = fields.get("version")
        raise ManifestError(f"manifest {path}: version {found!r} is not supported ({VERSION})")
    try:
        return ManifestHeader.model_validate(fields)
    except ValidationError as error:
        raise ManifestError(f"manifest {path}: {_first_problem(error)}") from None


def _entry(value: Any, index: int) -> ManifestEntry:
    try:
        return ManifestEntry.model_validate(value)
    except ValidationError as error:
        raise ManifestError(f"store_files[{index}]: {_first_problem(error)}") from None


def _first_problem(error: ValidationError) -> str:
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"]) or "value"
    if detail["type"] == "missing":
        return f"missing field {where!r}"
    return f"{where}: {detail['msg']}"


def _events(path: Path, chunk_chars: int) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` for each top-level field; ``("store_files", entry)`` for each
    entry (``("store_files", None)`` for an empty list). Raises ManifestError."""
    try:
        with open(path, encoding="utf-8") as handle:
            yield from _JsonStream(handle, chunk_chars).top_level()
    except UnicodeDecodeError as error:
        raise ManifestError(f"manifest {path}: not UTF-8 text ({error.reason})") from None
    except _NotJson as error:
        raise ManifestError(f"manifest {path}: not a JSON manifest: {error}") from None


class _NotJson(Exception):
    pass


class _JsonStream:
    """Decodes a JSON object's fields one value at a time from a bounded text buffer."""

    def __init__(self, handle: TextIO, chunk_chars: int) -> None:
        self.handle = handle
        self.chunk_chars = chunk_chars
        self.buffer = ""
        self.pos = 0
        self.offset = 0  # characters dropped from the buffer's front so far
        self.eof = False
        self.decoder = json.JSONDecoder()

    def top_level(self) -> Iterator[tuple[str, Any]]:
        self._expect("{")
        if self._peek() == "}":
            self.pos += 1
        else:
            yield from self._fields()
        if self._peek() != "":
            raise _NotJson(f"unexpected data after the object at character {self._where()}")

    def _fields(self) -> Iterator[tuple[str, Any]]:
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise _NotJson(f"expected a field name at character {self._where()}")
            self._expect(":")
            if key == "store_files":
                yield from self._entries()
            else:
                yield key, self._value()
            if self._next_of(",}") == "}":
                return

    def _entries(self) -> Iterator[tuple[str, Any]]:
        self._expect("[")
        if self._peek() == "]":
            self.pos += 1
            yield "store_files", None
            return
        while True:
            yield "store_files", self._value()
            if self._next_of(",]") == "]":
                return

    def _value(self) -> Any:
        """Decode the next complete value, reading more text until it is whole."""
        while True:
            self._peek()
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                if self.eof or len(self.buffer) - self.pos > MAX_VALUE_CHARS:
                    raise _NotJson(f"{error.msg} at character {self.offset + error.pos}") from None
                self._fill()
                continue
            if end == len(self.buffer) and not self.eof:  # a number may go on
                self._fill()
                continue
            self.pos = end
            return value

    def _expect(self, char: str) -> None:
        self._next_of(char)

    def _next_of(self, chars: str) -> str:
        found = self._peek()
        if found == "" or found not in chars:
            shown = repr(found) if found else "the end of the file"
            wanted = " or ".join(repr(c) for c in chars)
            raise _NotJson(f"expected {wanted} at character {self._where()}, found {shown}")
        self.pos += 1
        return found

    def _peek(self) -> str:
        """The next non-blank character ('' at the end), skipping blanks."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if self.eof:
                return ""
            self._fill()

    def _fill(self) -> None:
        chunk = self.handle.read(self.chunk_chars)
        self.eof = chunk == ""
        self.offset += self.pos
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0

    def _where(self) -> int:
        return self.offset + self.pos
