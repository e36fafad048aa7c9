"""The Butler's provenance of a dataset, written into and read back from its Parquet file.

daf_butler records a dataset's provenance (its quantum's ID and the IDs of the datasets the
quantum read: `lsst.daf.butler.DatasetProvenance`) as ``LSST.BUTLER.*`` keys in the metadata of
the Parquet files it writes, but only for Astropy tables; the QA tasks write Arrow tables. So
the tasks add the same keys, made by the same `DatasetProvenance.to_flat_dict` call with the
same arguments, to their tables' schema metadata (`with_provenance`), and `read_provenance`
reads either kind back with `DatasetProvenance.from_flat_dict`: one format, the Butler's.
"""

from __future__ import annotations

import logging

import pyarrow as pa

__all__ = ["PREFIX", "with_provenance", "flat_provenance", "read_provenance"]

log = logging.getLogger(__name__)

#: The prefix of daf_butler's provenance keys in Parquet metadata (`lsst.daf.butler.delegates.arrowtable`).
PREFIX = "LSST.BUTLER"


def with_provenance(table: pa.Table, provenance, ref) -> pa.Table:
    """``table`` with ``provenance`` (a `DatasetProvenance`) of dataset ``ref`` in its schema metadata.

    The keys and values are those daf_butler writes for an Astropy table (``simple_types``,
    at most 2000 inputs); previous provenance keys are replaced. The data are not touched.
    """
    from lsst.daf.butler import DatasetProvenance

    flat = provenance.to_flat_dict(ref, prefix=PREFIX, sep=".", simple_types=True, max_inputs=2000)
    meta = dict(table.schema.metadata or {})
    old = {k.decode(errors="replace"): k for k in meta}
    stale = dict.fromkeys(old)
    DatasetProvenance.strip_provenance_from_flat_dict(stale)  # which keys are earlier provenance
    for name in set(old) - set(stale):
        del meta[old[name]]
    meta.update({k.encode(): str(v).encode() for k, v in flat.items()})
    return table.replace_schema_metadata(meta)


def flat_provenance(butler, ref) -> dict[str, str]:
    """The ``LSST.BUTLER.*`` keys of a Parquet dataset's file (only its footer is read); {} if none."""
    import pyarrow.parquet as pq
    from lsst.resources import ResourcePath

    uri = ResourcePath(butler.getURI(ref))
    if uri.getExtension() != ".parq" and uri.getExtension() != ".parquet":
        return {}
    with uri.as_local() as local:
        meta = pq.read_schema(local.ospath).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.decode().upper().startswith(PREFIX + ".")}


def read_provenance(butler, ref):
    """The `DatasetProvenance` recorded in a dataset's file, or None where nothing was recorded.

    A dataset put outside a quantum (ingested, simulated) has only its own ID recorded: its
    provenance then has no quantum and no inputs.
    """
    from lsst.daf.butler import DatasetProvenance

    flat = flat_provenance(butler, ref)
    if not flat:
        return None
    try:
        provenance, _ = DatasetProvenance.from_flat_dict(flat, butler)
    except (ValueError, RuntimeError) as exc:  # an input since removed from the repository
        log.warning("provenance of %s cannot be resolved: %s", ref, exc)
        return None
    return provenance
