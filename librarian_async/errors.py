"""The exception tree of librarian_async.

Every error we raise on purpose derives from :class:`LibrarianError`, so a caller (the CLI,
the scheduler, the API) can tell our expected failures from bugs with one ``except``.

    LibrarianError
    ├── ConfigError            settings or task configuration is invalid (``problems`` lists all)
    ├── DatabaseError          the database is unreachable or its schema is out of date
    ├── NotFoundError          a named store, librarian, user or file does not exist
    ├── ConflictError          the thing already exists (a file name, a store name, ...)
    ├── StoreError             a store cannot serve a request
    │   ├── PathEscapeError    a relative path would leave its store area
    │   ├── StoreFullError     not enough free space for the bytes asked for
    │   └── StoreUnavailableError  a store directory is missing or the store is disabled
    ├── ChecksumError          bytes do not match the expected size or checksum
    ├── TransferError          a transfer method could not move a batch's bytes
    └── PeerError              a call to another librarian failed
        ├── PeerUnreachableError  connection failed or timed out: the peer said nothing
        └── PeerRefusedError      the peer answered with an error status (``status``, ``reason``)

Messages are one line and name the thing that is wrong, so the CLI can print them as is.
"""

from __future__ import annotations


class LibrarianError(Exception):
    """Base of every error librarian_async raises on purpose."""


class ConfigError(LibrarianError):
    """Invalid settings or task configuration; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class DatabaseError(LibrarianError):
    """The database cannot be reached or is not at the expected schema."""


class NotFoundError(LibrarianError):
    """A named object does not exist."""


class ConflictError(LibrarianError):
    """The object to create already exists."""


class StoreError(LibrarianError):
    """A store cannot serve the request."""


class PathEscapeError(StoreError):
    """A relative path would resolve outside the area it must stay in."""


class StoreFullError(StoreError):
    """The store has less free space than the bytes asked for."""


class StoreUnavailableError(StoreError):
    """A store directory is missing, or the store is disabled."""


class ChecksumError(LibrarianError):
    """Bytes on disk do not match the expected size or checksum."""


class TransferError(LibrarianError):
    """A transfer method (local, rsync, http) could not move the bytes of a batch."""


class PeerError(LibrarianError):
    """A call to another librarian failed."""


class PeerUnreachableError(PeerError):
    """The peer could not be reached (connection error or timeout)."""


class PeerRefusedError(PeerError):
    """The peer answered with an error status."""

    def __init__(self, status: int, reason: str, body: object = None) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        super().__init__(f"peer refused with HTTP {status}: {reason}")
