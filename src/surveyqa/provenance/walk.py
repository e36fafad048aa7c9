"""From a dataset back to what made it, in the Butler's own records.

For a dataset: the quantum that wrote it (the ``LSST.BUTLER.QUANTUM`` key of its file), its task
(the run's ``<label>_config`` whose connections write that dataset type, confirmed by the
``<label>_metadata`` of the quantum, whose ``quantum.outputs`` lists the dataset's ID), that
task's configuration and its difference from the defaults, the software versions of the run
(``packages``) and the datasets the quantum read (``LSST.BUTLER.INPUT.*``:
`lsst.daf.butler.DatasetProvenance`), each followed back the same way while its file records a
quantum, up to ``depth`` steps. Nothing is stored beside the repository: what the Butler did
not record is said to be unknown, never guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from surveyqa.provenance.configs import config_diff, default_config, flatten_config, task_class_of
from surveyqa.provenance.locate import data_id_dict
from surveyqa.provenance.record import read_provenance

__all__ = ["Producer", "ProvenanceWalker", "dataset_entry", "NOT_RECORDED"]

log = logging.getLogger(__name__)

#: Said in place of inputs where the dataset's file records none (ingested data; or written before
#: the QA tasks recorded provenance).
NOT_RECORDED = "not recorded in the dataset's file"


def dataset_entry(ref) -> dict[str, Any]:
    """``{"dataset_type", "data_id", "run", "id"}`` of a `DatasetRef`."""
    return {"dataset_type": ref.datasetType.name, "data_id": data_id_dict(ref), "run": ref.run, "id": str(ref.id)}


@dataclass
class Producer:
    """The task and quantum that wrote a dataset, as the run records them."""

    label: str
    config: Any
    config_ref: Any
    data_id: dict
    metadata_ref: Any = None
    quantum: dict = field(default_factory=dict)

    def to_json(self, quantum_id) -> dict[str, Any]:
        q = self.quantum
        return {"label": self.label, "class": task_class_of(self.config), "quantum_id": quantum_id,
                "data_id": self.data_id,
                "metadata": None if self.metadata_ref is None else {
                    "dataset_type": self.metadata_ref.datasetType.name, "id": str(self.metadata_ref.id),
                    "start": _first(q.get("startUtc")), "end": _first(q.get("endUtc")), "node": q.get("nodeName")}}


def _first(value):
    return value[0] if isinstance(value, list) and value else value


class ProvenanceWalker:
    """Walks back from datasets of one repository; caches each run's configs and packages."""

    def __init__(self, butler):
        self.butler = butler
        self._configs: dict[str, dict[str, tuple]] = {}
        self._packages: dict[str, tuple] = {}

    # -- the run's records ------------------------------------------------------------------

    def configs(self, run: str) -> dict[str, tuple]:
        """``{label: (config, config_ref, connections)}`` of the tasks of a run."""
        if run not in self._configs:
            out = {}
            for dataset_type in self.butler.registry.queryDatasetTypes("*_config"):
                ref = self.butler.find_dataset(dataset_type.name, collections=run)
                if ref is None:
                    continue
                try:
                    config = self.butler.get(ref)
                    connections = config.connections.ConnectionsClass(config=config)
                except Exception as exc:  # noqa: BLE001 - a task whose code is not importable here
                    log.info("cannot load %s of %s: %s", dataset_type.name, run, exc)
                    continue
                out[dataset_type.name.removesuffix("_config")] = (config, ref, connections)
            self._configs[run] = out
        return self._configs[run]

    def packages(self, run: str) -> tuple[Any, dict[str, str]]:
        """The run's ``packages`` dataset and its versions (empty where none was written)."""
        if run not in self._packages:
            ref = self.butler.find_dataset("packages", collections=run) if self._has("packages") else None
            versions = {str(k): str(v) for k, v in sorted(dict(self.butler.get(ref)).items())} if ref else {}
            self._packages[run] = (ref, versions)
        return self._packages[run]

    def _has(self, name: str) -> bool:
        return bool(list(self.butler.registry.queryDatasetTypes(name)))

    def producer(self, ref) -> Producer | None:
        """The task of ``ref``'s run whose connections write its dataset type, and its quantum's metadata."""
        for label, (config, config_ref, connections) in self.configs(ref.run).items():
            names = {getattr(connections, n).name for n in connections.outputs}
            if ref.datasetType.name not in names:
                continue
            dims = self.butler.dimensions.conform(connections.dimensions)
            if not set(dims.required) <= set(ref.dataId.dimensions.names):
                data_id = {}
            else:
                data_id = {k: ref.dataId[k] for k in dims.required}
            producer = Producer(label, config, config_ref, data_id)
            if self._has(f"{label}_metadata"):
                meta_ref = self.butler.find_dataset(f"{label}_metadata", data_id, collections=ref.run)
                if meta_ref is not None:
                    quantum = self.butler.get(meta_ref).get("quantum")
                    recorded = quantum.to_dict() if quantum is not None else {}
                    if str(ref.id) in [str(x) for x in recorded.get("outputs", [])] or "outputs" not in recorded:
                        producer.metadata_ref, producer.quantum = meta_ref, recorded
            return producer
        return None

    # -- the walk ---------------------------------------------------------------------------

    def inputs(self, ref) -> tuple[Any, list | None]:
        """(quantum id, input refs) recorded in ``ref``'s file; inputs None where nothing is recorded."""
        provenance = read_provenance(self.butler, ref)
        if provenance is None or (provenance.quantum_id is None and not provenance.inputs):
            return None, None
        refs = self.butler.get_many_datasets([i.id for i in provenance.inputs])
        by_id = {r.id: r for r in refs}
        return provenance.quantum_id, [by_id[i.id] for i in provenance.inputs if i.id in by_id]

    def walk(self, ref, depth: int = 3, seen: set | None = None) -> dict[str, Any]:
        """``dataset``, ``task``, ``config``, ``packages`` and ``inputs`` of ``ref``, inputs followed ``depth - 1`` more steps.

        An input already described higher in the walk is named, not described again (``"seen": true``).
        """
        seen = set() if seen is None else seen
        seen.add(ref.id)
        out: dict[str, Any] = {"dataset": dataset_entry(ref)}
        quantum_id, inputs = self.inputs(ref)
        producer = self.producer(ref)
        if producer is None and quantum_id is None:
            out.update(task=None, config=None, packages=None)
        else:
            out["task"] = producer.to_json(str(quantum_id) if quantum_id else None) if producer else {
                "label": None, "class": None, "quantum_id": str(quantum_id), "data_id": {}, "metadata": None}
            out["config"] = self.config_entry(producer) if producer else None
            pkg_ref, versions = self.packages(ref.run)
            out["packages"] = {"id": str(pkg_ref.id) if pkg_ref else None, "versions": versions}
        if inputs is None:
            out["inputs"], out["inputs_note"] = [], NOT_RECORDED
            return out
        out["inputs"] = []
        for input_ref in inputs:
            entry = dataset_entry(input_ref)
            if input_ref.id in seen:
                entry["seen"] = True
            elif depth > 1:
                deeper = self.walk(input_ref, depth - 1, seen)
                if deeper.get("task") is not None:
                    entry.update({k: deeper[k] for k in ("task", "config", "packages", "inputs")})
            out["inputs"].append(entry)
        return out

    def config_entry(self, producer: Producer) -> dict[str, Any]:
        config = producer.config
        diff = config_diff(config, default_config(config))
        return {"dataset_type": producer.config_ref.datasetType.name, "id": str(producer.config_ref.id),
                "class": f"{type(config).__module__}.{type(config).__qualname__}",
                "values": flatten_config(config),
                "differs_from_defaults": {k: {"value": d["value"], "default": d["other"]} for k, d in diff.items()}}
