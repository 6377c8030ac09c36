"""The catalogue's tables (SQLAlchemy 2 declarative models).

Every time is an aware UTC datetime, every structured value is JSON, every flag that a
migration adds carries a server default. Indexes follow the queries the tasks run: age
windows per store, status lookups per peer, the queue order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from librarian_async.db.types import IntEnumType, PortableJSON, UTCDateTime, utcnow
from librarian_async.enums import AuthLevel, DeletionPolicy, TransferStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def flag(value: bool) -> Mapped[bool]:
    """A not-null boolean with the same default in Python and in the database."""
    return mapped_column(Boolean, default=value, server_default=true() if value else false())


def counter(value: int) -> Mapped[int]:
    """A not-null integer counter starting at ``value``."""
    return mapped_column(Integer, default=value, server_default=str(value))


def json_object() -> Mapped[dict[str, Any]]:
    """A not-null JSON object column, empty by default."""
    return mapped_column(default=dict, server_default="{}")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: PortableJSON,
        list[Any]: PortableJSON,
    }


class File(Base):
    """A catalogued file; its name is its relative path inside any store."""

    __tablename__ = "files"
    # send_clone pages the recent files in (create_time, name) order.
    __table_args__ = (Index(None, "create_time", "name"),)

    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    create_time: Mapped[datetime] = mapped_column(index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(256))
    uploader: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(256))


class Store(Base):
    """A place that holds instances: a staging area and a store area on local disk."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="local", server_default="local")
    staging_path: Mapped[str] = mapped_column(String(4096))
    store_path: Mapped[str] = mapped_column(String(4096))
    ingestable: Mapped[bool] = flag(True)
    enabled: Mapped[bool] = flag(True)
    report_full_fraction: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    # Transfer methods offered to peers, e.g. {"http": {}, "local": {"hostnames": [...]}}.
    transfer_methods: Mapped[dict[str, Any]] = json_object()


class Instance(Base):
    """A physical copy of a file on one of our stores."""

    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("store_id", "file_name"),
        Index(None, "store_id", "created_time", "id"),  # keyset pages (migration 0003)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(4096))
    file_name: Mapped[str] = mapped_column(ForeignKey("files.name"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    deletion_policy: Mapped[DeletionPolicy] = mapped_column(
        IntEnumType(DeletionPolicy), default=DeletionPolicy.DISALLOWED, server_default="0"
    )
    created_time: Mapped[datetime] = mapped_column(default=utcnow)
    available: Mapped[bool] = flag(True)
    calculated_checksum: Mapped[str | None] = mapped_column(String(256))
    calculated_size: Mapped[int | None] = mapped_column(BigInteger)
    checksum_time: Mapped[datetime | None]


class Librarian(Base):
    """A peer librarian we exchange files with."""

    __tablename__ = "librarians"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    url: Mapped[str] = mapped_column(String(1024))
    port: Mapped[int] = mapped_column(Integer)
    # "user:password" encrypted with LIBRARIAN_ENCRYPTION_KEY.
    authenticator: Mapped[str] = mapped_column(Text)
    transfers_enabled: Mapped[bool] = flag(True)
    last_seen: Mapped[datetime | None]
    last_heard: Mapped[datetime | None]
    last_disabled_warning: Mapped[datetime | None]


class RemoteInstance(Base):
    """A copy of one of our files held by a peer, on the peer's store ``store_id``."""

    __tablename__ = "remote_instances"
    __table_args__ = (UniqueConstraint("file_name", "librarian_id", "store_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(ForeignKey("files.name"))
    librarian_id: Mapped[int] = mapped_column(ForeignKey("librarians.id"), index=True)
    store_id: Mapped[int] = mapped_column(Integer)
    copy_time: Mapped[datetime] = mapped_column(default=utcnow)
    sender: Mapped[str] = mapped_column(String(256))


class User(Base):
    """An account that peers (or operators) use to call this librarian's API."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(256), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    auth_level: Mapped[AuthLevel] = mapped_column(IntEnumType(AuthLevel))


class IncomingTransfer(Base):
    """A file being received from a peer (network clone or SneakerNet ingest)."""

    __tablename__ = "incoming_transfers"
    __table_args__ = (
        Index(None, "status", "start_time"),
        Index(None, "source", "source_transfer_id"),
        Index(None, "callback_pending", "next_callback_at"),
        Index(None, "store_path", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[TransferStatus] = mapped_column(IntEnumType(TransferStatus))
    uploader: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(256))
    upload_name: Mapped[str] = mapped_column(String(1024))
    transfer_size: Mapped[int] = mapped_column(BigInteger)
    transfer_checksum: Mapped[str] = mapped_column(String(256))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    source_transfer_id: Mapped[int | None] = mapped_column(Integer)
    staging_path: Mapped[str | None] = mapped_column(String(4096))
    store_path: Mapped[str | None] = mapped_column(String(4096))
    transfer_method: Mapped[str | None] = mapped_column(String(32))
    start_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime | None]
    # Set when the source must still be told about the outcome; retried until it acknowledges.
    callback_pending: Mapped[bool] = flag(False)
    callback_attempts: Mapped[int] = counter(0)
    next_callback_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # The staged file's stat (storage.checksum.stat_fingerprint) when the upload endpoint, the
    # ``local`` sender (checkin/update's verified_stats) or a SneakerNet ingest had verified
    # its size and checksum as the bytes were written: receive_clone need not read the file
    # again while it still has exactly this stat (any change to it changes its ctime).
    verified_stat: Mapped[str | None] = mapped_column(String(128))


class SendQueueItem(Base):
    """A batch of outgoing transfers waiting to be (or being) moved by one transfer method."""

    __tablename__ = "send_queue"
    __table_args__ = (Index(None, "consumed", "completed", "failed", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[int] = counter(0)
    created_time: Mapped[datetime] = mapped_column(default=utcnow)
    destination: Mapped[str] = mapped_column(String(256), index=True)
    transfer_method: Mapped[str] = mapped_column(String(32))
    # Everything the method needs: its provider fields and the (source, staging) path pairs.
    transfer_data: Mapped[dict[str, Any]] = json_object()
    consumed: Mapped[bool] = flag(False)
    consumed_time: Mapped[datetime | None]
    completed: Mapped[bool] = flag(False)
    completed_time: Mapped[datetime | None]
    failed: Mapped[bool] = flag(False)
    retries: Mapped[int] = counter(0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class OutgoingTransfer(Base):
    """A file being sent to a peer librarian."""

    __tablename__ = "outgoing_transfers"
    __table_args__ = (
        Index(None, "destination", "file_name", "status"),
        Index(None, "status", "start_time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[TransferStatus] = mapped_column(IntEnumType(TransferStatus))
    destination: Mapped[str] = mapped_column(String(256))
    file_name: Mapped[str] = mapped_column(ForeignKey("files.name"))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    transfer_size: Mapped[int] = mapped_column(BigInteger)
    transfer_checksum: Mapped[str] = mapped_column(String(256))
    remote_transfer_id: Mapped[int | None] = mapped_column(Integer)
    send_queue_id: Mapped[int | None] = mapped_column(ForeignKey("send_queue.id"), index=True)
    transfer_data: Mapped[dict[str, Any]] = json_object()
    start_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)


class CloneTransfer(Base):
    """One attempt to copy an instance between two of our own stores."""

    __tablename__ = "clone_transfers"
    __table_args__ = (Index(None, "status", "start_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[TransferStatus] = mapped_column(IntEnumType(TransferStatus))
    file_name: Mapped[str] = mapped_column(ForeignKey("files.name"), index=True)
    source_store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    destination_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    source_instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    destination_instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    start_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)


class CompletedTransfer(Base):
    """Throughput record of one finished send-queue batch."""

    __tablename__ = "completed_transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    send_queue_id: Mapped[int | None] = mapped_column(ForeignKey("send_queue.id"))
    destination: Mapped[str] = mapped_column(String(256), index=True)
    transfer_method: Mapped[str] = mapped_column(String(32))
    file_count: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    start_time: Mapped[datetime]
    end_time: Mapped[datetime]


class CorruptFile(Base):
    """An instance whose bytes no longer match the catalogue's checksum."""

    __tablename__ = "corrupt_files"
    __table_args__ = (UniqueConstraint("instance_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(ForeignKey("files.name"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    instance_path: Mapped[str] = mapped_column(String(4096))
    corrupt_time: Mapped[datetime] = mapped_column(default=utcnow)
    size: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(256))
    computed_checksum: Mapped[str | None] = mapped_column(String(256))
    count: Mapped[int] = counter(1)
    replacement_requested: Mapped[bool] = flag(False)
    incoming_transfer_id: Mapped[int | None] = mapped_column(ForeignKey("incoming_transfers.id"))


class ErrorRecord(Base):
    """A problem worth an operator's attention, raised by a task or an API call."""

    __tablename__ = "errors"
    __table_args__ = (Index(None, "cleared", "raised_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    severity: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    caller: Mapped[str] = mapped_column(String(256))
    raised_time: Mapped[datetime] = mapped_column(default=utcnow)
    cleared: Mapped[bool] = flag(False)
    cleared_time: Mapped[datetime | None]


class TaskRun(Base):
    """One run of one configured background task entry."""

    __tablename__ = "task_runs"
    __table_args__ = (Index(None, "task_name", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_type: Mapped[str] = mapped_column(String(64))
    task_name: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # running | ok | problems | error | timed_out | cancelled
    outcome: Mapped[str] = mapped_column(String(16), default="running", server_default="running")
    counts: Mapped[dict[str, Any]] = json_object()
    error: Mapped[str | None] = mapped_column(Text)
