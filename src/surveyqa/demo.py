"""`surveyqa demo`: a simulated survey with every defect, the QA pipeline over it, the quick look,
and the dashboard — the first thing a new user runs.

`run_demo` is the public function; `quick_look` turns a QA run into the summary lines printed
(metrics with pass/fail counts, the failing values, failed quanta, and the injected defects next
to what the QA flagged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import click

from surveyqa.errors import SurveyQAError

__all__ = ["demo", "run_demo", "quick_look", "DEMO_INPUT", "DEMO_OUTPUT"]

log = logging.getLogger(__name__)

DEMO_INPUT = "drp"
DEMO_OUTPUT = "qa/demo"
#: Shapes of the demo survey: ``hsc-rc2`` (Rubin's DRP outputs on real HSC registry records, the
#: default) and ``simple`` (surveyqa's own small simulation, with a reference catalog).
SHAPES = ("hsc-rc2", "simple")
_SIMPLE_INPUT = "sim"


def truth_path(repo: str | Path) -> Path:
    """Where the demo's truth JSON is: beside the repository, never in it."""
    return Path(str(Path(repo).resolve()) + ".truth.json")


def run_demo(repo: str | Path = "demo-repo", seed: int = 1, jobs: int = 1, say: Callable[[str], None] = log.info,
             progress=None, shape: str = "hsc-rc2") -> tuple[str, str]:
    """Make the demo repository (or reuse a finished one) and run the QA pipeline over it.

    Parameters
    ----------
    shape : str
        One of `SHAPES`. ``hsc-rc2`` injects each realistic defect (`surveyqa.sim.rubin.RUBIN_DEFECTS`)
        and writes its truth to `truth_path`; ``simple`` injects the simple simulation's defects.

    Returns
    -------
    repo, collection : str
        Where the QA outputs are.
    """
    from surveyqa.tasks.executor import run_qa

    if shape not in SHAPES:
        raise SurveyQAError(f"unknown demo shape {shape!r}", f"choose from {', '.join(SHAPES)}")
    repo = Path(repo)
    inputs = DEMO_INPUT if shape == "hsc-rc2" else _SIMPLE_INPUT
    if (repo / "butler.yaml").exists():
        from surveyqa.butler.repo import open_repo

        names = set(open_repo(repo).collections.query("*"))
        if DEMO_OUTPUT in names:
            say(f"reusing the demo repository {repo} (remove it to start again)")
            return str(repo), DEMO_OUTPUT
        if inputs not in names:
            raise SurveyQAError(f"{repo} is a Butler repository but not a surveyqa demo one of shape {shape}",
                                "give another --repo path")
    elif shape == "hsc-rc2":
        from surveyqa.sim.rubin import RubinDefects, RubinSimConfig, make_rubin_survey

        say(f"simulating a Rubin-shaped survey (HSC RC2 registry records) with every defect into {repo}")
        make_rubin_survey(str(repo), RubinSimConfig(seed=seed, defects=RubinDefects.from_names(["all"])),
                          collection=inputs, truth_path=truth_path(repo), progress=say)
    else:
        from surveyqa.sim import DefectConfig, SimConfig, make_survey

        say(f"simulating a survey with every defect into {repo}")
        make_survey(str(repo), SimConfig(seed=seed, defects=DefectConfig.all_on()), collection=inputs, progress=say)
    say(f"running the QA pipeline: {inputs} -> {DEMO_OUTPUT}")
    run_qa(str(repo), inputs, DEMO_OUTPUT, jobs=jobs, progress=progress)
    return str(repo), DEMO_OUTPUT


def quick_look(repo: str | Path, collection: str) -> list[str]:
    """The quick-look summary of a QA run, as lines of text.

    Per metric: number of values, how many fail their spec, the spec and the worst value; then
    what is wrong, by place (`surveyqa.culprits`, as the dashboard's quick look shows it), the
    failed quanta, and, for a simulated survey, each injected defect next to the values that
    single it out.
    """
    from surveyqa.butler.reader import QARepository
    from surveyqa.culprits import find_culprits, flag_text

    qa = QARepository(repo, collection)
    values = qa.metric_values()
    lines = [f"Quick look: {repo} · {collection}", ""]
    lines.append(f"{'metric':34s} {'values':>6s} {'fail':>5s}  spec")
    for name, group in values.groupby("metric", sort=True):
        fails = int((group["status"] == "fail").sum())
        spec = group["spec"].dropna()
        spec_text = ""
        if len(spec):
            row = group[group["spec"].notna()].iloc[0]
            spec_text = f"{spec.iloc[0].rsplit('.', 1)[-1]} {row['threshold']:g} {row['unit']}"
        mark = "FAIL" if fails else ("pass" if len(spec) else "-")
        lines.append(f"{name:34s} {len(group):6d} {fails:5d}  {spec_text:24s} {mark}")
    failing = values[values["status"] == "fail"]
    failures = qa.failures()
    culprits = find_culprits(values, failures)
    lines += ["", f"What is wrong ({len(culprits)} places, {len(failing)} failing values):"]
    for culprit in culprits:
        lines.append(f"  {culprit.place}")
        lines += [f"      {flag_text(flag, culprit.data_id)}" for flag in culprit.flags]
    lines += ["", f"Failed quanta ({len(failures)}):"]
    for _, row in failures.iterrows():
        lines.append(f"  {row['label']} {row['data_id']}: {row.get('exception_type')}: {row['message']}")
    truth = qa.truth() or _truth_file(repo)
    if truth and truth.get("defects"):
        lines += ["", "Injected defects and what the QA flagged:"]
        for line in _defect_lines(truth["defects"], failing, failures):
            lines.append("  " + line)
    return lines


def _truth_file(repo) -> dict | None:
    import json

    path = truth_path(repo)
    return json.loads(path.read_text()) if path.is_file() else None


_ID_KEYS = ("tract", "patch", "visit", "detector", "band", "column")


def _id_text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _located_defect_line(name: str, defect: dict, failing) -> str:
    """A defect whose truth names the metric and level that must single it out (Rubin-shaped
    survey): where it is, and the data IDs at which that metric fails."""
    import pandas as pd

    sub = failing[(failing["metric"] == defect["metric"]) & (failing["level"] == defect["level"])]
    keys = [k for k in _ID_KEYS if k in defect and (k != "band" or defect["level"] != "patch")]
    where = " ".join(f"{k}={_id_text(defect[k])}" for k in keys)
    size = (f"{100 * defect['fraction']:.3g} % of its sources" if "fraction" in defect else
            next((f"{defect[k]} {defect.get('unit', '')}".strip() for k in ("offset", "diameter") if k in defect), ""))
    flagged = sorted({" ".join(f"{k}={_id_text(row[k])}" for k in keys if not pd.isna(row.get(k)))
                      for _, row in sub.iterrows()})
    verdict = "caught" if where in flagged else "MISSED"
    return f"{name.replace('_', ' ')} at {where} ({size}): {defect['metric']} fails at {flagged or 'none'}: {verdict}"


def _defect_lines(defects: dict, failing, failures) -> list[str]:
    out = [_located_defect_line(name, d, failing) for name, d in defects.items() if "metric" in d]
    if "bad_astrometry_detector" in defects:
        d = defects["bad_astrometry_detector"]
        flagged = sorted(set(failing[failing["metric"] == "health.astromOffset"]["detector"].dropna().astype(int)))
        out.append(f"detector {d['detector']} offset by {d['offset']} {d['unit']}: health.astromOffset fails on "
                   f"detector(s) {flagged}")
    if "bad_zeropoint_visit" in defects:
        d = defects["bad_zeropoint_visit"]
        sub = failing[(failing["metric"] == "health.zeroPointOffset") & (failing["level"] == "visit")]
        out.append(f"visit {d['visit']} zero point off by {d['offset']} {d['unit']}: health.zeroPointOffset fails on "
                   f"visit(s) {sorted(set(sub['visit'].dropna().astype(int)))}")
    if "empty_region" in defects:
        d = defects["empty_region"]
        sub = failing[failing["metric"] == "health.emptyCellFraction"]
        out.append(f"hole in the coadd of tract {d['tract']} patch {d['patch']}: health.emptyCellFraction fails on "
                   f"patch(es) {sorted(set(sub['patch'].dropna().astype(int)))}")
    if "nan_flux_column" in defects:
        d = defects["nan_flux_column"]
        sub = failing[failing["metric"] == "health.nanFraction"]
        cols = sorted({f"{b}_{c}" if b else c for b, c in zip(sub["band"], sub["column"])})
        out.append(f"{d['column']} NaN in {d['dataset']}: health.nanFraction fails on {cols}")
    if "outside_refcat" in defects:
        d = defects["outside_refcat"]
        failed = sorted((int(v), int(k)) for v, k in zip(failures.get("visit", []), failures.get("detector", []))
                        if v == v and k == k)
        out.append(f"reference catalog hole under {len(d.get('failing', []))} (visit, detector): failed quanta "
                   f"{failed}")
    return out


@click.command("demo")
@click.option("--repo", default="demo-repo", show_default=True, type=click.Path(file_okay=False),
              help="Where to make (or reuse) the demo repository.")
@click.option("--no-serve", is_flag=True, help="Stop after the QA outputs and the summary.")
@click.option("--port", default=0, show_default=True, help="Dashboard port (0: a free one).")
@click.option("--seed", default=1, show_default=True, help="Seed of the simulation.")
@click.option("-j", "--jobs", default=1, show_default=True, help="Worker processes for the QA run.")
@click.option("--like", "shape", default=SHAPES[0], show_default=True, type=click.Choice(SHAPES),
              help="hsc-rc2: Rubin's DRP outputs on real HSC registry records; simple: surveyqa's small simulation.")
def demo(repo, no_serve, port, seed, jobs, shape):
    """Simulated survey with injected defects -> QA pipeline -> quick look -> dashboard.

    Makes REPO (default ./demo-repo) with `surveyqa sim --like hsc-rc2 --defect all` (truth in
    REPO.truth.json, beside it), runs the QA pipeline into collection qa/demo, prints which metrics pass and fail and which defects were caught, then
    serves the drill-down dashboard and prints its URL (Ctrl-C stops it).

    \b
    Example:
        surveyqa demo
        surveyqa demo --no-serve --repo /tmp/demo
    """
    from surveyqa.tasks.cli import quiet_executor_logs

    quiet_executor_logs()
    repo, collection = run_demo(repo, seed=seed, jobs=jobs, say=click.echo, shape=shape)
    for line in quick_look(repo, collection):
        click.echo(line)
    if no_serve:
        return
    try:
        from surveyqa.dashboard import serve
    except (ImportError, AttributeError):
        click.echo("The dashboard is not available in this installation (surveyqa.dashboard.serve); "
                   f"the QA outputs are in {repo}, collection {collection}.")
        return
    server, url = serve(repo, collection, port=port)
    click.echo(f"Dashboard: {url}  (Ctrl-C to stop)")
    server.wait()
