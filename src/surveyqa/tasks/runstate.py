"""The state of a QA run in a repository: complete or partial, its removal, and the repository's consistency.

A `surveyqa run` marks its RUN collection's documentation ``surveyqa run: in progress`` when it
starts and writes ``qaQuantumStatus`` as its very last dataset, so a run killed (``kill -9``,
Ctrl-C, a full disk) is recognisable afterwards: `run_state` says ``partial``. Such a run can be
resumed (``surveyqa run --resume``) or removed with its files (`remove_output`,
``surveyqa run --remove``).
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

from surveyqa.errors import SurveyQAError
from surveyqa.butler.repo import open_repo

__all__ = ["run_state", "find_run", "remove_output", "check_consistency", "remove_unregistered_files",
           "check_writable", "is_disk_full", "RunInterrupted", "QuantaFailed", "IN_PROGRESS", "COMPLETE"]

log = logging.getLogger(__name__)

#: Documentation of a RUN collection while `surveyqa run` writes it, and once it has finished.
IN_PROGRESS = "surveyqa run: in progress"
COMPLETE = "surveyqa run: complete"
#: Files of a repository root that are not datasets.
_NOT_DATASETS = {"butler.yaml", "gen3.sqlite3", "gen3.sqlite3-journal", "gen3.sqlite3-wal", "gen3.sqlite3-shm"}


class RunInterrupted(SurveyQAError):
    """`surveyqa run` was interrupted (Ctrl-C, SIGTERM): the run it was writing is partial."""

    exit_code = 130


class QuantaFailed(SurveyQAError):
    """Quanta of a run failed (the run was written with everything else): exit code 1, like ``pipetask run``."""

    exit_code = 1


def find_run(butler, collection: str) -> str:
    """The RUN collection holding a QA output: ``collection`` itself if it is a RUN, else the first child
    of the CHAINED collection (where `surveyqa run` and ``pipetask run -o`` put their outputs).

    Raises
    ------
    SurveyQAError
        No such collection, or a chain without a RUN of its own.
    """
    from lsst.daf.butler import CollectionType
    from lsst.daf.butler.registry import MissingCollectionError

    try:
        info = butler.collections.get_info(collection)
    except MissingCollectionError as exc:
        raise SurveyQAError(f"collection {collection!r} does not exist") from exc
    if info.type == CollectionType.RUN:
        return collection
    children = [c for c in info.children if c.startswith(f"{collection}/")]
    if info.type != CollectionType.CHAINED or not children:
        raise SurveyQAError(f"collection {collection!r} holds no QA run",
                            "give the output collection of `surveyqa run` or `pipetask run -o`")
    return children[0]


def run_state(butler, collection: str) -> str:
    """``'complete'`` or ``'partial'``: whether the QA run in ``collection`` (its CHAINED output or its RUN) finished.

    A run made by `surveyqa run` is complete when it holds ``qaQuantumStatus`` (its last dataset).
    A run from another executor (``pipetask run``) has no such marker; it counts as complete when
    it holds ``qaManifest``, the pipeline's last quantum.
    """
    run = find_run(butler, collection)
    if _has(butler, "qaQuantumStatus", run):
        return "complete"
    doc = butler.registry.getCollectionDocumentation(run) or ""
    if doc.startswith("surveyqa run"):
        return "partial"
    return "complete" if _has(butler, "qaManifest", run) else "partial"


def _has(butler, name: str, run: str) -> bool:
    from lsst.daf.butler import MissingDatasetTypeError

    try:
        return bool(butler.query_datasets(name, collections=run, limit=1, explain=False))
    except MissingDatasetTypeError:
        return False


def remove_output(repo: str | os.PathLike, output: str) -> list[str]:
    """Remove an output collection: its CHAINED collection, its RUN collections and all their files.

    Only the RUNs named ``{output}/...`` are removed; the input collections of the chain are kept.
    Files left in a RUN's folder without registration (a run killed while writing) go too.

    Returns
    -------
    list of str
        The RUN collections removed.
    """
    from lsst.daf.butler import Butler, CollectionType

    butler = Butler.from_config(str(repo), writeable=True)
    info = butler.collections.get_info(output)
    if info.type == CollectionType.CHAINED:
        runs = [c for c in info.children if c.startswith(f"{output}/")]
        runs += [c for c in butler.collections.query(f"{output}/*", collection_types={CollectionType.RUN})
                 if c not in runs]
        butler.registry.removeCollection(output)
    elif info.type == CollectionType.RUN:
        runs = [output]
    else:
        raise SurveyQAError(f"collection {output!r} is not the output of a QA run ({info.type.name})")
    butler.removeRuns(runs)  # files included
    for run in runs:
        remove_unregistered_files(repo, run, butler=butler)
    return runs


def _registered_files(butler) -> set[Path]:
    """Every file the datastore records, for every dataset of every RUN."""
    from lsst.daf.butler import CollectionType

    files: set[Path] = set()
    runs = list(butler.collections.query("*", collection_types={CollectionType.RUN}))
    for dataset_type in butler.registry.queryDatasetTypes():
        if not runs:
            break
        refs = butler.query_datasets(dataset_type.name, collections=runs, find_first=False, limit=None,
                                     explain=False)
        for ref in refs:
            uris = butler.getURIs(ref)
            for uri in ([uris.primaryURI] if uris.primaryURI else []) + list(uris.componentURIs.values()):
                files.add(Path(uri.ospath))
    return files


def _datastore_files(root: Path, under: Path | None = None) -> list[Path]:
    top = under or root
    if not top.is_dir():
        return []
    return [p for p in top.rglob("*") if p.is_file() and not (p.parent == root and p.name in _NOT_DATASETS)]


def check_consistency(repo: str | os.PathLike) -> list[str]:
    """Problems between the registry and the files of a repository (an empty list: consistent).

    Every registered dataset must have its file, and every file under the repository root (but
    the registry and ``butler.yaml``) must belong to a registered dataset.
    """
    root = Path(repo).resolve()
    butler = open_repo(root)
    registered = {p.resolve() for p in _registered_files(butler)}
    problems = [f"registered dataset without its file: {p}" for p in sorted(registered) if not p.exists()]
    problems += [f"file not registered: {p}" for p in sorted(_datastore_files(root)) if p.resolve() not in registered]
    return problems


def remove_unregistered_files(repo: str | os.PathLike, run: str, butler=None) -> list[Path]:
    """Delete the files under a RUN's folder that no registered dataset owns (written, then never
    registered: a process killed or a disk full between the two). Empty folders go too."""
    root = Path(repo).resolve()
    folder = (root / run).resolve()
    if root not in folder.parents or not folder.is_dir():
        return []
    butler = butler or open_repo(root)
    butler.registry.refresh()
    registered = {p.resolve() for p in _registered_files(butler)}
    removed = [p for p in _datastore_files(root, folder) if p.resolve() not in registered]
    for path in removed:
        path.unlink()
        log.info("removed %s: written but never registered", path)
    for sub in sorted((d for d in folder.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    while folder != root and folder.is_dir() and not any(folder.iterdir()):  # qa/run1/<time>, then qa/run1, qa
        folder.rmdir()
        folder = folder.parent
    return removed


def check_writable(repo: str | os.PathLike) -> None:
    """Raise `SurveyQAError` unless the repository root and its SQLite registry can be written."""
    root = Path(repo)
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".surveyqa-write-test-"):
            pass
    except OSError as exc:
        raise SurveyQAError(f"repository {repo} is not writable ({exc.strerror})",
                            "run on a writable copy, or ask for write access") from exc
    registry = root / "gen3.sqlite3"
    if registry.exists() and not os.access(registry, os.W_OK):
        raise SurveyQAError(f"the registry {registry} is not writable", "ask for write access to it")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an exception (or one it was raised from) is a full disk: ``OSError`` ENOSPC or EDQUOT,
    or SQLite's "database or disk is full"."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "database or disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
