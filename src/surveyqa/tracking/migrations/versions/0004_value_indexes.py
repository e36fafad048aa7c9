"""Two indexes of the value table fewer: each was the leading part of another one.

``ix_value_series_time`` (series, time) is the start of the covering index of migration 0002
and ``ix_value_run_id`` (run) the start of the unique (run, series) constraint: every query
they served uses the longer index as well. Storing a run wrote every index once per value,
and the series-first ones at a random place each: the redundant one was a third of a
submission's storage time.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_value_series_time", "value")
    op.drop_index("ix_value_run_id", "value")


def downgrade() -> None:
    op.create_index("ix_value_run_id", "value", ["run_id"])
    op.create_index("ix_value_series_time", "value", ["series_id", "run_time"])
