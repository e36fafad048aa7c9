"""The validation report for a terminal, as JSON and as one self-contained HTML page.

All three render the same `ValidationReport.to_dict`, so what a terminal says and what a CI job
parses cannot disagree.
"""

from __future__ import annotations

import html
import json

__all__ = ["text_report", "json_report", "html_report"]


def _data_id(data_id: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in data_id.items()) or "(all)"


def _pct(n_bad: int, n_rows: int) -> str:
    return f"{100.0 * n_bad / n_rows:.2f} %" if n_rows else "-"


def _short(names: list[str], limit: int = 8) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def text_report(report, limit: int = 30) -> str:
    """Lines for a terminal: what was checked, every failure, what the schema and data disagree on."""
    d = report.to_dict()
    out = [f"schema {d['schema']}: " + ", ".join(f"{x['dataset_type']} -> {x['table']} ({x['n_datasets']} datasets, "
                                                 f"{x['n_rows']:,} rows)" for x in d["datasets"])]
    if d["unmapped_datasets"]:
        out.append(f"not described by the schema (not checked): {', '.join(d['unmapped_datasets'])}")
    out.append(f"{d['columns_checked']} columns checked, {d['checks_run']:,} checks, "
               f"{d['row_checks']:,} row-checks ({d['row_checks_from_footers']:,} answered by Parquet statistics) "
               f"in {d['seconds']:.1f} s")
    for f in d["failures"][:limit]:
        out.append(f"FAIL {f['dataset_type']} {_data_id(f['data_id'])} {f['column']} {f['check']}: "
                   f"{f['n_bad']:,} of {f['n_rows']:,} rows ({_pct(f['n_bad'], f['n_rows'])}); {f['detail']}")
    if len(d["failures"]) > limit:
        out.append(f"... {len(d['failures']) - limit} more failures (--json lists them all)")
    unknown: dict[str, list[str]] = {}
    for u in d["unknown_columns"]:
        unknown.setdefault(u["dataset_type"], []).append(u["column"])
    for dt, cols in unknown.items():
        out.append(f"unknown columns (not in the schema, not failures) in {dt}: {_short(cols)}")
    for dt, cols in d["missing_columns"].items():
        if cols:
            out.append(f"schema columns {dt} lacks (not failures): {len(cols)}: {_short(cols, 5)}")
    if d["warnings"]:
        kinds: dict[str, int] = {}
        for w in d["warnings"]:
            kinds[w["check"]] = kinds.get(w["check"], 0) + 1
        out.append("warnings: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + " (--json lists them)")
    if d["stored"]:
        s = d["stored"]
        out.append(f"stored {s['n_values']} {s['metric']} values in {s['run']}, chained as {s['collection']}")
    n = len(d["failures"])
    out.append(f"{n} check{'' if n == 1 else 's'} failed" if n else "all checks passed")
    return "\n".join(out)


def json_report(report) -> str:
    return json.dumps(report.to_dict(), indent=1, default=str)


def html_report(report) -> str:
    """One HTML page: a summary, the failures, the unknown and missing columns."""
    d = report.to_dict()
    e = html.escape

    def table(rows: list[dict], cols: list[str]) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(_data_id(r[c]) if c == 'data_id' else str(r[c]))}</td>"
                                        for c in cols) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    cols = ["dataset_type", "data_id", "column", "check", "n_bad", "n_rows", "detail"]
    n = len(d["failures"])
    verdict = f"{n} check{'' if n == 1 else 's'} failed" if n else "all checks passed"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>surveyqa validate</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.fail{color:#b00}.pass{color:#070}</style>",
        "</head><body>",
        f"<h1>Validation against schema {e(d['schema'])}</h1>",
        f"<p class='{'pass' if d['passed'] else 'fail'}' id='verdict'>{e(verdict)}</p>",
        f"<p>{e(str(d['repo']))} {e(str(d['collection']))}: {d['columns_checked']} columns checked, "
        f"{d['checks_run']} checks, {d['row_checks']} row-checks in {d['seconds']:.1f} s</p>",
        "<h2>Datasets</h2>", table(d["datasets"], ["dataset_type", "table", "n_datasets", "n_rows"]),
        "<h2>Failures</h2>", table(d["failures"], cols) if d["failures"] else "<p>none</p>",
        "<h2>Warnings</h2>", table(d["warnings"], cols) if d["warnings"] else "<p>none</p>",
        "<h2>Columns the schema does not describe</h2>",
        table(d["unknown_columns"], ["dataset_type", "column"]) if d["unknown_columns"] else "<p>none</p>",
        "<h2>Schema columns the data lack</h2>",
        "".join(f"<p><b>{e(dt)}</b> ({len(c)}): {e(', '.join(c))}</p>" for dt, c in d["missing_columns"].items() if c),
    ]
    if d["unmapped_datasets"]:
        parts.append(f"<h2>Dataset types no schema table describes</h2><p>{e(', '.join(d['unmapped_datasets']))}</p>")
    if d["stored"]:
        parts.append(f"<p>Stored {d['stored']['n_values']} {e(d['stored']['metric'])} values in "
                     f"{e(d['stored']['run'])} (chained as {e(d['stored']['collection'])}).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
