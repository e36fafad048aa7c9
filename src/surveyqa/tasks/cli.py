"""`surveyqa run`: run the QA pipeline over a repository."""

from __future__ import annotations

import click

__all__ = ["run", "quiet_executor_logs"]


def quiet_executor_logs() -> None:
    """Keep the executor's per-failure ERROR lines off the terminal (the CLI reports failures itself);
    they still go into each quantum's ``<label>_log`` dataset."""
    import logging

    noisy = ("lsst.pipe.base.single_quantum_executor", "lsst.utils.packages")
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: not record.name.startswith(noisy))


@click.command("run")
@click.argument("repo", type=click.Path())
@click.option("--input", "-i", "inputs", required=True, multiple=True, help="Input collection (repeatable).")
@click.option("--output", "-o", required=True, help="New output collection, e.g. qa/run1.")
@click.option("-j", "--jobs", default=1, show_default=True, help="Worker processes for independent quanta.")
@click.option("--where", "-d", default="", help="Data ID query restricting the quanta, e.g. \"visit = 101001\".")
@click.option("--pipeline", "-p", default=None, type=click.Path(dir_okay=False), help="Pipeline YAML (default: surveyqa's).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, only the summary.")
def run(repo, inputs, output, jobs, where, pipeline, quiet):
    """Run the QA pipeline over REPO: metric values at every level, written back into the repository.

    Failed quanta (e.g. a detector the reference catalog does not cover) are reported and do
    not stop the others; every quantum's status is stored as qaQuantumStatus in the run.

    \b
    Example:
        surveyqa run repo --input sim --output qa/run1
        pipetask run -b repo -i sim -o qa/run2 -p $(python -c 'import surveyqa.tasks as t; print(t.PIPELINE)')
    """
    from tqdm import tqdm

    from surveyqa.tasks.executor import run_qa

    quiet_executor_logs()
    bar = None

    def progress(status, done, total):
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="quantum", desc="QA", leave=False)
        bar.update(1)
        bar.set_postfix_str(f"{status.label} {status.status}")
        if status.status == "failed":
            tqdm.write(f"failed: {status.label} {_fmt(status.data_id)}: {status.exception_type}: {status.message}")

    result = run_qa(repo, list(inputs), output, jobs=jobs, pipeline=pipeline, where=where, progress=progress)
    if bar is not None:
        bar.close()
    counts: dict[str, int] = {}
    for s in result.statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    by_label: dict[str, list[float]] = {}
    for s in result.statuses:
        by_label.setdefault(s.label, []).append(s.seconds)
    for label, secs in by_label.items():
        click.echo(f"  {label}: {len(secs)} quanta, {sum(secs):.1f} s")
    click.echo(f"QA run {result.run} in collection {result.output}: "
               + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" ({result.timings['total']:.1f} s)")


def _fmt(data_id: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in data_id.items())
