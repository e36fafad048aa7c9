"""`surveyqa sim`: make a simulated survey in a new Butler repository."""

from __future__ import annotations

import click

from surveyqa.sim.config import BANDS, DefectConfig, SimConfig

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
@click.option("--defect", "defects", multiple=True, type=click.Choice(["all", *DEFECT_NAMES]),
              help="Inject a defect (repeatable; 'all' for every one). Off by default.")
@click.option("--collection", default="sim", show_default=True, help="RUN collection to write.")
@click.option("--registry-db", default=None, help="PostgreSQL URL for the registry (postgresql+psycopg2://...); "
                                                  "SQLite inside the repository by default.")
def sim(repo, seed, tracts, visits, bands, density, detectors_per_side, tract_size, defects, collection,
        registry_db):
    """Make a simulated survey, shaped like Rubin's data release outputs, in a new Butler repository REPO.

    Writes sourceTable_visit, objectTable_tract, visitTable, ccdVisitTable, the isolated-star
    association per tract, a reference catalog and truth tables, with every defect asked for
    recorded in the `simTruth` manifest.

    \b
    Example:
        surveyqa sim repo --visits 4 --seed 1
        surveyqa sim repo2 --defect all --bands griz
    """
    from surveyqa.sim.build import make_survey

    config = SimConfig(seed=seed, tracts=tracts, visits=visits, bands=tuple(bands), density=density,
                       detectors_per_side=detectors_per_side, tract_size=tract_size,
                       defects=DefectConfig.from_names(list(defects)))
    result = make_survey(repo, config, collection=collection, registry_db=registry_db, progress=click.echo)
    click.echo(f"simulated survey in {result.repo}, collection {result.collection}: "
               f"{result.n_visits} visits, {result.n_sources} sources, {result.n_objects} objects")
