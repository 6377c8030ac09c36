"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 18:25:39.357292
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("caller", sa.String(length=256), nullable=False),
        sa.Column("raised_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cleared_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_errors")),
    )
    with op.batch_alter_table("errors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_errors_cleared_raised_time"), ["cleared", "raised_time"], unique=False
        )

    op.create_table(
        "files",
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=256), nullable=False),
        sa.Column("uploader", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_files")),
    )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_files_create_time"), ["create_time"], unique=False)

    op.create_table(
        "librarians",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("authenticator", sa.Text(), nullable=False),
        sa.Column("transfers_enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_heard", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_disabled_warning", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_librarians")),
        sa.UniqueConstraint("name", name=op.f("uq_librarians_name")),
    )
    op.create_table(
        "send_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destination", sa.String(length=256), nullable=False),
        sa.Column("transfer_method", sa.String(length=32), nullable=False),
        sa.Column(
            "transfer_data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("consumed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("consumed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("completed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("retries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_queue")),
    )
    with op.batch_alter_table("send_queue", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_send_queue_consumed_completed_failed_next_attempt_at"),
            ["consumed", "completed", "failed", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_send_queue_destination"), ["destination"], unique=False
        )

    op.create_table(
        "stores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=32), server_default="local", nullable=False),
        sa.Column("staging_path", sa.String(length=4096), nullable=False),
        sa.Column("store_path", sa.String(length=4096), nullable=False),
        sa.Column("ingestable", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("report_full_fraction", sa.Float(), server_default="1.0", nullable=False),
        sa.Column(
            "transfer_methods",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stores")),
        sa.UniqueConstraint("name", name=op.f("uq_stores_name")),
    )
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_type", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), server_default="running", nullable=False),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_task_runs_task_name_started_at"),
            ["task_name", "started_at"],
            unique=False,
        )

    op.create_table(
        "users",
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("password_hash", sa.String(length=512), nullable=False),
        sa.Column("auth_level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_table(
        "completed_transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_queue_id", sa.Integer(), nullable=True),
        sa.Column("destination", sa.String(length=256), nullable=False),
        sa.Column("transfer_method", sa.String(length=32), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["send_queue_id"],
            ["send_queue.id"],
            name=op.f("fk_completed_transfers_send_queue_id_send_queue"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_completed_transfers")),
    )
    with op.batch_alter_table("completed_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_completed_transfers_destination"), ["destination"], unique=False
        )

    op.create_table(
        "incoming_transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("uploader", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("upload_name", sa.String(length=1024), nullable=False),
        sa.Column("transfer_size", sa.BigInteger(), nullable=False),
        sa.Column("transfer_checksum", sa.String(length=256), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("source_transfer_id", sa.Integer(), nullable=True),
        sa.Column("staging_path", sa.String(length=4096), nullable=True),
        sa.Column("store_path", sa.String(length=4096), nullable=True),
        sa.Column("transfer_method", sa.String(length=32), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("callback_pending", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("callback_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_callback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_incoming_transfers_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incoming_transfers")),
    )
    with op.batch_alter_table("incoming_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incoming_transfers_source_source_transfer_id"),
            ["source", "source_transfer_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_incoming_transfers_status_start_time"),
            ["status", "start_time"],
            unique=False,
        )

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("deletion_policy", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("calculated_checksum", sa.String(length=256), nullable=True),
        sa.Column("calculated_size", sa.BigInteger(), nullable=True),
        sa.Column("checksum_time", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_name"], ["files.name"], name=op.f("fk_instances_file_name_files")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_instances_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("store_id", "file_name", name=op.f("uq_instances_store_id_file_name")),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instances_file_name"), ["file_name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_instances_store_id_created_time"),
            ["store_id", "created_time"],
            unique=False,
        )

    op.create_table(
        "remote_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("librarian_id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("copy_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sender", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_name"], ["files.name"], name=op.f("fk_remote_instances_file_name_files")
        ),
        sa.ForeignKeyConstraint(
            ["librarian_id"],
            ["librarians.id"],
            name=op.f("fk_remote_instances_librarian_id_librarians"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_instances")),
        sa.UniqueConstraint(
            "file_name",
            "librarian_id",
            "store_id",
            name=op.f("uq_remote_instances_file_name_librarian_id_store_id"),
        ),
    )
    with op.batch_alter_table("remote_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_remote_instances_librarian_id"), ["librarian_id"], unique=False
        )

    op.create_table(
        "clone_transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("source_store_id", sa.Integer(), nullable=False),
        sa.Column("destination_store_id", sa.Integer(), nullable=True),
        sa.Column("source_instance_id", sa.Integer(), nullable=True),
        sa.Column("destination_instance_id", sa.Integer(), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["destination_instance_id"],
            ["instances.id"],
            name=op.f("fk_clone_transfers_destination_instance_id_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["destination_store_id"],
            ["stores.id"],
            name=op.f("fk_clone_transfers_destination_store_id_stores"),
        ),
        sa.ForeignKeyConstraint(
            ["file_name"], ["files.name"], name=op.f("fk_clone_transfers_file_name_files")
        ),
        sa.ForeignKeyConstraint(
            ["source_instance_id"],
            ["instances.id"],
            name=op.f("fk_clone_transfers_source_instance_id_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["source_store_id"],
            ["stores.id"],
            name=op.f("fk_clone_transfers_source_store_id_stores"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clone_transfers")),
    )
    with op.batch_alter_table("clone_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clone_transfers_file_name"), ["file_name"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_clone_transfers_status_start_time"),
            ["status", "start_time"],
            unique=False,
        )

    op.create_table(
        "corrupt_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("instance_path", sa.String(length=4096), nullable=False),
        sa.Column("corrupt_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=256), nullable=False),
        sa.Column("computed_checksum", sa.String(length=256), nullable=True),
        sa.Column("count", sa.Integer(), server_default="1", nullable=False),
        sa.Column("replacement_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("incoming_transfer_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_name"], ["files.name"], name=op.f("fk_corrupt_files_file_name_files")
        ),
        sa.ForeignKeyConstraint(
            ["incoming_transfer_id"],
            ["incoming_transfers.id"],
            name=op.f("fk_corrupt_files_incoming_transfer_id_incoming_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_corrupt_files_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrupt_files")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_corrupt_files_instance_id")),
    )
    with op.batch_alter_table("corrupt_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_corrupt_files_file_name"), ["file_name"], unique=False)

    op.create_table(
        "outgoing_transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=256), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("transfer_size", sa.BigInteger(), nullable=False),
        sa.Column("transfer_checksum", sa.String(length=256), nullable=False),
        sa.Column("remote_transfer_id", sa.Integer(), nullable=True),
        sa.Column("send_queue_id", sa.Integer(), nullable=True),
        sa.Column(
            "transfer_data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_name"], ["files.name"], name=op.f("fk_outgoing_transfers_file_name_files")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_outgoing_transfers_instance_id_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["send_queue_id"],
            ["send_queue.id"],
            name=op.f("fk_outgoing_transfers_send_queue_id_send_queue"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_transfers")),
    )
    with op.batch_alter_table("outgoing_transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outgoing_transfers_destination_file_name_status"),
            ["destination", "file_name", "status"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_outgoing_transfers_send_queue_id"), ["send_queue_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_outgoing_transfers_status_start_time"),
            ["status", "start_time"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("outgoing_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outgoing_transfers_status_start_time"))
        batch_op.drop_index(batch_op.f("ix_outgoing_transfers_send_queue_id"))
        batch_op.drop_index(batch_op.f("ix_outgoing_transfers_destination_file_name_status"))

    op.drop_table("outgoing_transfers")
    with op.batch_alter_table("corrupt_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_corrupt_files_file_name"))

    op.drop_table("corrupt_files")
    with op.batch_alter_table("clone_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clone_transfers_status_start_time"))
        batch_op.drop_index(batch_op.f("ix_clone_transfers_file_name"))

    op.drop_table("clone_transfers")
    with op.batch_alter_table("remote_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_remote_instances_librarian_id"))

    op.drop_table("remote_instances")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instances_store_id_created_time"))
        batch_op.drop_index(batch_op.f("ix_instances_file_name"))

    op.drop_table("instances")
    with op.batch_alter_table("incoming_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incoming_transfers_status_start_time"))
        batch_op.drop_index(batch_op.f("ix_incoming_transfers_source_source_transfer_id"))

    op.drop_table("incoming_transfers")
    with op.batch_alter_table("completed_transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_completed_transfers_destination"))

    op.drop_table("completed_transfers")
    op.drop_table("users")
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_runs_task_name_started_at"))

    op.drop_table("task_runs")
    op.drop_table("stores")
    with op.batch_alter_table("send_queue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_queue_destination"))
        batch_op.drop_index(batch_op.f("ix_send_queue_consumed_completed_failed_next_attempt_at"))

    op.drop_table("send_queue")
    op.drop_table("librarians")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_files_create_time"))

    op.drop_table("files")
    with op.batch_alter_table("errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_errors_cleared_raised_time"))

    op.drop_table("errors")
