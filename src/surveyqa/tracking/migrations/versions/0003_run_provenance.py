"""A run's provenance record (configs, software, dataset IDs of its values and inputs) and, on an
alert, what changed in config and inputs between its last good and first bad run.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON, nullable=True))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("changes", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("changes")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("provenance")
