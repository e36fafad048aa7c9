"""Log aggregation and failure monitoring for pipeline executions (DMTN-085 §4.2, QAWG-REC-5).

Collectors (`collect`) read Butler ``<label>_log`` datasets, ``qaQuantumStatus`` and
``run_provenance``, pipetask's ``--log-file`` / ``--summary`` JSON and JSON-lines streams; the
database layer (`db`) stores them with indexes on SQLite or PostgreSQL; `query` filters them
and `classify` groups failures into classes; `store.LogStore` is the Python API the CLI wraps.
"""

from .classify import FailureClass, classify, message_pattern
from .query import LogQuery
from .store import IngestReport, LogStore, default_db_url

__all__ = ["LogStore", "LogQuery", "IngestReport", "FailureClass", "classify", "message_pattern", "default_db_url"]
