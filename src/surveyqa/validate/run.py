"""`validate_files` and `validate_repository`: plan, scan and judge every column of every data product.

The repository side only finds the files (a dataset type's data IDs and Parquet paths through
the Butler); the checks run on the files, so the same function validates a repository, a folder
of Parquet files or a benchmark's synthetic table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from surveyqa.errors import SurveyQAError
from surveyqa.validate.checks import Check, TablePlan, plan_table
from surveyqa.validate.rules import Rules, load_rules
from surveyqa.validate.scan import FileScan, count_dangling, count_duplicates, scan_files
from surveyqa.validate.schema import SchemaSpec, load_schema

__all__ = ["CheckResult", "ValidationReport", "validate_files", "validate_repository", "TABLE_STORAGE_CLASSES"]

log = logging.getLogger(__name__)

#: Storage classes of catalog datasets (the ones a schema can describe).
TABLE_STORAGE_CLASSES = ("ArrowAstropy", "ArrowTable", "DataFrame", "ArrowNumpy", "ArrowNumpyDict", "AstropyTable")


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check at one data ID: ``n_bad`` of ``n_rows`` rows fail it."""

    dataset_type: str
    data_id: dict
    column: str
    check: str
    kind: str
    severity: str
    n_bad: int
    n_rows: int
    passed: bool
    detail: str = ""
    origin: str = "schema"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ValidationReport:
    """Everything `validate_files` found; `failures` are the error-severity checks that did not pass."""

    schema: str
    datasets: list[dict] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)
    unknown_columns: dict[str, list[str]] = field(default_factory=dict)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)
    unmapped_datasets: list[str] = field(default_factory=list)
    tables_without_data: list[str] = field(default_factory=list)
    #: (dataset_type, data ID items, column) -> (rows failing any check of the column, rows).
    bad_rows: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    n_row_checks: int = 0
    #: Of those, the row-checks the Parquet footers answered (statistics prove no row fails them).
    n_footer_checks: int = 0
    seconds: float = 0.0
    repo: str | None = None
    collection: str | None = None
    stored: dict | None = None

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        """Checks that did not pass but fail nothing; a missing column is in `missing_columns` instead."""
        return [r for r in self.results if not r.passed and r.severity != "error" and r.check != "presence"]

    @property
    def columns_checked(self) -> int:
        """Distinct (dataset type, column) pairs that got at least one check."""
        return len({(r.dataset_type, r.column) for r in self.results})

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        keys = ("dataset_type", "data_id", "column", "check", "n_bad", "n_rows", "detail")
        return {
            "schema": self.schema, "repo": self.repo, "collection": self.collection, "passed": self.passed,
            "datasets": self.datasets, "columns_checked": self.columns_checked, "checks_run": len(self.results),
            "row_checks": self.n_row_checks, "row_checks_from_footers": self.n_footer_checks, "seconds": round(self.seconds, 3),
            "failures": [{k: getattr(r, k) for k in keys} for r in self.failures],
            "warnings": [{k: getattr(r, k) for k in keys} for r in self.warnings],
            "unknown_columns": [{"dataset_type": dt, "column": c} for dt, cols in self.unknown_columns.items()
                                for c in cols],
            "missing_columns": {dt: cols for dt, cols in self.missing_columns.items()},
            "unmapped_datasets": self.unmapped_datasets, "tables_without_data": self.tables_without_data,
            "stored": self.stored,
        }


def _data_id_key(data_id: Mapping) -> tuple:
    return tuple(sorted(data_id.items()))


def _plans(files: Mapping[str, Sequence[tuple[dict, str]]], schema: SchemaSpec, rules: Rules
           ) -> list[FileScan]:
    import pyarrow.parquet as pq

    cache: dict[tuple, TablePlan] = {}
    scans = []
    for dataset_type, items in files.items():
        table = schema.table(rules.datasets[dataset_type])
        for data_id, path in items:
            try:
                arrow = pq.read_schema(path)
            except Exception as exc:  # not Parquet, truncated, unreadable
                raise SurveyQAError(f"{dataset_type} {data_id}: cannot read {path}: {str(exc).splitlines()[0]}") \
                    from None
            sig = (table.name, tuple((f.name, str(f.type), (f.metadata or {}).get(b"unit")) for f in arrow),
                   tuple(data_id))
            if sig not in cache:
                cache[sig] = plan_table(table, arrow, rules, tuple(data_id))
            scans.append(FileScan(dataset_type, dict(data_id), path, cache[sig]))
    return scans


def _key_results(scans: list[FileScan]) -> list[tuple[FileScan, Check, int]]:
    """Uniqueness and references, across all the files of each dataset type."""
    out = []
    by_type: dict[str, list[FileScan]] = {}
    for s in scans:
        by_type.setdefault(s.dataset_type, []).append(s)
    by_table: dict[str, list[FileScan]] = {}
    for s in scans:
        by_table.setdefault(s.plan.table, []).append(s)
    for dataset_type, group in by_type.items():
        keys = {c for s in group for c in s.plan.key_checks}
        for check in sorted(keys, key=lambda c: (c.kind, c.column)):
            mine = [s for s in group if check in s.plan.key_checks]
            paths = [s.path for s in mine]
            if check.kind == "unique":
                counts = count_duplicates(paths, check.columns, check.value)
            else:
                ref = check.value
                targets = [t.path for t in by_table.get(ref.table, [])
                           if all(r not in t.plan.missing for r in ref.referenced)]
                if not targets:
                    out.append((mine[0], Check(check.column, "reference", "reference",
                                               f"{check.description}: no dataset in the collection holds "
                                               f"{ref.table} with {', '.join(ref.referenced)}", "warning"), -1))
                    continue
                counts = count_dangling(paths, check.columns, targets, ref.referenced)
            out += [(s, check, counts.get(s.path, 0)) for s in mine]
    return out


def validate_files(files: Mapping[str, Sequence[tuple[dict, str]]], schema: str | SchemaSpec = "dp1",
                   rules: Rules | str | None = None, workers: int | None = None,
                   progress: Callable[[str], None] | None = None, show_bar: bool = False) -> ValidationReport:
    """Check Parquet files against a Felis schema.

    Parameters
    ----------
    files : mapping
        Dataset type -> [(data ID, Parquet path), ...]; every dataset type must be in
        ``rules.datasets`` (which schema table it holds).
    schema : str or SchemaSpec
        A schema name (``dp1``), a Felis YAML file, or a loaded schema.
    rules : Rules, path or None
        Rubin's conventions (default) or a user's rules file on top of them.
    progress : callable, optional
        Called with one line per step.
    show_bar : bool
        Show a tqdm bar over the files (on stderr).
    """
    t0 = time.perf_counter()
    say = progress or log.info
    spec = schema if isinstance(schema, SchemaSpec) else load_schema(schema)
    rules = rules if isinstance(rules, Rules) else load_rules(rules)
    unknown_types = sorted(set(files) - set(rules.datasets))
    if unknown_types:
        raise SurveyQAError(f"no schema table is known for {', '.join(unknown_types)}",
                            "map it in a --rules file: datasets: {NAME: TABLE}")
    scans = _plans(files, spec, rules)
    say(f"{len(scans)} files of {len(files)} dataset types against schema {spec.name}")
    report = ValidationReport(spec.name)
    from tqdm import tqdm

    with tqdm(total=len(scans), unit="file", desc="validate", disable=not show_bar, leave=False) as bar:
        scanned = scan_files(scans, workers, progress=bar.update)
    rows_of = {s.path: r.n_rows for s, r in zip(scans, scanned)}
    for s, res in zip(scans, scanned):
        key = (s.dataset_type, _data_id_key(s.data_id))
        for o in s.plan.outcomes:
            n_bad = 0 if o.passed else res.n_rows
            report.results.append(CheckResult(s.dataset_type, s.data_id, o.check.column, o.check.name, o.check.kind,
                                              o.check.severity, n_bad, res.n_rows, o.passed, o.detail,
                                              o.check.origin))
        for check, n_bad in res.bad.items():
            ok = n_bad <= check.max_bad_fraction * res.n_rows
            report.results.append(CheckResult(s.dataset_type, s.data_id, check.column, check.name, check.kind,
                                              check.severity, n_bad, res.n_rows, ok, check.description, check.origin))
        broken = {o.check.column for o in s.plan.outcomes
                  if not o.passed and o.check.severity == "error" and o.check.kind in ("type", "unit")}
        for column in {c.column for c in s.plan.checks if c.row_level} | {
                o.check.column for o in s.plan.outcomes if o.check.kind == "type"}:
            bad = res.n_rows if column in broken else res.bad_rows.get(column, 0)
            report.bad_rows[(*key, column)] = (bad, res.n_rows)
        report.n_row_checks += res.n_rows * len(s.plan.row_checks)
        report.n_footer_checks += res.n_rows * res.decided
    for s, check, n_bad in _key_results(scans):
        n_rows = rows_of[s.path]
        if n_bad < 0:  # could not be checked
            report.results.append(CheckResult(s.dataset_type, {}, check.column, check.name, check.kind, "warning",
                                              0, 0, False, check.description, check.origin))
            continue
        report.results.append(CheckResult(s.dataset_type, s.data_id, check.column, check.name, check.kind,
                                          check.severity, n_bad, n_rows, n_bad <= check.max_bad_fraction * n_rows,
                                          check.description, check.origin))
        key = (s.dataset_type, _data_id_key(s.data_id), check.column)
        prev = report.bad_rows.get(key, (0, n_rows))[0]
        report.bad_rows[key] = (max(prev, n_bad), n_rows)  # a lower bound where several key checks overlap
        report.n_row_checks += n_rows
    for dataset_type in files:
        mine = [s for s in scans if s.dataset_type == dataset_type]
        table = rules.datasets[dataset_type]
        report.datasets.append({"dataset_type": dataset_type, "table": table, "n_datasets": len(mine),
                                "n_rows": sum(rows_of[s.path] for s in mine)})
        report.unknown_columns[dataset_type] = sorted({c for s in mine for c in s.plan.unknown})
        report.missing_columns[dataset_type] = sorted({c for s in mine for c in s.plan.missing},
                                                      key=list(spec.table(table).columns).index)
    carried = {rules.datasets[dt] for dt in files}
    report.tables_without_data = sorted(set(spec.tables) - carried)
    report.seconds = time.perf_counter() - t0
    say(f"{len(report.results)} checks of {report.columns_checked} columns in {report.seconds:.1f} s: "
        f"{len(report.failures)} failed")
    return report


def repository_files(repo: str, collection: str, rules: Rules) -> tuple[dict, list[str], object]:
    """The catalog files of a collection: ``({dataset_type: [(data ID, path)]}, unmapped types, QARepository)``."""
    from surveyqa.butler.reader import QARepository

    qa = QARepository(repo, collection)
    files, unmapped = {}, []
    for dt in sorted(qa.butler.registry.queryDatasetTypes(), key=lambda d: d.name):
        if dt.storageClass_name not in TABLE_STORAGE_CLASSES:
            continue
        items = qa.datasets(dt.name)
        if not items:
            continue
        if dt.name in rules.datasets:
            files[dt.name] = items
        else:
            unmapped.append(dt.name)
    return files, unmapped, qa


def validate_repository(repo: str, collection: str, schema: str = "dp1", rules: str | None = None,
                        workers: int | None = None, store: bool = True, progress: Callable[[str], None] | None = None,
                        show_bar: bool = False) -> ValidationReport:
    """Check every catalog dataset of a collection against a Felis schema; store the verdicts.

    With ``store``, the good-row percentage of every column at every data ID goes into the
    repository as metric values (`surveyqa.validate.store`), in a new RUN chained as
    ``<collection>/validate``; ``report.stored`` says where.
    """
    say = progress or log.info
    spec = load_schema(schema)
    loaded = load_rules(rules)
    files, unmapped, qa = repository_files(repo, collection, loaded)
    if not files:
        raise SurveyQAError(f"collection {collection!r} holds no dataset the schema's tables map to",
                            f"known dataset types: {', '.join(sorted(loaded.datasets))}; map others with --rules")
    say(f"collection {collection}: " + ", ".join(f"{dt} -> {loaded.datasets[dt]}" for dt in files)
        + (f"; not in the schema: {', '.join(unmapped)}" if unmapped else ""))
    report = validate_files(files, spec, loaded, workers, progress=say, show_bar=show_bar)
    report.repo, report.collection, report.unmapped_datasets = str(repo), collection, unmapped
    if store:
        from surveyqa.validate.store import store_report

        report.stored = store_report(qa, report)
        say(f"stored {report.stored['n_values']} metric values in {report.stored['run']} "
            f"(chained as {report.stored['collection']})")
    return report
