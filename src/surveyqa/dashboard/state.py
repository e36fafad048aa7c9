"""Per-session drill-down state, mirrored in the page URL.

One `DrillState` is made per browser session (never at module level), and its parameters are
synced with the URL query (``?view=metric&metric=...&tract=9813``), so every page is a link that
can be shared, bookmarked, or opened by an alert.
"""

from __future__ import annotations

import param

__all__ = ["DrillState", "URL_KEYS", "VIEWS", "COMPARE_VIEWS", "SIDES"]

VIEWS = ["quicklook", "metric", "visits", "focalplane", "failures", "compare", "compare_metric", "compare_visits"]
#: Views of a server that compares two runs (`surveyqa dashboard A --compare B`).
COMPARE_VIEWS = {"compare", "compare_metric", "compare_visits"}
#: Which run a single-run page shows when two are compared: A (the reference) or B.
SIDES = ["a", "b"]
#: State parameter -> URL query key.
URL_KEYS = {k: k for k in ("view", "metric", "band", "tract", "patch", "visit", "detector",
                           "sky_metric", "sky_band", "show_visits", "side")}


class DrillState(param.Parameterized):
    """Where one user is in the drill-down; changing it redraws the page."""

    view = param.Selector(default="quicklook", objects=VIEWS)
    metric = param.String(default=None, allow_None=True)
    band = param.String(default=None, allow_None=True)
    tract = param.Integer(default=None, allow_None=True)
    patch = param.Integer(default=None, allow_None=True)
    visit = param.Integer(default=None, allow_None=True)
    detector = param.Integer(default=None, allow_None=True)
    sky_metric = param.String(default=None, allow_None=True)
    sky_band = param.String(default=None, allow_None=True)
    show_visits = param.Boolean(default=False)
    side = param.Selector(default="a", objects=SIDES)

    def go(self, **changes) -> None:
        """Move to another place: unspecified drill keys are cleared, in one redraw."""
        target = {"tract": None, "patch": None, "visit": None, "detector": None, "show_visits": False}
        target.update(changes)
        self.param.update(**target)

    def query(self) -> dict:
        """The state as a URL query (None values left out)."""
        return {k: getattr(self, k) for k in URL_KEYS
                if getattr(self, k) not in (None, False) and not (k == "view" and self.view == "quicklook")
                and not (k == "side" and self.side == "a")}
