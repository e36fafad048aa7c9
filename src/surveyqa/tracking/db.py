"""The tracking database: tables, engine creation and migrations.

The schema is SQLAlchemy Core (no ORM sessions to leak between requests); Alembic migrations in
``migrations/`` create it, and `open_database` runs them on every start so that a new SQLite file
or an empty PostgreSQL database is usable at once and an old one is brought up to date.

Values are stored in their metric's unit; the time of the run is copied onto each value row so
that a time series is one index range scan on ``(series_id, run_time, run_id, value)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from surveyqa.errors import SurveyQAError

__all__ = [
    "metadata",
    "metric_t",
    "spec_t",
    "run_t",
    "package_t",
    "blob_t",
    "data_id_t",
    "data_id_item_t",
    "series_t",
    "value_t",
    "token_t",
    "subscription_t",
    "alert_t",
    "pending_check_t",
    "delivery_t",
    "create_db_engine",
    "migrate",
    "open_database",
    "DEFAULT_DB_URL",
]

log = logging.getLogger(__name__)

#: Used when neither ``--db`` nor ``SURVEYQA_TRACK_DB`` is given.
DEFAULT_DB_URL = "sqlite:///surveyqa-tracking.db"

metadata = sa.MetaData()

metric_t = sa.Table(
    "metric",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("package", sa.String(100), nullable=False),
    sa.Column("unit", sa.String(100), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("tags", sa.JSON, nullable=True),
    sa.Column("reference", sa.JSON, nullable=True),
    sa.Column("higher_is_better", sa.Boolean, nullable=True),
)

spec_t = sa.Table(
    "spec",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(300), nullable=False, unique=True),
    sa.Column("metric", sa.String(200), nullable=False, index=True),
    sa.Column("type", sa.String(50), nullable=False),
    sa.Column("operator", sa.String(4), nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("unit", sa.String(100), nullable=True),
    sa.Column("metadata_query", sa.JSON, nullable=True),
    sa.Column("tags", sa.JSON, nullable=True),
)

run_t = sa.Table(
    "run",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("dataset", sa.String(300), nullable=False, index=True),
    sa.Column("pipeline", sa.String(300), nullable=True),
    sa.Column("env_name", sa.String(100), nullable=True),
    sa.Column("ci_id", sa.String(200), nullable=True),
    sa.Column("ci_url", sa.Text, nullable=True),
    sa.Column("time", sa.DateTime, nullable=False, index=True),
    sa.Column("submitted", sa.DateTime, nullable=False),
    sa.Column("repo", sa.Text, nullable=True),
    sa.Column("collection", sa.Text, nullable=True),
    sa.Column("meta", sa.JSON, nullable=True),
    sa.Column("config", sa.JSON, nullable=True),
    sa.Column("job_metrics", sa.JSON, nullable=True),
    sa.Column("job_specs", sa.JSON, nullable=True),
    # migration 0003: `surveyqa.provenance.run_record` of the run (configs, packages, dataset IDs)
    sa.Column("provenance", sa.JSON, nullable=True),
)

package_t = sa.Table(
    "package",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(200), nullable=True),
    sa.Column("git_sha", sa.String(64), nullable=True),
    sa.Column("git_url", sa.Text, nullable=True),
    sa.Column("git_branch", sa.String(200), nullable=True),
    sa.UniqueConstraint("run_id", "name", name="uq_package_run_name"),
)

blob_t = sa.Table(
    "blob",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=False),
    sa.Column("identifier", sa.String(100), nullable=False),
    sa.Column("name", sa.String(300), nullable=True),
    # The blob exactly as sent, as JSON text: lsst.verify blobs hold NaN, which JSON columns refuse.
    sa.Column("data", sa.Text, nullable=False),
    sa.UniqueConstraint("run_id", "identifier", name="uq_blob_run_identifier"),
)

data_id_t = sa.Table(
    "data_id",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(1000), nullable=False, unique=True),
)

data_id_item_t = sa.Table(
    "data_id_item",
    metadata,
    sa.Column("data_id_id", sa.Integer, sa.ForeignKey("data_id.id"), primary_key=True),
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Index("ix_data_id_item_key_value", "key", "value"),
)

series_t = sa.Table(
    "series",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("metric_id", sa.Integer, sa.ForeignKey("metric.id"), nullable=False),
    sa.Column("data_id_id", sa.Integer, sa.ForeignKey("data_id.id"), nullable=False),
    sa.Column("dataset", sa.String(300), nullable=False),
    sa.UniqueConstraint("metric_id", "data_id_id", "dataset", name="uq_series"),
)

value_t = sa.Table(
    "value",
    metadata,
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
    sa.UniqueConstraint("run_id", "series_id", name="uq_value_run_series"),  # also the index of a run's values
)

# migration 0002: the checks read the latest (run, value) of each series from this index alone; it is
# also the index of a series' time range (migration 0004 dropped the shorter ones)
sa.Index("ix_value_series_time_value", value_t.c.series_id, value_t.c.run_time, value_t.c.run_id, value_t.c.value)

token_t = sa.Table(
    "token",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

subscription_t = sa.Table(
    "subscription",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("metric", sa.String(200), nullable=False, index=True),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.UniqueConstraint("metric", "channel", "target", name="uq_subscription"),
)

alert_t = sa.Table(
    "alert",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id"), nullable=False, index=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("checks", sa.JSON, nullable=False),
    sa.Column("first_bad_run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=True),
    sa.Column("last_good_run_id", sa.Integer, sa.ForeignKey("run.id"), nullable=True),
    sa.Column("before", sa.Float, nullable=True),
    sa.Column("after", sa.Float, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("code_changes", sa.JSON, nullable=True),
    # migration 0003: config and input changes (`surveyqa.provenance.run_changes`), where both runs recorded them
    sa.Column("changes", sa.JSON, nullable=True),
    sa.Column("deliveries", sa.JSON, nullable=True),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("closed", sa.DateTime, nullable=True),
)

# The outbox (migration 0002). A run's values and its `pending_check` row are written in one
# transaction; the checks delete the row in the transaction that writes the alerts and their
# `delivery` rows, so a crash at any point leaves either the pending check or all its alerts.
pending_check_t = sa.Table(
    "pending_check",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("run.id"), primary_key=True),
    sa.Column("created", sa.DateTime, nullable=False),
)

delivery_t = sa.Table(
    "delivery",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alert.id"), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending, sending, sent, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt", sa.DateTime, nullable=False),
    sa.Column("claimed_by", sa.String(32), nullable=True),
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    sa.Column("sent_at", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("alert_id", "channel", "target", name="uq_delivery"),
    sa.Index("ix_delivery_status_next", "status", "next_attempt"),
)

_MIGRATIONS = Path(__file__).with_name("migrations")


def create_db_engine(url: str) -> Engine:
    """Return an engine for ``url``; SQLite gets WAL mode and a busy timeout for concurrent writers."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` with the Alembic scripts shipped in the package."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def open_database(url: str) -> Engine:
    """Connect to ``url`` and migrate it to the newest schema.

    Raises
    ------
    SurveyQAError
        If the database cannot be reached (wrong URL, server down).
    """
    try:
        engine = create_db_engine(url)
        migrate(engine)
    except sa.exc.ArgumentError as exc:
        raise SurveyQAError(f"cannot use database URL {url!r}: {exc}", "use e.g. sqlite:///track.db or postgresql+psycopg2://user@host/db") from exc
    except sa.exc.OperationalError as exc:
        raise SurveyQAError(f"cannot open database {url!r}: {exc.orig}", "check that the server runs and the database exists") from exc
    log.info("tracking database %s is at the newest schema", engine.url.render_as_string(hide_password=True))
    return engine
