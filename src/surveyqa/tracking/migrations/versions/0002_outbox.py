"""The outbox: pending regression checks of stored runs, one delivery row per alert and recipient,
and a covering index for the checks' reads of the latest values.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_check",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alert.id"), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.DateTime, nullable=False),
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("alert_id", "channel", "target", name="uq_delivery"),
    )
    op.create_index("ix_delivery_status_next", "delivery", ["status", "next_attempt"])
    # the regression checks read (run, value) of the latest points of each series: from the index alone
    op.create_index("ix_value_series_time_value", "value", ["series_id", "run_time", "run_id", "value"])


def downgrade() -> None:
    op.drop_index("ix_value_series_time_value", "value")
    op.drop_table("delivery")
    op.drop_table("pending_check")
