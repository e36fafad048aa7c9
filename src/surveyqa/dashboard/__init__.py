"""The drill-down dashboard (DMTN-085 §3.2, §4.12): quick look, metric view, tract -> patch -> object,
visit -> detector, failures, and a notebook of what is on screen.

Public API: `serve` (a QA repository), `serve_source` (any `DataSource`), `DataSource`,
`TableSource`, `CachedSource`. The web stack is imported only when a server is started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["serve", "serve_source", "DataSource", "TableSource", "CachedSource", "DashboardServer"]

if TYPE_CHECKING:  # pragma: no cover
    from .server import DashboardServer, serve, serve_source
    from .source import CachedSource, DataSource, TableSource


def __getattr__(name: str):
    if name in ("serve", "serve_source", "DashboardServer"):
        from . import server
        return getattr(server, name)
    if name in ("DataSource", "TableSource", "CachedSource"):
        from . import source
        return getattr(source, name)
    raise AttributeError(name)
