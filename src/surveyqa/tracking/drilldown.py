"""Open the drill-down dashboard on the repository and collection of a tracked run.

QAWG-REC-40 asks that a tracked value open the drill-down on the outputs that produced it. A run
records where its outputs live (repository, collection); `DashboardLauncher` starts one
dashboard server per (repository, collection) on first use, keeps it for the service's lifetime,
and turns a metric and data ID into the dashboard's own URL state (coadd mode for tract/patch
values, visit mode for visit/detector values).
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any

from surveyqa.errors import SurveyQAError

__all__ = ["DashboardLauncher", "dashboard_query"]


def dashboard_query(metric: str, data_id: dict[str, Any]) -> str:
    """The dashboard URL query showing ``metric`` at ``data_id``."""
    if data_id.get("visit") is not None:
        state = {"view": "visits", "metric": metric, "band": data_id.get("band"), "visit": data_id.get("visit"),
                 "detector": data_id.get("detector")}
    else:
        state = {"view": "metric", "metric": metric, "band": data_id.get("band"), "tract": data_id.get("tract"),
                 "patch": data_id.get("patch")}
    return urllib.parse.urlencode({k: v for k, v in state.items() if v is not None})


class DashboardLauncher:
    """Dashboard servers of the repositories the tracked runs point at, started on demand."""

    def __init__(self, address: str = "127.0.0.1"):
        self.address = address
        self._servers: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def url(self, repo: str, collection: str, metric: str, data_id: dict[str, Any]) -> str:
        """The URL of the dashboard on ``repo``/``collection`` showing ``metric`` at ``data_id``.

        Raises
        ------
        SurveyQAError
            If the repository or collection cannot be opened from this service's machine.
        """
        from surveyqa.dashboard import serve

        with self._lock:
            server = self._servers.get((repo, collection))
            if server is None:
                try:
                    server, _ = serve(repo, collection, address=self.address)
                except SurveyQAError as exc:
                    raise SurveyQAError(f"cannot open the run's outputs: {exc.message}",
                                        "the repository must be readable from the tracking service's machine") from exc
                self._servers[(repo, collection)] = server
        return f"{server.url.rstrip('/')}/?{dashboard_query(metric, data_id)}"

    def stop(self) -> None:
        """Stop every dashboard this launcher started."""
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()
