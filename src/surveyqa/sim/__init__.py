"""A simulated survey in a real Butler repository, shaped like Rubin's data release outputs,
with injectable defects and a truth manifest (see docs/data-model.md)."""

from surveyqa.sim.config import DefectConfig, SimConfig

__all__ = ["SimConfig", "DefectConfig", "make_survey", "SimResult"]


def __getattr__(name):  # the builder imports the Butler: load it only when used
    if name in ("make_survey", "SimResult"):
        from surveyqa.sim import build

        return getattr(build, name)
    raise AttributeError(name)
