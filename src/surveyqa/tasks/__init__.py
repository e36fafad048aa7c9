"""The QA pipeline: PipelineTasks, their pipeline YAML (``pipelines/qa.yaml``) and `run_qa`."""

from pathlib import Path

__all__ = ["PIPELINE", "PIPELINE_REFCAT", "run_qa"]

#: The QA pipeline for any DRP output repository (``pipetask run -p`` it unchanged).
PIPELINE = Path(__file__).parent / "pipelines" / "qa.yaml"
#: The same plus the per-(visit, detector) reference-catalog check (`surveyqa run`'s default; the
#: check is switched off where the repository has no reference catalog).
PIPELINE_REFCAT = Path(__file__).parent / "pipelines" / "qa-refcat.yaml"


def __getattr__(name):  # the executor imports the Butler: load it only when used
    if name in ("run_qa", "QARunResult"):
        from surveyqa.tasks import executor

        return getattr(executor, name)
    raise AttributeError(name)
