"""`surveyqa ingest`: metric values computed elsewhere into a repository the dashboard can read."""

from __future__ import annotations

import click

__all__ = ["ingest"]


@click.command("ingest")
@click.argument("repo", type=click.Path(file_okay=False))
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--collection", "-c", required=True, help="New RUN collection for the values.")
@click.option("--skymap-csv", type=click.Path(dir_okay=False), default=None,
              help="Tract corners (columns: tract id, x0, x1 = RA, y0, y1 = Dec, degrees).")
@click.option("--skymap", default="hsc_rings_v1", show_default=True, help="Skymap name for the tracts.")
@click.option("--instrument", default="HSC", show_default=True, help="Instrument, for the specs that depend on it.")
def ingest(repo, table, collection, skymap_csv, skymap, instrument):
    """Ingest a table of per-tract metric values (tidy, or one column per metric) into REPO.

    Writes qaMetricValues_tract per tract (spec status filled) and a qaManifest into COLLECTION;
    the repository is created (SQLite) if absent. Nothing is written when the table is unusable.

    \b
    Example:
        surveyqa ingest hsc-repo data/hsc_pdr2_dashboard/PDR2_metrics.parq -c hsc/pdr2 \\
            --skymap-csv data/hsc_pdr2_dashboard/deepCoadd_skyMap.csv
    """
    from surveyqa.butler.ingest import ingest_metric_table

    n = ingest_metric_table(repo, table, collection, skymap_csv, skymap, instrument)
    click.echo(f"ingested {n} metric values into {repo}, collection {collection}")
