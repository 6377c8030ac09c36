"""incoming_transfers.verified_stat: the stat of a staged file verified as it arrived

Revision ID: 0004
Revises: 0003

The http upload endpoint hashes every byte as it arrives; it now records the staged file's
stat (device, inode, size, mtime and ctime in nanoseconds) so that receive_clone does not
read and hash the same bytes a second time while the file is unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("incoming_transfers", sa.Column("verified_stat", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("incoming_transfers") as table:
        table.drop_column("verified_stat")
