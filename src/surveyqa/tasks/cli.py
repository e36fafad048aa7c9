"""`surveyqa run`: run the QA pipeline over a repository."""

from __future__ import annotations

import click

__all__ = ["run", "quiet_executor_logs", "failure_causes"]


def quiet_executor_logs() -> None:
    """Keep the executor's per-failure ERROR lines off the terminal (the CLI reports failures itself);
    they still go into each quantum's ``<label>_log`` dataset."""
    import logging

    noisy = ("lsst.pipe.base.single_quantum_executor", "lsst.utils.packages")
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: not record.name.startswith(noisy))


def failure_causes(statuses) -> list[tuple[str, str, list]]:
    """The distinct causes of failed quanta, ``(exception_type, message, statuses)``, most frequent first.

    Quanta that fail on the same thing (one unreadable file read by a visit's quanta) share their
    exception type and message, so each cause is reported once.
    """
    groups: dict[tuple[str, str], list] = {}
    for s in statuses:
        if s.status == "failed":
            groups.setdefault((s.exception_type or "", s.message or ""), []).append(s)
    return [(t, m, g) for (t, m), g in sorted(groups.items(), key=lambda item: -len(item[1]))]


@click.command("run")
@click.argument("repo", type=click.Path())
@click.option("--input", "-i", "inputs", multiple=True, help="Input collection (repeatable; not with --resume).")
@click.option("--output", "-o", required=True, help="New output collection, e.g. qa/run1.")
@click.option("-j", "--jobs", default=1, show_default=True, help="Worker processes for independent quanta.")
@click.option("--where", "-d", default="", help="Data ID query restricting the quanta, e.g. \"visit = 101001\".")
@click.option("--pipeline", "-p", default=None, type=click.Path(dir_okay=False), help="Pipeline YAML (default: surveyqa's).")
@click.option("--resume", is_flag=True, help="Finish the partial run in OUTPUT (same RUN; quanta that finished are skipped).")
@click.option("--replace", is_flag=True, help="Remove OUTPUT (collections and files) first, then run.")
@click.option("--remove", is_flag=True, help="Only remove OUTPUT, its RUN collections and their files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, only the summary.")
def run(repo, inputs, output, jobs, where, pipeline, resume, replace, remove, quiet):
    """Run the QA pipeline over REPO: metric values at every level, written back into the repository.

    Failed quanta (e.g. a detector the reference catalog does not cover, an unreadable file) are
    reported, one line per cause, and do not stop the others; every quantum's status is stored as
    qaQuantumStatus in the run, its last dataset. Tasks whose inputs are missing are switched off.
    Exit code 1 when a quantum failed for a reason other than a finding on the data (a detector
    outside the reference catalog is a finding).

    \b
    Example:
        surveyqa run repo --input sim --output qa/run1
        surveyqa run repo --output qa/run1 --resume      # after a kill or Ctrl-C
        surveyqa run --remove repo --output qa/run1     # a partial run, files included
        pipetask run -b repo -i sim -o qa/run2 -p $(python -c 'import surveyqa.tasks as t; print(t.PIPELINE)')
    """
    from tqdm import tqdm

    from surveyqa.errors import SurveyQAError
    from surveyqa.tasks.executor import run_qa

    if sum((resume, replace, remove)) > 1:
        raise SurveyQAError("--resume, --replace and --remove exclude each other")
    if remove:
        from surveyqa.butler.repo import open_repo
        from surveyqa.tasks.runstate import check_writable, remove_output

        if output not in set(open_repo(repo).collections.query("*")):
            raise SurveyQAError(f"output collection {output!r} does not exist")
        check_writable(repo)
        runs = remove_output(repo, output)
        click.echo(f"removed {output} and its run(s) {', '.join(runs)}, files included")
        return
    if not inputs and not resume:
        raise SurveyQAError("no input collection", "give one with --input, e.g. --input sim")
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

    try:
        result = run_qa(repo, list(inputs) or None, output, jobs=jobs, pipeline=pipeline, where=where,
                        progress=progress, resume=resume, replace=replace)
    finally:
        if bar is not None:
            bar.close()
    for label, reason in result.switched_off.items():
        click.echo(f"switched off: {label}: {reason}")
    for exception_type, message, group in failure_causes(result.statuses):
        labels = sorted({s.label for s in group})
        where_ = _fmt(group[0].data_id) if len(group) == 1 else ", ".join(labels)
        click.echo(f"failed: {len(group)} quant{'um' if len(group) == 1 else 'a'} ({where_}): "
                   f"{exception_type}: {message}")
    counts: dict[str, int] = {}
    for s in result.statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    by_label: dict[str, list[float]] = {}
    for s in result.statuses:
        by_label.setdefault(s.label, []).append(s.seconds)
    for label, secs in by_label.items():
        click.echo(f"  {label}: {len(secs)} quanta, {sum(secs):.1f} s")
    click.echo(f"QA run {result.run} in collection {result.output}{' (resumed)' if result.resumed else ''}: "
               + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing left to run")
               + f" ({result.timings['total']:.1f} s)")
    if result.errors:
        from surveyqa.tasks.runstate import QuantaFailed

        n = len(result.errors)
        raise QuantaFailed(f"{n} quant{'um' if n == 1 else 'a'} failed; run {result.run} holds what succeeded",
                           "the causes are listed above and in qaQuantumStatus")


def _fmt(data_id: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in data_id.items())
