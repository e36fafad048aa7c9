"""The filters of ``surveyqa logs show``, as SQL over the indexed columns.

DMTN-085 §4.2 asks for five ways into the logs: one execution's messages, messages at a chosen
level, one process / thread in time order, executions that ended badly (`failures`), and search by
regular expression and time range. Each is a filter here, and they combine. A regular expression
is checked by the database (PostgreSQL ``~``, SQLite ``REGEXP`` with Python's ``re``) after its
literal parts of three or more characters are tested as substrings (``instr`` / ``strpos``, in C:
most rows fail there, before the expression is tried); on SQLite the whole words of those parts
are first looked up in the FTS5 word index, on PostgreSQL the parts as templates (`message_template`)
pick the templates that hold them, by their pg_trgm index (unless a time range is given: the time
index then narrows the rows, and a common word would only add work). Conditions on the run, task and data ID
are one look-up in ``log_key``, those on host, process and thread one in ``log_origin``.
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # the stdlib parser (sre_parse is its deprecated alias)
from dataclasses import dataclass, field

import sqlalchemy as sa

from surveyqa.errors import SurveyQAError

from .db import key_t, origin_t, record_t, run_t, template_t
from .records import DATA_ID_COLUMNS, level_number, message_template, to_epoch

__all__ = ["LogQuery", "parse_where", "literal_parts", "fts_terms"]

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

    def conditions(self, dialect: str, conn=None) -> list:
        """The filters as SQL conditions; with ``conn`` (PostgreSQL) a regex's templates are looked up
        first and given as ids, so that the planner knows how few records they have (as a subquery,
        a rare template under ``LIMIT`` made it walk the time index over all 10^7 rows: 16 s)."""
        c, k, o = record_t.c, key_t.c, origin_t.c
        out = []
        keys = []  # conditions on where a record came from: one look-up in the (small) key table
        if self.runs is not None:
            keys.append(k.run_id.in_(sa.select(run_t.c.id).where(run_t.c.name.in_(self.runs))))
        if self.task:
            keys.append(k.task == self.task)
        for key, values in {**parse_where(self.where), **{k: [v] for k, v in self.data_id.items()}}.items():
            keys.append(getattr(k, key).in_(values) if len(values) > 1 else getattr(k, key) == values[0])
        if keys:
            out.append(c.key_id.in_(sa.select(k.id).where(*keys)))
        origins = []
        if self.host:
            origins.append(o.host == self.host)
        if self.process is not None:
            origins.append(o.process == int(self.process))
        if self.thread:
            origins.append(o.thread == self.thread)
        if origins:
            out.append(c.origin_id.in_(sa.select(o.id).where(*origins)))
        if self.level is not None:
            out.append(c.levelno >= level_number(self.level))
        bounded = False
        for name, value, op in (("since", self.since, "ge"), ("until", self.until, "le")):
            if value is not None:
                try:
                    t = to_epoch(value)
                except ValueError as exc:
                    raise SurveyQAError(f"--{name} {value!r} is not a time",
                                        "give ISO 8601, e.g. 2026-01-31T12:00:00 (UTC) or 2026-01-31") from exc
                out.append(c.time >= t if op == "ge" else c.time <= t)
                bounded = True
        if self.grep:
            try:
                re.compile(self.grep)
            except re.error as exc:
                raise SurveyQAError(f"--grep {self.grep!r} is not a regular expression: {exc}") from exc
            out += _grep_conditions(self.grep, dialect, bounded, conn)
        return out


def _grep_conditions(pattern: str, dialect: str, bounded: bool, conn=None) -> list:
    """The regular expression as SQL, its literal parts first: a substring test in C rules out
    most rows before the expression itself is tried (Python's ``re`` on SQLite, per row)."""
    c = record_t.c
    parts = literal_parts(pattern)
    out = []
    # unbounded in time, the text index narrows best; bounded, the time index does and a common
    # word would only add work
    terms = [] if bounded or dialect != "sqlite" else fts_terms(parts)
    if terms:
        out.append(c.id.in_(sa.text("SELECT rowid FROM log_record_fts WHERE log_record_fts MATCH :fts")
                            .bindparams(fts=" AND ".join(terms))))
    out += [sa.func.instr(c.message, p) > 0 if dialect == "sqlite" else sa.func.strpos(c.message, p) > 0
            for p in parts]
    if dialect == "postgresql":
        if parts and not bounded:  # the templates holding every part, by their trigram index
            t = template_t.c
            templates = sa.select(t.id).where(*[t.text.contains(message_template(p), autoescape=True) for p in parts])
            out.append(c.template_id.in_(conn.execute(templates).scalars().all() if conn is not None else templates))
        # bounded, only the time index: PostgreSQL would otherwise AND a bitmap of every row of a
        # common template with the time range (as it did with a trigram index: 1.19 s against 0.11 s at 10^6)
        out.append((c.message.concat("") if bounded else c.message).op("~")(pattern))
    else:
        out.append(c.message.op("REGEXP")(pattern))
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


_WORD = re.compile(r"[A-Za-z0-9]+")


def fts_terms(parts: list[str]) -> list[str]:
    """FTS5 terms every row containing all of ``parts`` has, for the ``unicode61`` word index.

    A word of a literal is a whole indexed word only when the literal has a separator on both
    of its sides; at the literal's end it may go on (a prefix term, ``"foun"*``); at its start
    it may be the tail of a longer word, which a word index cannot look up, so it is left out.
    Only ASCII words: elsewhere the tokenizer's idea of a letter is not Python's.
    """
    terms: list[str] = []
    for part in parts:
        for m in _WORD.finditer(part):
            start, end = m.span()
            if start == 0 or not _separator(part[start - 1]):
                continue
            term = f'"{m.group()}"' if end < len(part) else f'"{m.group()}"*'
            if (end == len(part) or _separator(part[end])) and term not in terms:
                terms.append(term)
    return terms


def _separator(ch: str) -> bool:
    return ch.isascii() and not ch.isalnum()


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
