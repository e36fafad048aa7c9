"""Message templates (digit runs as ``0``): what PostgreSQL's trigram index is built over, instead of every message.

A search picks the templates holding its literal parts, so a part in a message must be in that
message's template once both are templates; and a database made before the templates must answer
the same once opened.
"""

from __future__ import annotations

import re

import pytest

from surveyqa.logs import LogQuery, LogStore
from surveyqa.logs.records import LogRecord, message_template

MESSAGES = ["Matched 5 of 91234 stars", "visit 0123 took 1.25e3 s", "x9y", "9", "007 agents at 12:05:33",
            "dataset 01a23f1c-bd52-76e4-9d96-307aaa2fb166 read", "café 42 noir", "no digits at all", "",
            "a\x00b 12"]


def test_a_literal_in_a_message_is_in_its_template():
    for message in MESSAGES:
        template = message_template(message)
        for i in range(len(message)):
            for j in range(i + 1, len(message) + 1):
                part = message[i:j]
                if "\x00" not in part:
                    assert message_template(part) in template, (message, part)
    assert message_template("Matched 5 of 91234 stars") == "Matched 0 of 0 stars"


@pytest.mark.postgres
def test_a_database_made_before_the_templates_answers_the_same_once_opened(pg_url):
    import sqlalchemy as sa

    from surveyqa.logs.db import open_log_db, write_source

    messages = [m for m in MESSAGES if "\x00" not in m]
    engine = open_log_db(pg_url)
    with engine.begin() as conn:
        write_source(conn, "test:old", "test", "test",
                     [LogRecord("r", "t", {"visit": i}, 1000.0 + i, 20, "l", m) for i, m in enumerate(messages)], [])
        # as the schema was: no template column or table, a trigram index over every message
        conn.exec_driver_sql("ALTER TABLE log_record DROP COLUMN template_id")
        conn.exec_driver_sql("DROP TABLE log_template")
        conn.exec_driver_sql("CREATE INDEX ix_log_record_message_trgm ON log_record USING gin (message gin_trgm_ops)")
    engine.dispose()
    store = LogStore(pg_url)
    with store.engine.begin() as conn:
        write_source(conn, "test:new", "test", "test",
                     [LogRecord("r", "t", {"visit": 99}, 2000.0, 20, "l", "Matched 7 of 95555 stars")], [])
    for pattern in (r"Matched \d+ of 9\d{4} stars", r"took 1\.25", "café 4", "12:05", r"0\d+ agents", "digits at",
                    "bd52-76e4"):
        expected = [m for m in messages + ["Matched 7 of 95555 stars"] if re.search(pattern, m)]
        assert [r["message"] for r in store.records(LogQuery(grep=pattern))] == expected, pattern
    indexes = {i["name"] for i in sa.inspect(store.engine).get_indexes("log_record")}
    assert "ix_log_record_message_trgm" not in indexes and "ix_log_record_template" in indexes
    store.close()
