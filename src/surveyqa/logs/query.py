"""The filters of ``surveyqa logs show``, as SQL over the indexed columns.

DMTN-085 §4.2 asks for five ways into the logs: one execution's messages, messages at a chosen
level, one process / thread in time order, executions that ended badly (`failures`), and search by
regular expression and time range. Each is a filter here, and they combine. A regular expression
is checked by the database (PostgreSQL ``~``, SQLite ``REGEXP`` with Python's ``re``); on SQLite
its literal parts of three or more characters are first looked up in the FTS5 trigram index, so
that the expression is only tried on rows that contain them (unless a time range is given: the
time index then narrows the rows, and a common literal would only add work).
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # the stdlib parser (sre_parse is its deprecated alias)
from dataclasses import dataclass, field

import sqlalchemy as sa

from surveyqa.errors import SurveyQAError

from .db import record_t, run_t
from .records import DATA_ID_COLUMNS, level_number, to_epoch

__all__ = ["LogQuery", "parse_where", "literal_parts"]

_STRING_KEYS = {"instrument", "skymap", "band"}


@dataclass
class LogQuery:
    """Which records to show; every field is optional and they combine (AND).

    ``since`` / ``until`` are ISO 8601 times (UTC when no zone is given) or seconds since 1970.
    """

    runs: list[str] | None = None
    level: str | int | None = None
    task: str | None = None
    where: str | None = None
    grep: str | None = None
    since: str | float | None = None
    until: str | float | None = None
    host: str | None = None
    process: int | None = None
    thread: str | None = None
    limit: int | None = None
    data_id: dict = field(default_factory=dict)

    def conditions(self, dialect: str) -> list:
        c = record_t.c
        out = []
        if self.runs is not None:
            out.append(c.run_id.in_(sa.select(run_t.c.id).where(run_t.c.name.in_(self.runs))))
        if self.level is not None:
            out.append(c.levelno >= level_number(self.level))
        if self.task:
            out.append(c.task == self.task)
        for key, values in {**parse_where(self.where), **{k: [v] for k, v in self.data_id.items()}}.items():
            out.append(getattr(c, key).in_(values) if len(values) > 1 else getattr(c, key) == values[0])
        for name, value, op in (("since", self.since, "ge"), ("until", self.until, "le")):
            if value is not None:
                try:
                    t = to_epoch(value)
                except ValueError as exc:
                    raise SurveyQAError(f"--{name} {value!r} is not a time",
                                        "give ISO 8601, e.g. 2026-01-31T12:00:00 (UTC) or 2026-01-31") from exc
                out.append(c.time >= t if op == "ge" else c.time <= t)
        if self.host:
            out.append(c.host == self.host)
        if self.process is not None:
            out.append(c.process == int(self.process))
        if self.thread:
            out.append(c.thread == self.thread)
        if self.grep:
            try:
                re.compile(self.grep)
            except re.error as exc:
                raise SurveyQAError(f"--grep {self.grep!r} is not a regular expression: {exc}") from exc
            if dialect == "postgresql":
                out.append(c.message.op("~")(self.grep))
            else:
                # bounded in time, the time index narrows best; unbounded, the trigram index does
                parts = literal_parts(self.grep) if self.since is None and self.until is None else []
                if parts:
                    match = " AND ".join('"' + p.replace('"', '""') + '"' for p in parts)
                    out.append(c.id.in_(sa.text("SELECT rowid FROM log_record_fts WHERE log_record_fts MATCH :fts")
                                        .bindparams(fts=match)))
                out.append(c.message.op("REGEXP")(self.grep))
        return out


_WHERE_ITEM = re.compile(r"^\s*(\w+)\s*(?:=\s*('[^']*'|\"[^\"]*\"|[-\w.]+)|\s+IN\s*\(([^)]*)\))\s*$", re.I)


def parse_where(where: str | None) -> dict[str, list]:
    """``visit = 123 AND detector IN (1, 2)`` as ``{"visit": [123], "detector": [1, 2]}``.

    Data ID keys only (those with a column: instrument, skymap, tract, patch, visit, exposure,
    detector, band), ``=`` and ``IN``, joined by AND: the Butler's own expression language,
    restricted to what a log record's data ID has.
    """
    if not where or not where.strip():
        return {}
    out: dict[str, list] = {}
    for item in re.split(r"\s+AND\s+", where.strip(), flags=re.I):
        m = _WHERE_ITEM.match(item)
        if not m:
            raise SurveyQAError(f"cannot read --where {where!r} at {item.strip()!r}",
                                "write KEY = VALUE or KEY IN (V1, V2), joined by AND, e.g. \"visit = 1228 AND detector = 42\"")
        key = m.group(1).lower()
        if key not in DATA_ID_COLUMNS:
            raise SurveyQAError(f"--where: {key!r} is not a data ID key of the logs",
                                f"use {', '.join(DATA_ID_COLUMNS)}")
        raw = [m.group(2)] if m.group(2) is not None else [v for v in m.group(3).split(",") if v.strip()]
        values = []
        for v in raw:
            v = v.strip().strip("'\"")
            if key in _STRING_KEYS:
                values.append(v)
            else:
                try:
                    values.append(int(v))
                except ValueError:
                    raise SurveyQAError(f"--where: {key} = {v!r} is not an integer") from None
        out[key] = values
    return out


def literal_parts(pattern: str) -> list[str]:
    """Substrings (3+ characters) that every match of ``pattern`` contains: what a trigram index can look up.

    Only the top level of the expression is read: a pattern with an alternation there, or with
    flags, gives none (every row is then tried).
    """
    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return []
    parts, current = [], []
    for op, arg in parsed:
        if op is sre_parse.LITERAL:
            current.append(chr(arg))
            continue
        if op is sre_parse.BRANCH or (op is sre_parse.SUBPATTERN and arg[1]):  # alternation, or inline flags
            return []
        if current:
            parts.append("".join(current))
            current = []
    if current:
        parts.append("".join(current))
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return []
    return [p for p in parts if len(p) >= 3]
