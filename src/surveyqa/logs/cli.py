"""`surveyqa logs`: collect, search and classify the logs and failures of pipeline executions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from surveyqa.errors import SurveyQAError

__all__ = ["logs"]

_DB_HELP = "Log database URL (default: $SURVEYQA_LOGS_DB, else a SQLite file beside TARGET: TARGET.logs.sqlite3)."


def _is_repo(target: str) -> bool:
    return (Path(target) / "butler.yaml").is_file()


def _open(target: str, db: str | None):
    from .store import LogStore, default_db_url

    return LogStore(db or os.environ.get("SURVEYQA_LOGS_DB") or default_db_url(target))


def _say_report(report, what: str) -> None:
    for bad in report.bad:
        click.echo(f"skipped {bad}", err=True)
    click.echo(f"{what}: {report.sources} new sources, {report.records} records, {report.executions} executions"
               f"{f', {len(report.bad)} unreadable' if report.bad else ''} ({report.seconds:.1f} s)")


def _runs(store, target: str, collection: str | None) -> list[str] | None:
    """The runs to show: those of ``collection`` in the repository (ingested first if it never was)."""
    if not _is_repo(target):  # a file: what is new in it is stored first (cheap), then its whole database is shown
        report = store.ingest_file(target)
        for bad in report.bad:
            click.echo(f"skipped {bad}", err=True)
        return None
    if not collection:
        raise SurveyQAError(f"{target} is a repository: which collection?", "give --collection, e.g. qa/run1")
    runs = store.ingested(target, collection)
    if runs is None:
        report = store.ingest_repo(target, collection)
        for bad in report.bad:
            click.echo(f"skipped {bad}", err=True)
        runs = store.ingested(target, collection)
    return runs


@click.group("logs")
def logs():
    """Logs and failures of pipeline executions: ingest into a database, search, classify failures.

    \b
    Example:
        surveyqa logs ingest repo --collection qa/run1
        surveyqa logs show repo --collection qa/run1 --level ERROR --where "visit = 1228"
        surveyqa logs failures repo --collection qa/run1
    """


@logs.command("ingest")
@click.argument("target", type=click.Path(exists=True))
@click.option("--collection", "-c", help="Collection of the repository (needed for a repository).")
@click.option("--db", help=_DB_HELP)
@click.option("--follow", is_flag=True, help="Keep ingesting what is new (every --interval s) until the run "
                                             "is complete (a repository) or Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between two looks with --follow.")
def ingest(target, collection, db, follow, interval):
    """Store the logs of TARGET: a Butler repository (its <label>_log datasets, qaQuantumStatus, run_provenance),
    a pipetask --log-file or --summary JSON file, or a JSON-lines file. Only what is new is stored.

    \b
    Example:
        surveyqa logs ingest repo --collection qa/run1 --follow
        surveyqa logs ingest pipetask-log.json --db sqlite:///logs.db
    """
    store = _open(target, db)
    try:
        if _is_repo(target):
            if not collection:
                raise SurveyQAError(f"{target} is a repository: which collection?", "give --collection, e.g. qa/run1")

            def once():
                return store.ingest_repo(target, collection)

            def done():
                states = store.run_states()
                runs = store.ingested(target, collection) or []
                return bool(runs) and all(states.get(r) != "in progress" for r in runs)
        else:
            def once():
                return store.ingest_file(target, follow=follow)

            def done():
                return False
        if follow:
            report = store.follow(once, done, interval=interval, say=lambda r: _say_report(r, "ingested"))
        else:
            report = once()
        _say_report(report, f"ingested {target}")
    finally:
        store.close()


@logs.command("show")
@click.argument("target", type=click.Path(exists=True))
@click.option("--collection", "-c", help="Collection of the repository.")
@click.option("--db", help=_DB_HELP)
@click.option("--level", "-l", help="Lowest level shown: DEBUG, VERBOSE, INFO, WARNING, ERROR, CRITICAL.")
@click.option("--task", "-t", help="Task label, e.g. qaVisit.")
@click.option("--where", "-d", help="Data ID, e.g. \"visit = 1228 AND detector IN (41, 42)\".")
@click.option("--grep", "-g", help="Regular expression searched in the messages.")
@click.option("--since", help="From this time (ISO 8601, UTC if no zone).")
@click.option("--until", help="Until this time (ISO 8601, UTC if no zone).")
@click.option("--host", help="Only this host.")
@click.option("--process", type=int, help="Only this process id (time-ordered messages of one process).")
@click.option("--thread", help="Only this thread.")
@click.option("--limit", type=int, help="At most this many records.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"records\": [...]} as JSON.")
def show(target, collection, db, level, task, where, grep, since, until, host, process, thread, limit, as_json):
    """Print log records in time order, filtered; a repository not yet ingested is ingested first.

    \b
    Example:
        surveyqa logs show repo -c qa/run1 --task qaVisit --where "visit = 1228"
        surveyqa logs show repo -c qa/run1 --grep "cannot read .* file" --since 2026-01-31T00:00
        surveyqa logs show repo -c qa/run1 --process 4242 --json
    """
    from .query import LogQuery

    store = _open(target, db)
    try:
        runs = _runs(store, target, collection)
        records = store.records(LogQuery(runs=runs, level=level, task=task, where=where, grep=grep, since=since,
                                         until=until, host=host, process=process, thread=thread, limit=limit))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"records": records}, indent=1, default=str))
        return
    for r in records:
        place = " ".join(f"{k}={v}" for k, v in r["data_id"].items())
        click.echo(f"{r['time']} {r['level']:8s} {r['task'] or '-'} {place or '-'} {r['logger']}: {r['message']}")
        if r["traceback"]:
            click.echo("    " + r["traceback"].rstrip().replace("\n", "\n    "))
    click.echo(f"{len(records)} records")


@logs.command("failures")
@click.argument("target", type=click.Path(exists=True))
@click.option("--collection", "-c", help="Collection of the repository.")
@click.option("--db", help=_DB_HELP)
@click.option("--executions", is_flag=True, help="List every execution that ended badly (exit status, exception, "
                                                 "traceback) instead of classes.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"classes\": [...]} (or {\"executions\": [...]}) as JSON.")
def failures(target, collection, db, executions, as_json):
    """Failed quanta in classes (exception type and message with numbers and IDs masked): count, first and
    last seen, and the quanta of each. A class in a run still going is marked NEW.

    \b
    Example:
        surveyqa logs failures repo -c qa/run1
        surveyqa logs failures repo -c qa/run1 --executions --json
    """
    import datetime as dt

    store = _open(target, db)
    try:
        runs = _runs(store, target, collection)
        if executions:
            rows = store.executions(runs)
            if as_json:
                click.echo(json.dumps({"executions": rows}, indent=1, default=str))
                return
            for e in rows:
                click.echo(f"{e['status']:8s} exit={e['exit_code'] if e['exit_code'] is not None else '-'} "
                           f"{e['task']} {e['data_id']}: {e['exc_type'] or ''}: {e['message'] or ''}")
                if e["traceback"]:
                    click.echo("    " + e["traceback"].rstrip().replace("\n", "\n    "))
            click.echo(f"{len(rows)} executions ended badly")
            return
        classes = store.failure_classes(runs)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"classes": [c.as_dict() for c in classes]}, indent=1, default=str))
        return

    def when(t):
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t else "?"

    for c in classes:
        click.echo(f"{c.count:5d} {c.exception}: {c.pattern}{'  NEW (run in progress)' if c.active else ''}")
        click.echo(f"      first {when(c.first_seen)}, last {when(c.last_seen)}")
        for q in c.quanta[:10]:
            click.echo(f"      {q['task']} " + " ".join(f"{k}={v}" for k, v in q["data_id"].items()))
        if c.count > 10:
            click.echo(f"      ... and {c.count - 10} more")
    click.echo(f"{len(classes)} failure classes, {sum(c.count for c in classes)} failed quanta")
