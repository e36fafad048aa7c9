"""The QA pipeline: PipelineTasks, their pipeline YAML (``pipelines/qa.yaml``) and `run_qa`."""

from pathlib import Path

__all__ = ["PIPELINE", "run_qa"]

#: The default QA pipeline definition.
PIPELINE = Path(__file__).parent / "pipelines" / "qa.yaml"


def __getattr__(name):  # the executor imports the Butler: load it only when used
    if name in ("run_qa", "QARunResult"):
        from surveyqa.tasks import executor

        return getattr(executor, name)
    raise AttributeError(name)
