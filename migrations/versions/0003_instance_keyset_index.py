"""instances (store_id, created_time, id): the keyset of clone and integrity pages

Revision ID: 0003
Revises: 0002

With ``id`` in the index, a page's ``(created_time, id) > (...)`` condition is an index
condition and the ORDER BY ... LIMIT stops after one page of rows. Without it, PostgreSQL
read and sorted the whole remaining window for every page (77 ms against 2 ms per page of
256 when many instances share a created_time). The new index serves every use of the old.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_instances_store_id_created_time_id", "instances", ["store_id", "created_time", "id"]
    )
    op.drop_index("ix_instances_store_id_created_time", "instances")


def downgrade() -> None:
    op.create_index("ix_instances_store_id_created_time", "instances", ["store_id", "created_time"])
    op.drop_index("ix_instances_store_id_created_time_id", "instances")
