"""indexes for send_clone's file pages, staging checks and receive_clone's due callbacks

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_files_create_time_name", "files", ["create_time", "name"])
    op.create_index(
        "ix_incoming_transfers_callback_pending_next_callback_at",
        "incoming_transfers",
        ["callback_pending", "next_callback_at"],
    )
    # clone/batch_stage checks the live transfers to each name of a batch.
    op.create_index(
        "ix_incoming_transfers_store_path_status", "incoming_transfers", ["store_path", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_incoming_transfers_store_path_status", "incoming_transfers")
    op.drop_index("ix_incoming_transfers_callback_pending_next_callback_at", "incoming_transfers")
    op.drop_index("ix_files_create_time_name", "files")
