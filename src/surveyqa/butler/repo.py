"""Opening and creating Butler repositories, with one-line errors a user can act on.

A wrong path or collection name must never reach the Butler's own long tracebacks, and must
never create anything: these helpers check first and say what does exist.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from surveyqa.errors import SurveyQAError

__all__ = ["open_repo", "recover_interrupted_transactions", "create_repo", "check_collection", "register_dataset_types", "DATASET_TYPES"]

log = logging.getLogger(__name__)

#: Every dataset type surveyqa reads or writes: name -> (dimensions, storage class). See docs/data-model.md.
DATASET_TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    # Inputs, as Rubin's DRP writes them (the simulation writes exactly these).
    "sourceTable_visit": (("instrument", "visit"), "ArrowAstropy"),
    "objectTable_tract": (("skymap", "tract"), "ArrowAstropy"),
    "visitTable": (("instrument",), "ArrowAstropy"),
    "ccdVisitTable": (("instrument",), "ArrowAstropy"),
    "isolated_star_presources": (("instrument", "skymap", "tract"), "ArrowAstropy"),
    "isolated_star_presource_associations": (("instrument", "skymap", "tract"), "ArrowAstropy"),
    "surveyqa_refcat": ((), "ArrowAstropy"),
    # Truth of the simulation.
    "simTruth": ((), "StructuredDataDict"),
    "simTruthObject_tract": (("skymap", "tract"), "ArrowAstropy"),
    "simTruthSource_visit": (("instrument", "visit"), "ArrowAstropy"),
    # QA outputs.
    "qaMetricRows_visit": (("instrument", "visit"), "ArrowTable"),
    "qaDetectorValues_visit": (("instrument", "visit"), "ArrowTable"),
    "qaMetricValues_visit": (("instrument", "visit"), "ArrowTable"),
    "qaMetricRows_tract": (("skymap", "tract"), "ArrowTable"),
    "qaMetricValues_tract": (("skymap", "tract"), "ArrowTable"),
    "qaMetricValues_detector": (("instrument", "visit", "detector"), "ArrowTable"),
    "qaMetricRows_detector": (("instrument", "visit", "detector"), "ArrowTable"),
    "qaManifest": ((), "StructuredDataDict"),
    "qaQuantumStatus": ((), "ArrowTable"),
    "qaMetricValues": ((), "ArrowTable"),
}


def _describe_dir(path: Path) -> str:
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        return f"{path} does not exist" + (f"; {parent} holds: {_listing(parent)}" if parent.is_dir() else "")
    return f"{path} holds: {_listing(path)}"


def _listing(path: Path, limit: int = 8) -> str:
    names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if not names:
        return "nothing"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def open_repo(repo: str | os.PathLike, writeable: bool = False, collections=None, run: str | None = None):
    """Open an existing Butler repository, or raise a one-line `SurveyQAError`.

    Parameters
    ----------
    repo : path-like
        Repository root (the folder holding ``butler.yaml``).
    writeable : bool
        Open for writing.
    collections, run
        Passed to `lsst.daf.butler.Butler`.
    """
    from lsst.daf.butler import Butler

    path = Path(repo)
    if not (path / "butler.yaml").is_file():
        raise SurveyQAError(f"{path} is not a Butler repository (no butler.yaml): {_describe_dir(path)}",
                            "make one with `surveyqa sim PATH` or give the root of an existing repository")
    if not writeable:
        recover_interrupted_transactions(path)
    try:
        return Butler.from_config(str(path), writeable=writeable, collections=collections, run=run)
    except Exception as exc:  # the Butler raises many types for unreadable repositories
        raise SurveyQAError(f"cannot open the Butler repository at {path}: {exc}".splitlines()[0]) from exc


def recover_interrupted_transactions(repo: str | os.PathLike) -> list[Path]:
    """Roll back what a killed writer left in the SQLite registries of a repository.

    A process killed during a registry transaction leaves a hot rollback journal; the Butler opens
    a registry read-only (``mode=ro``) unless asked to write, and a read-only connection cannot
    roll the journal back, so every read fails with "attempt to write a readonly database". An
    ordinary read-write connection rolls it back on its first read, as SQLite documents.
    Returns the registries recovered; raises a one-line `SurveyQAError` if the folder is read-only.
    """
    import sqlite3

    recovered = []
    for journal in sorted(Path(repo).glob("*-journal")):
        database = journal.with_name(journal.name.removesuffix("-journal"))
        if not database.is_file() or journal.stat().st_size == 0:
            continue
        try:
            with sqlite3.connect(database) as connection:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error as exc:
            raise SurveyQAError(f"the registry {database} holds a transaction a killed process left unfinished, "
                                f"and it cannot be rolled back here: {exc}",
                                "open the repository once where it is writable (any surveyqa command does)") from exc
        log.info("rolled back an interrupted transaction in %s", database)
        recovered.append(database)
    return recovered


def create_repo(repo: str | os.PathLike, registry_db: str | None = None, overwrite: bool = False):
    """Create a new Butler repository and return a writeable Butler.

    Parameters
    ----------
    repo : path-like
        Folder for the repository (datastore files and ``butler.yaml``).
    registry_db : str, optional
        SQLAlchemy URL of the registry database (``postgresql+psycopg2://user@host/db``); SQLite in
        the repository folder by default. PostgreSQL needs the ``btree_gist`` extension, which is
        created here when missing.
    overwrite : bool
        Replace an existing repository's configuration (its files are not removed).
    """
    from lsst.daf.butler import Butler, Config

    path = Path(repo)
    if (path / "butler.yaml").exists() and not overwrite:
        raise SurveyQAError(f"{path} already holds a Butler repository", "choose a new path or remove it first")
    if path.exists() and not path.is_dir():
        raise SurveyQAError(f"{path} exists and is not a folder", "choose a new path")
    config = Config()
    if registry_db:
        if not registry_db.startswith("postgresql"):
            raise SurveyQAError(f"unsupported registry database URL {registry_db!r}",
                                "use postgresql+psycopg2://user@host:port/database, or omit for SQLite")
        _ensure_btree_gist(registry_db)
        config["registry", "db"] = registry_db
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        Butler.makeRepo(str(path), config=config, overwrite=overwrite)
        return Butler.from_config(str(path), writeable=True)
    except Exception as exc:  # e.g. a PostgreSQL database that already holds a registry
        if created:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        raise SurveyQAError(f"cannot create a Butler repository at {path}: {str(exc).splitlines()[0]}",
                            "use a new folder, and an empty database for --registry-db") from exc


def _ensure_btree_gist(url: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
        engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise SurveyQAError(f"cannot prepare the registry database {url}: {str(exc).splitlines()[0]}",
                            "check that the PostgreSQL server runs and the database exists") from exc


def check_collection(butler, name: str) -> None:
    """Raise a one-line `SurveyQAError` listing the collections that exist if ``name`` does not."""
    from lsst.daf.butler import MissingCollectionError

    try:
        butler.collections.get_info(name)
    except MissingCollectionError:
        existing = sorted(butler.collections.query("*"))
        shown = ", ".join(existing[:10]) + (f", ... ({len(existing) - 10} more)" if len(existing) > 10 else "")
        raise SurveyQAError(f"collection {name!r} does not exist in this repository; it has: {shown or 'none'}",
                            "pass one of those") from None


def register_dataset_types(butler, names: list[str] | None = None) -> None:
    """Register surveyqa's dataset types (all of `DATASET_TYPES` by default)."""
    from lsst.daf.butler import DatasetType

    for name in names or DATASET_TYPES:
        dims, storage = DATASET_TYPES[name]
        butler.registry.registerDatasetType(DatasetType(name, dims, storage, universe=butler.dimensions))
