"""A task's recorded configuration, flattened, and how it differs from another (its defaults, another run's).

The Butler keeps each task's configuration of a run as ``<label>_config``; a difference is what
a developer needs first ("what did this run do differently?"), so configurations are compared
key by key on their flattened ``toDict()`` (``connections.sources``, ``max_srd_stars``, ...).
"""

from __future__ import annotations

from typing import Any

__all__ = ["flatten_config", "config_diff", "default_config", "task_class_of"]


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def flatten_config(config) -> dict[str, Any]:
    """``{"a.b": value}`` of a pex_config `Config`, values made JSON-ready."""
    out: dict[str, Any] = {}

    def walk(prefix: str, d: dict) -> None:
        for key, value in d.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(name + ".", value)
            else:
                out[name] = _plain(value)

    walk("", config.toDict())
    return out


def default_config(config):
    """A new instance of ``config``'s class: the defaults it is compared with."""
    return type(config)()


def config_diff(config, other) -> dict[str, dict[str, Any]]:
    """``{key: {"value": in config, "other": in other}}`` for every key where the two differ.

    A key present in only one of them (a field added between versions) shows with None on the other side.
    """
    a, b = flatten_config(config), (flatten_config(other) if other is not None else {})
    return {k: {"value": a.get(k), "other": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def task_class_of(config) -> str | None:
    """The full name of the PipelineTask whose ``ConfigClass`` is ``config``'s class, from its module."""
    import importlib
    import inspect

    module = importlib.import_module(type(config).__module__)
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if getattr(obj, "ConfigClass", None) is type(config) and hasattr(obj, "runQuantum"):
            return f"{obj.__module__}.{obj.__qualname__}"
    return None
