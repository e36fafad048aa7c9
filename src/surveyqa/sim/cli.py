"""`surveyqa sim`: make a simulated survey in a new Butler repository."""

from __future__ import annotations

import click

from surveyqa.sim.config import BANDS, DefectConfig, SimConfig
from surveyqa.sim.rubin import LIKE, RUBIN_DEFECTS

__all__ = ["sim"]

DEFECT_NAMES = ["bad-astrometry-detector", "bad-zeropoint-visit", "empty-region", "nan-flux-column", "outside-refcat"]


@click.command("sim")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--seed", default=1, show_default=True, help="Seed of every random draw.")
@click.option("--tracts", default=1, show_default=True, help="Number of 1x1 deg tracts.")
@click.option("--visits", default=4, show_default=True, help="Visits per band per tract (4 cover a tract).")
@click.option("--bands", default="gri", show_default=True, help=f"Bands, as letters from {''.join(BANDS)}.")
@click.option("--density", default=50000.0, show_default=True, help="True objects per square degree (to r=26.5).")
@click.option("--detectors", "detectors_per_side", default=3, show_default=True,
              help="Detectors per side of the square focal plane.")
@click.option("--tract-size", default=1.0, show_default=True,
              help="Tract side, degrees (at most twice the focal plane's width, so 4 visits cover it).")
@click.option("--defect", "defects", multiple=True, type=click.Choice(["all", *DEFECT_NAMES, *RUBIN_DEFECTS]),
              help="Inject a defect (repeatable; 'all' for every one). Off by default. With --like: "
                   + ", ".join(RUBIN_DEFECTS) + ".")
@click.option("--like", type=click.Choice(sorted(LIKE)), default=None,
              help="Shape the survey like a real Rubin repository: its registry export's instrument, visits, "
                   "processed detectors and skymap, DP1 tables, Rubin's conventions, a realistic baseline.")
@click.option("--export", "export", default=None, type=click.Path(dir_okay=False),
              help="With --like: the Butler registry export (YAML) to use instead of the one the shape names.")
@click.option("--truth", "truth_path", default=None, type=click.Path(dir_okay=False),
              help="With --like: where the truth JSON goes (default REPO.truth.json, outside the repository).")
@click.option("--collection", default=None, help="RUN collection to write [default: sim, or drp with --like].")
@click.option("--registry-db", default=None, help="PostgreSQL URL for the registry (postgresql+psycopg2://...); "
                                                  "SQLite inside the repository by default.")
def sim(repo, seed, tracts, visits, bands, density, detectors_per_side, tract_size, defects, like, export, truth_path,
        collection, registry_db):
    """Make a simulated survey, shaped like Rubin's data release outputs, in a new Butler repository REPO.

    Writes sourceTable_visit, objectTable_tract, visitTable, ccdVisitTable, the isolated-star
    association per tract, a reference catalog and truth tables, with every defect asked for
    recorded in the `simTruth` manifest.

    \b
    Example:
        surveyqa sim repo --visits 4 --seed 1
        surveyqa sim repo2 --defect all --bands griz
        surveyqa sim rc2 --like hsc-rc2 --defect all --seed 3
    """
    if like:
        from surveyqa.sim.rubin import RubinDefects, RubinSimConfig, make_rubin_survey

        config = RubinSimConfig(like=like, seed=seed, defects=RubinDefects.from_names(list(defects)), export=export)
        if density != 50000.0:
            config.density = density
        truth = make_rubin_survey(repo, config, collection=collection or "drp", registry_db=registry_db,
                                  truth_path=truth_path, progress=click.echo)
        click.echo(f"Rubin-shaped survey in {repo}, collection {truth['collection']}: {len(truth['visits'])} visits, "
                   f"{truth['n_ccds']} processed detectors, {truth['n_sources']} sources")
        return
    unknown = sorted(set(defects) & set(RUBIN_DEFECTS))
    if unknown:
        from surveyqa.errors import SurveyQAError

        raise SurveyQAError(f"defect(s) {', '.join(unknown)} need --like", "add --like hsc-rc2")
    collection = collection or "sim"
    from surveyqa.sim.build import make_survey

    config = SimConfig(seed=seed, tracts=tracts, visits=visits, bands=tuple(bands), density=density,
                       detectors_per_side=detectors_per_side, tract_size=tract_size,
                       defects=DefectConfig.from_names(list(defects)))
    result = make_survey(repo, config, collection=collection, registry_db=registry_db, progress=click.echo)
    click.echo(f"simulated survey in {result.repo}, collection {result.collection}: "
               f"{result.n_visits} visits, {result.n_sources} sources, {result.n_objects} objects")
