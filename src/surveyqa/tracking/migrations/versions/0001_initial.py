"""The first tracking schema: metrics, specs, runs, packages, blobs, data IDs, series, values,
tokens, subscriptions and alerts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("package", sa.String(100), nullable=False),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("tags", sa.JSON, nullable=True),
        sa.Column("reference", sa.JSON, nullable=True),
        sa.Column("higher_is_better", sa.Boolean, nullable=True),
    )
    op.create_table(
        "spec",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(300), nullable=False, unique=True),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("operator", sa.String(4), nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("unit", sa.String(100), nullable=True),
        sa.Column("metadata_query", sa.JSON, nullable=True),
        sa.Column("tags", sa.JSON, nullable=True),
    )
    op.create_index("ix_spec_metric", "spec", ["metric"])
    op.create_table(
        "run",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("dataset", sa.String(300), nullable=False),
        sa.Column("pipeline", sa.String(300), nullable=True),
        sa.Column("env_name", sa.String(100), nullable=True),
        sa.Column("ci_id", sa.String(200), nullable=True),
        sa.Column("ci_url", sa.Text, nullable=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("submitted", sa.DateTime, nullable=False),
        sa.Column("repo", sa.Text, nullable=True),
        sa.Column("collection", sa.Text, nullable=True),
        sa.Column("meta", sa.JSON, nullable=True),
        sa.Column("config", sa.JSON, nullable=True),
        sa.Column("job_metrics", sa.JSON, nullable=True),
        sa.Column("job_specs", sa.JSON, nullable=True),
    )
    op.create_index("ix_run_dataset", "run", ["dataset"])
    op.create_index("ix_run_time", "run", ["time"])
    op.create_table(
        "package",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=True),
        sa.Column("git_sha", sa.String(64), nullable=True),
        sa.Column("git_url", sa.Text, nullable=True),
        sa.Column("git_branch", sa.String(200), nullable=True),
        sa.UniqueConstraint("run_id", "name", name="uq_package_run_name"),
    )
    op.create_table(
        "blob",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
        sa.Column("identifier", sa.String(100), nullable=False),
        sa.Column("name", sa.String(300), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("run_id", "identifier", name="uq_blob_run_identifier"),
    )
    op.create_table(
        "data_id",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(1000), nullable=False, unique=True),
    )
    op.create_table(
        "data_id_item",
        sa.Column("data_id_id", sa.Integer, sa.ForeignKey("data_id.id"), primary_key=True),
        sa.Column("key", sa.String(50), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_index("ix_data_id_item_key_value", "data_id_item", ["key", "value"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("metric_id", sa.Integer, sa.ForeignKey("metric.id"), nullable=False),
        sa.Column("data_id_id", sa.Integer, sa.ForeignKey("data_id.id"), nullable=False),
        sa.Column("dataset", sa.String(300), nullable=False),
        sa.UniqueConstraint("metric_id", "data_id_id", "dataset", name="uq_series"),
    )
    op.create_table(
        "value",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id"), nullable=False),
        sa.Column("run_time", sa.DateTime, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("n", sa.BigInteger, nullable=True),
        sa.Column("identifier", sa.String(100), nullable=True),
        sa.Column("blob_refs", sa.JSON, nullable=True),
        sa.Column("level", sa.String(20), nullable=True),
        sa.Column("selection", sa.String(200), nullable=True),
        sa.Column("aggregation", sa.String(100), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.UniqueConstraint("run_id", "series_id", name="uq_value_run_series"),
    )
    op.create_index("ix_value_run_id", "value", ["run_id"])
    op.create_index("ix_value_series_time", "value", ["series_id", "run_time"])
    op.create_table(
        "token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "subscription",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.UniqueConstraint("metric", "channel", "target", name="uq_subscription"),
    )
    op.create_index("ix_subscription_metric", "subscription", ["metric"])
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id"), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("first_bad_run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=True),
        sa.Column("last_good_run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=True),
        sa.Column("before", sa.Float, nullable=True),
        sa.Column("after", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("code_changes", sa.JSON, nullable=True),
        sa.Column("deliveries", sa.JSON, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("closed", sa.DateTime, nullable=True),
    )
    op.create_index("ix_alert_series_id", "alert", ["series_id"])


def downgrade() -> None:
    for table in ("alert", "subscription", "token", "value", "series", "data_id_item", "data_id", "blob", "package", "run", "spec", "metric"):
        op.drop_table(table)
