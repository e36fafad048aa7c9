"""Per-session drill-down state, mirrored in the page URL.

One `DrillState` is made per browser session (never at module level), and its parameters are
synced with the URL query (``?view=metric&metric=...&tract=9813``), so every page is a link that
can be shared, bookmarked, or opened by an alert. `read_query` reads such a query by the
dashboard's own rules before it is synced, so that a value the state cannot take is said, not
dropped.
"""

from __future__ import annotations

import param

from surveyqa.errors import SurveyQAError

__all__ = ["DrillState", "URL_KEYS", "VIEWS", "COMPARE_VIEWS", "SIDES", "DATA_ID_KEYS", "read_query"]

VIEWS = ["quicklook", "metric", "visits", "focalplane", "linked", "failures", "compare", "compare_metric", "compare_visits"]
#: Views of a server that compares two runs (`surveyqa dashboard A --compare B`).
COMPARE_VIEWS = {"compare", "compare_metric", "compare_visits"}
#: Which run a single-run page shows when two are compared: A (the reference) or B.
SIDES = ["a", "b"]
#: State parameter -> URL query key.
URL_KEYS = {k: k for k in ("view", "metric", "band", "tract", "patch", "visit", "detector",
                           "sky_metric", "sky_band", "show_visits", "side", "metrics", "level", "selected")}
#: The URL keys that are data IDs (integers).
DATA_ID_KEYS = ("tract", "patch", "visit", "detector")
#: Views that show one metric: opened without one, they would silently show the quick look.
_METRIC_VIEWS = {"metric", "visits", "focalplane"}


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
    metrics = param.String(default=None, allow_None=True, doc="linked view: metric names, comma-separated")
    level = param.String(default=None, allow_None=True, doc="linked view: detector, visit, patch or tract")
    selected = param.String(default=None, allow_None=True,
                            doc="linked view: the data IDs selected, each the level's keys joined by '.' (424.39,1278.5)")

    def go(self, **changes) -> None:
        """Move to another place: unspecified drill keys are cleared, in one redraw."""
        target = {"tract": None, "patch": None, "visit": None, "detector": None, "show_visits": False,
                  "metrics": None, "level": None, "selected": None}
        target.update(changes)
        self.param.update(**target)

    def query(self) -> dict:
        """The state as a URL query (None values left out)."""
        return {k: getattr(self, k) for k in URL_KEYS
                if getattr(self, k) not in (None, False) and not (k == "view" and self.view == "quicklook")
                and not (k == "side" and self.side == "a")}


def read_query(args: dict) -> tuple[dict, list[SurveyQAError]]:
    """The `DrillState` values a URL query gives, and what is wrong with it, one error per key.

    Parameters
    ----------
    args : dict
        Query key -> list of values (bytes or str), as ``pn.state.session_args`` holds them;
        the last value of a key counts, keys that are not `URL_KEYS` are ignored.

    Panel's own sync guesses each value's type (``band=1`` becomes a number) and drops the
    whole update when one value does not fit its parameter (``tract=abc``): the page would
    then show another view without a word. Here the data IDs are read as `model.data_id`
    reads them for the JSON routes, and the other keys checked against what they may be.
    Whether the metric, band or data ID exists is the model's to say, when the page is drawn.
    """
    from .model import data_id

    values: dict = {}
    errors: list[SurveyQAError] = []
    for key in URL_KEYS:
        given = args.get(key)
        if not given:
            continue
        raw = given[-1]
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            if text == "null":  # how Panel's sync of the address writes a key the page cleared
                continue
            values[key] = _read_value(key, text, data_id)
        except UnicodeDecodeError:
            errors.append(SurveyQAError(f"{key} is not UTF-8 text", f"give {key} in plain text"))
        except SurveyQAError as exc:
            errors.append(exc)
    values = {k: v for k, v in values.items() if v is not None}
    if values.get("view") in _METRIC_VIEWS and not values.get("metric"):
        errors.append(SurveyQAError(f"view={values['view']} needs a metric",
                                    "add metric=<name> to the address (the quick look lists them)"))
    return values, errors


def _read_value(key: str, text: str, data_id) -> object:
    """One query value as its `DrillState` parameter takes it; a `SurveyQAError` if it cannot."""
    if key in DATA_ID_KEYS:
        return data_id(key, text)
    if key == "view":
        if text not in VIEWS:
            raise SurveyQAError(f"no view {text[:40]!r}", f"views: {', '.join(VIEWS)}")
        return text
    if key == "side":
        if text not in SIDES:
            raise SurveyQAError(f"side={text[:20]!r} is neither a nor b", "side=a: this run, side=b: the compared run")
        return text
    if key == "show_visits":
        if text.lower() not in ("true", "false", ""):
            raise SurveyQAError(f"show_visits={text[:20]!r} is neither true nor false", "give show_visits=true")
        return text.lower() == "true"
    return text or None
