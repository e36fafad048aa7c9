"""Failure classes: failed executions grouped by exception type and message pattern.

RTN-041 §4 found hundreds of DP0.2 failures that were a handful of causes; the same cause gives
messages that differ only in numbers, dataset IDs and file names. The pattern masks those, so
that one cause is one class: UUIDs and long hex strings become ``<id>``, the file part of a path
``<file>`` (its folder is kept: it often names the dataset type), numbers ``<n>``.
This module is pure (no database, no Butler): the CLI, the web view and the tests share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["message_pattern", "FailureClass", "classify"]

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b")
_PATH = re.compile(r"((?:file://)?(?:/[^/\s'\":,)]+)*/)([^/\s'\":,)]+)")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def message_pattern(message: str | None) -> str:
    """The message with what differs between quanta of one cause masked: its first line only."""
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<id>", text)
    text = _PATH.sub(lambda m: _NUMBER.sub("<n>", m.group(1)) + "<file>", text)
    return _NUMBER.sub("<n>", text)


@dataclass
class FailureClass:
    """Failed executions sharing exception type and message pattern.

    ``first_seen`` / ``last_seen`` are seconds since 1970 UTC (when the failures happened, or
    were first ingested when the time is unknown); ``active`` is True when a failure of the class
    is in a run that is still going.
    """

    exception: str
    pattern: str
    quanta: list[dict] = field(default_factory=list)
    first_seen: float | None = None
    last_seen: float | None = None
    runs: list[str] = field(default_factory=list)
    active: bool = False
    example: str | None = None

    @property
    def count(self) -> int:
        return len(self.quanta)

    def as_dict(self) -> dict:
        return {"exception": self.exception, "pattern": self.pattern, "count": self.count,
                "first_seen": self.first_seen, "last_seen": self.last_seen, "runs": self.runs, "active": self.active,
                "example": self.example, "quanta": self.quanta}


def classify(failures: list[dict]) -> list[FailureClass]:
    """Group failures into classes, the largest first.

    Parameters
    ----------
    failures : list of dict
        Each with ``exc_type``, ``message``, ``task``, ``data_id`` (dict) and optionally ``run``,
        ``time`` (s since 1970), ``active`` (bool), ``traceback``.
    """
    classes: dict[tuple[str, str], FailureClass] = {}
    for f in failures:
        exception = f.get("exc_type") or "unknown"
        key = (exception, message_pattern(f.get("message")))
        c = classes.get(key)
        if c is None:
            c = classes[key] = FailureClass(exception, key[1], example=f.get("message"))
        quantum = {"task": f.get("task"), "data_id": dict(f.get("data_id") or {})}
        for extra in ("run", "status", "message"):
            if f.get(extra) is not None:
                quantum[extra] = f[extra]
        c.quanta.append(quantum)
        t = f.get("time")
        if t is not None:
            c.first_seen = t if c.first_seen is None else min(c.first_seen, t)
            c.last_seen = t if c.last_seen is None else max(c.last_seen, t)
        if f.get("run") and f["run"] not in c.runs:
            c.runs.append(f["run"])
        c.active = c.active or bool(f.get("active"))
    return sorted(classes.values(), key=lambda c: (-c.count, c.exception, c.pattern))
