"""One log record and one execution (a quantum's attempt), whatever they were collected from.

Every collector turns what it reads (Butler ``<label>_log`` datasets, pipetask's ``--log-file`` and
``--summary`` JSON, a JSON-lines stream) into these two small types, so that the database layer
and the queries know only one shape. Data IDs are kept in a canonical order and text form
(``instrument=HSC visit=1228 detector=42``) so that the same quantum seen by two collectors is
one execution.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

__all__ = ["LogRecord", "Execution", "canonical_data_id", "data_id_text", "parse_label", "level_number",
           "level_name", "to_epoch", "message_template", "DATA_ID_COLUMNS"]

#: Data ID keys kept in their own (indexed) columns, and the order data IDs are written in.
DATA_ID_COLUMNS = ("instrument", "skymap", "tract", "patch", "visit", "exposure", "detector", "band")
_INT_KEYS = {"tract", "patch", "visit", "exposure", "detector"}
#: Keys implied by others (a visit implies its band, day_obs and physical_filter): left out of a data ID.
_IMPLIED = {"day_obs", "physical_filter", "group"}
#: lsst.utils.logging adds VERBOSE (15) and TRACE (5) to Python's levels.
_LEVELS = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARNING": 30, "WARN": 30, "INFO": 20, "VERBOSE": 15,
           "DEBUG": 10, "TRACE": 5, "NOTSET": 0}
_NAMES = {50: "CRITICAL", 40: "ERROR", 30: "WARNING", 20: "INFO", 15: "VERBOSE", 10: "DEBUG", 5: "TRACE", 0: "NOTSET"}


@dataclass
class LogRecord:
    """One log message: where it came from (run, task label, data ID, host / process / thread), when
    (``time``, seconds since 1970 UTC), how bad (``levelno``), and what (logger, message, exception)."""

    run: str | None
    task: str | None
    data_id: dict
    time: float
    levelno: int
    logger: str
    message: str
    host: str | None = None
    process: int | None = None
    process_name: str | None = None
    thread: str | None = None
    exc_type: str | None = None
    traceback: str | None = None


@dataclass
class Execution:
    """One quantum's attempt: its status (``success``, ``failed``, ``blocked``, ``timeout``), exit code
    when a process ran it, and its exception with traceback when it ended badly."""

    run: str | None
    task: str
    data_id: dict
    status: str
    exit_code: int | None = None
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    start: float | None = None
    end: float | None = None
    extra: dict = field(default_factory=dict)


def canonical_data_id(data_id: dict) -> dict:
    """The data ID with implied keys dropped and the usual keys first, integers as integers."""
    items = {str(k): v for k, v in dict(data_id or {}).items() if k not in _IMPLIED and v is not None}
    if "band" in items and ("visit" in items or "exposure" in items):
        del items["band"]  # implied by the visit
    for key in _INT_KEYS & items.keys():
        try:
            items[key] = int(items[key])
        except (TypeError, ValueError):
            pass
    order = {k: i for i, k in enumerate(DATA_ID_COLUMNS)}
    return dict(sorted(items.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def data_id_text(data_id: dict, canonical: bool = False) -> str:
    """``instrument=HSC visit=1228 detector=42``: the canonical data ID as stored and shown.

    ``canonical``: ``data_id`` is already what `canonical_data_id` made (not made again: an
    ingest makes thousands per source).
    """
    return " ".join(f"{k}={v}" for k, v in (data_id if canonical else canonical_data_id(data_id)).items())


_DIGITS = re.compile(r"[0-9]+")


def message_template(text: str) -> str:
    """The message with each run of ASCII digits written as one ``0``: what a search looks up
    instead of the message (pipeline messages differ mostly by their numbers).

    Sound for substrings: when ``p`` is in ``m``, ``message_template(p)`` is in
    ``message_template(m)`` (a digit run inside ``p`` is a whole run of ``m``, one at its edge is
    part of a run of ``m``, and both become ``0``). NUL is left out, as PostgreSQL's text cannot
    hold it.
    """
    return _DIGITS.sub("0", text.replace("\x00", "") if "\x00" in text else text)


_LABEL = re.compile(r"^(?P<label>[^:{]+)(?::\{(?P<data_id>.*)\})?$", re.S)
_ITEM = re.compile(r"(\w+):\s*(?:'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"|(-?\d+))")


def parse_label(label: str | None) -> tuple[str | None, dict]:
    """The task label and data ID of a record's MDC ``LABEL`` (``qaVisit:{instrument: 'HSC', visit: 1228}``),
    as `lsst.pipe.base.log_capture` writes it."""
    if not label:
        return None, {}
    m = _LABEL.match(label.strip())
    if not m:
        return label, {}
    data_id = {}
    for key, single, double, number in _ITEM.findall(m.group("data_id") or ""):
        data_id[key] = int(number) if number else (single if single or not double else double)
    return m.group("label").strip(), data_id


def level_number(level: str | int) -> int:
    """A level given by name (``error``, ``VERBOSE``) or number."""
    if isinstance(level, int):
        return level
    text = str(level).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.upper() not in _LEVELS:
        from surveyqa.errors import SurveyQAError

        raise SurveyQAError(f"unknown log level {level!r}", f"give one of {', '.join(n for n in _NAMES.values())}")
    return _LEVELS[text.upper()]


def level_name(levelno: int) -> str:
    return _NAMES.get(int(levelno)) or logging.getLevelName(int(levelno))


def to_epoch(value) -> float:
    """Seconds since 1970 UTC from a datetime, an ISO 8601 string (naive means UTC) or a number."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise ValueError(f"not a time: {value!r}")
