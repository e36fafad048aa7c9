"""Bokeh figures of the dashboard, built once per browser session and updated in place.

Every plot is a small class that owns one named Bokeh figure (``sky``, ``scatter``, ``sky_rows``,
``histogram``, ``series``, ``failures_sky``) and an ``update`` method that replaces the data of
its ``ColumnDataSource``, its colour range, title and tags. A drill-down step therefore sends a
few kB (polygons, per-visit points) to a few hundred kB (an image) to the browser instead of a
new page. Tags say what a plot shows (``level:tract``, ``tract:9813``) and are set last, so a
browser test or the benchmark that waits for them sees the data too.

Per-row tables longer than `RASTER_ABOVE` are aggregated on the server with Datashader into an
image (mean value per pixel, or the count for value-against-magnitude); shorter ones are points
on a canvas. Measured in headless Chromium without a GPU (software WebGL), a 400x500 image paints
faster than a few thousand points with either backend, and its size does not grow with the rows.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
from bokeh.models import (BasicTickFormatter, ColorBar, ColumnDataSource, CustomJSTickFormatter, HoverTool, LinearColorMapper,
                          LogColorMapper)
from bokeh.palettes import Inferno256, Viridis256
from bokeh.plotting import figure

from .model import unwrap_ra

__all__ = ["RASTER_ABOVE", "sky_reference", "sky_figure", "polygon_data", "outline_data", "PolygonPlot",
           "PointsPlot", "HistogramPlot", "histogram_data", "SeriesPlot", "failure_data", "raster"]

#: Per-row tables longer than this are datashaded instead of drawn point by point (a patch's
#: objects are points; a tract's are an image).
RASTER_ABOVE = 2_000
#: Size (pixels) of a datashaded image.
RASTER_SHAPE = (300, 400)


def sky_reference(polygons) -> float:
    """The RA (deg) to centre sky plots on: circular mean of the polygons' first vertices."""
    ras = [p[0][0] for p in polygons if p is not None and not isinstance(p, float) and len(p)]
    if not ras:
        return 180.0
    angles = np.radians(ras)
    return float(np.degrees(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360.0)


def sky_figure(tags: list[str], *, name: str = "sky", title: str = "", height: int = 420) -> figure:
    """An empty RA/Dec figure (RA increasing to the left), named and tagged for waiting on it."""
    fig = figure(title=title, name=name, tags=list(tags), height=height, sizing_mode="stretch_width",
                 tools="pan,wheel_zoom,box_zoom,reset,tap", x_axis_label="RA (deg)", y_axis_label="Dec (deg)")
    fig.x_range.flipped = True
    fig.xaxis.formatter = CustomJSTickFormatter(code="return (((tick % 360) + 360) % 360).toFixed(1)")
    return fig


def _vertices(polygons: pd.DataFrame, reference: float) -> tuple[list, list, np.ndarray]:
    xs, ys, keep = [], [], []
    for polygon in polygons["polygon"] if "polygon" in polygons else []:
        ok = polygon is not None and not isinstance(polygon, float) and len(polygon) > 0
        keep.append(ok)
        if ok:
            vertices = np.asarray(polygon, dtype=float)
            ra = unwrap_ra(vertices[:, 0], reference)
            xs.append(unwrap_ra(ra, float(ra[0])))  # a polygon across the wrap stays in one piece
            ys.append(vertices[:, 1])
    return xs, ys, np.array(keep, dtype=bool)


def polygon_data(children: pd.DataFrame, key: str, reference: float) -> dict:
    """Columns for `PolygonPlot`: row ``i`` is the ``i``-th row of ``children`` that has a polygon."""
    xs, ys, keep = _vertices(children, reference)
    shown = children[keep] if len(keep) else children.iloc[0:0]
    data = {"xs": xs, "ys": ys, key: shown[key].astype(int).to_numpy() if len(shown) else np.zeros(0, int),
            "value": shown["value"].astype(float).to_numpy() if len(shown) else np.zeros(0)}
    for column in ("status", "n", "band"):
        data[column] = shown[column].astype(str).to_numpy() if column in shown else np.full(len(shown), "")
    return data


def outline_data(polygons: pd.DataFrame, key: str, reference: float) -> dict:
    """Closed outlines (for ``multi_line``) of tracts or visits, with their ids."""
    xs, ys, keep = _vertices(polygons, reference)
    ids = polygons.loc[keep, key].astype(int).to_numpy() if len(xs) else np.zeros(0, int)
    return {"xs": [np.append(x, x[0]) for x in xs], "ys": [np.append(y, y[0]) for y in ys], "id": ids}


def _range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    return low, high if high > low else low + 1e-9


class PolygonPlot:
    """Tracts/patches/visits/detectors on the sky coloured by value, with hover, tap and outlines.

    ``on_pick(i)`` is called with the row index (into the last ``data`` given) of a tapped polygon.
    """

    def __init__(self, name: str = "sky", *, outline_color: str = "red", dashed: bool = True, height: int = 420):
        self.fig = sky_figure([], name=name, height=height)
        self.mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0, nan_color="lightgrey")
        self.outlines = ColumnDataSource({"xs": [], "ys": [], "id": []})
        self.base = ColumnDataSource({"xs": [], "ys": [], "id": []})
        base = self.fig.multi_line("xs", "ys", source=self.base, line_color="#888888", line_width=1.5)
        self.source = ColumnDataSource({"xs": [], "ys": [], "value": []})
        renderer = self.fig.patches("xs", "ys", source=self.source, fill_color={"field": "value", "transform": self.mapper},
                                    line_color="black", line_width=1, fill_alpha=0.85, nonselection_fill_alpha=0.35,
                                    selection_line_color="red", selection_line_width=3)
        lines = self.fig.multi_line("xs", "ys", source=self.outlines, line_color=outline_color, line_width=1.5,
                                    line_dash="dashed" if dashed else "solid")
        self.hover = HoverTool(renderers=[renderer], tooltips=[("value", "@value")])
        self.fig.add_tools(self.hover, HoverTool(renderers=[lines, base], tooltips=[("id", "@id")]))
        self.colorbar = ColorBar(color_mapper=self.mapper)
        self.fig.add_layout(self.colorbar, "right")
        self._on_pick = None
        self._muted = False
        self.source.selected.on_change("indices", self._picked)

    def _picked(self, attr, old, new) -> None:
        if new and self._on_pick is not None and not self._muted:
            self._on_pick(int(new[0]))

    def on_pick(self, callback) -> None:
        self._on_pick = callback

    def update(self, data: dict, key: str, unit: str, tags: list[str], title: str | None,
               base: dict | None = None, outlines: dict | None = None, selected: list[int] = ()) -> None:
        """Replace the polygons (``polygon_data``), the grey base outlines and the red outlines.

        ``selected`` rows are drawn selected; ``title`` None keeps the title (a new one makes the
        browser lay the page out again).
        """
        self._muted = True
        try:
            if self.source.data is not data:
                self.source.data = data
            self.source.selected.indices = list(selected)
        finally:
            self._muted = False
        self.base.data = base if base is not None else {"xs": [], "ys": [], "id": []}
        self.outlines.data = outlines if outlines is not None else {"xs": [], "ys": [], "id": []}
        self.mapper.update(**dict(zip(("low", "high"), _range(np.asarray(data["value"], dtype=float)))))
        self.colorbar.title = unit or None
        self.hover.tooltips = [(key, f"@{key}"), ("value", f"@value{{0.000}} {unit}"), ("status", "@status"),
                               ("n", "@n"), ("band", "@band")]
        if title is not None:
            self.fig.title.text = title
        self.fig.tags = list(tags)


def raster(x: np.ndarray, y: np.ndarray, c: np.ndarray | None) -> dict:
    """Datashade points into an image: the mean of ``c`` per pixel (the count if ``c`` is None).

    Returns the columns of a Bokeh ``image`` glyph (NaN where a pixel holds no point).
    """
    import datashader as ds

    def pad(lo: float, hi: float) -> tuple[float, float]:
        return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)

    x_range, y_range = pad(float(x.min()), float(x.max())), pad(float(y.min()), float(y.max()))
    frame = pd.DataFrame({"x": x, "y": y, "c": c if c is not None else np.ones(len(x))})
    canvas = ds.Canvas(plot_width=RASTER_SHAPE[1], plot_height=RASTER_SHAPE[0], x_range=x_range, y_range=y_range)
    agg = canvas.points(frame, "x", "y", agg=ds.mean("c") if c is not None else ds.count())
    image = agg.to_numpy().astype("float32")
    if c is None:
        image[image == 0] = np.nan
    return {"image": [image], "x": [x_range[0]], "y": [y_range[0]],
            "dw": [x_range[1] - x_range[0]], "dh": [y_range[1] - y_range[0]]}


class PointsPlot:
    """Per-row values as points, or as a datashaded image above `RASTER_ABOVE` rows.

    ``density=True`` (value against magnitude) colours the image by count; otherwise points and
    pixels are coloured by value (the mean value of a pixel's rows).
    """

    def __init__(self, name: str, xlabel: str, ylabel: str, *, flipped: bool = False, density: bool = False):
        self.density = density
        self.fig = figure(name=name, height=380, sizing_mode="stretch_width", output_backend="canvas",
                          tools="pan,wheel_zoom,box_zoom,reset,hover", x_axis_label=xlabel, y_axis_label=ylabel)
        self.fig.x_range.flipped = flipped
        # one colour mapper per figure, so that the colour bar never changes model (that would lay the page out again)
        self.mapper = (LogColorMapper(palette=Inferno256, low=1.0, high=10.0, nan_color=(0, 0, 0, 0)) if density
                       else LinearColorMapper(palette=Viridis256, low=0.0, high=1.0, nan_color=(0, 0, 0, 0)))
        self.points = ColumnDataSource({"x": [], "y": [], "c": []})
        color = "#1f77b4" if density else {"field": "c", "transform": self.mapper}
        self.points_renderer = self.fig.scatter("x", "y", source=self.points, size=3 if density else 4,
                                                alpha=0.6 if density else 1.0, color=color)
        self.image = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        self.image_renderer = self.fig.image("image", x="x", y="y", dw="dw", dh="dh", source=self.image,
                                             color_mapper=self.mapper)
        self.colorbar = ColorBar(color_mapper=self.mapper, title="count (datashaded)" if density else None)
        self.fig.add_layout(self.colorbar, "right")
        self.fig.select_one(HoverTool).tooltips = [("x", "$x"), ("y", "$y")]

    @staticmethod
    def prepare(x, y, c, *, density: bool = False) -> dict:
        """What to draw for these rows (finite ones): points, or an image above `RASTER_ABOVE` rows.

        Pure and picklable, so a server can compute it once per view and share it between sessions.
        """
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        c = np.asarray(c, dtype=float) if c is not None else None
        ok = np.isfinite(x) & np.isfinite(y) & (np.isfinite(c) if c is not None else True)
        x, y, c = x[ok], y[ok], (c[ok] if c is not None else None)
        if len(x) > RASTER_ABOVE:
            image = raster(x, y, None if density else c)
            return {"n": len(x), "image": image, "range": _range(image["image"][0].ravel())}
        c = c if c is not None else np.zeros(len(x))
        return {"n": len(x), "points": {"x": x, "y": y, "c": c}, "range": _range(c)}

    def show(self, payload: dict, unit: str, tags: list[str], title: str | None = None) -> None:
        """Replace what the figure shows by ``payload`` (from `prepare`)."""
        low, high = payload["range"]
        if "image" in payload:
            self.points.data = {"x": [], "y": [], "c": []}
            self.image.data = payload["image"]
            if self.density:
                low, high = max(low, 1.0), max(high, 1.0 + 1e-9)
        else:
            self.image.data = {"image": [], "x": [], "y": [], "dw": [], "dh": []}
            self.points.data = payload["points"]
        if not (self.density and "image" not in payload):
            self.mapper.update(low=low, high=high)
        if not self.density:
            self.colorbar.title = unit or None
        if title is not None:
            self.fig.title.text = title
        self.fig.tags = list(tags) + [f"n:{payload['n']}"]


def histogram_data(values) -> dict:
    """40-bin histogram of the finite values: the columns of `HistogramPlot`."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        counts, edges = np.zeros(1), np.array([0.0, 1.0])
    else:
        low, high = float(finite.min()), float(finite.max())
        if high - low <= 1e-9 * max(abs(low), abs(high), 1e-300):  # all (nearly) equal: one bin around them
            counts, edges = np.array([len(finite)]), np.array([low - 0.5 * max(abs(low), 1.0) * 1e-6,
                                                               high + 0.5 * max(abs(high), 1.0) * 1e-6])
        else:
            counts, edges = np.histogram(finite, bins=40)
    return {"left": edges[:-1], "right": edges[1:], "top": counts, "n": len(finite)}


class HistogramPlot:
    """Distribution of values (finite ones), 40 bins."""

    def __init__(self, name: str = "histogram"):
        self.fig = figure(name=name, height=300, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,hover",
                          y_axis_label="count")
        self.source = ColumnDataSource({"left": [], "right": [], "top": []})
        self.fig.quad(left="left", right="right", bottom=0, top="top", source=self.source, fill_color="#30a2da",
                      line_color="white")
        self.fig.select_one(HoverTool).tooltips = [("range", "@left{0.000} – @right{0.000}"), ("count", "@top")]

    def show(self, data: dict, unit: str, tags: list[str], title: str | None = None) -> None:
        """Show a histogram from `histogram_data`."""
        self.source.data = {k: data[k] for k in ("left", "right", "top")}
        self.fig.xaxis.axis_label = f"value ({unit})" if unit else "value"
        if title is not None:
            self.fig.title.text = title
        self.fig.tags = list(tags) + [f"n:{data['n']}"]


class SeriesPlot:
    """The metric against visit (or detector) number; outliers as red crosses, the rest blue dots."""

    def __init__(self, name: str = "series"):
        self.fig = figure(name=name, height=300, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,hover,tap")
        self.normal = ColumnDataSource({"x": [], "value": []})
        self.bad = ColumnDataSource({"x": [], "value": []})
        self.fig.scatter("x", "value", source=self.normal, color="#1f77b4", size=7)
        self.fig.scatter("x", "value", source=self.bad, color="red", size=11, marker="x", line_width=3)
        self.fig.xaxis.formatter = BasicTickFormatter(use_scientific=False)
        self.hover = self.fig.select_one(HoverTool)

    def update(self, children: pd.DataFrame, key: str, unit: str, tags: list[str], title: str | None = None) -> None:
        x = children[key].astype(int).to_numpy()
        value = children["value"].astype(float).to_numpy()
        outlier = children["outlier"].astype(bool).to_numpy()
        self.normal.data = {"x": x[~outlier], "value": value[~outlier]}
        self.bad.data = {"x": x[outlier], "value": value[outlier]}
        self.fig.xaxis.axis_label = key
        self.fig.yaxis.axis_label = f"value ({unit})" if unit else "value"
        self.hover.tooltips = [(key, "@x"), ("value", f"@value{{0.000}} {unit}")]
        if title is not None:
            self.fig.title.text = title
        self.fig.tags = list(tags) + [f"outliers:{','.join(str(v) for v in x[outlier])}"]


def failure_data(failures: pd.DataFrame, reference: float) -> dict:
    """Failed quanta at their sky positions (``ra``/``dec`` in deg), with their hover columns."""
    frame = failures.dropna(subset=["ra", "dec"])
    data = {"ra": unwrap_ra(frame["ra"].to_numpy(dtype=float), reference), "dec": frame["dec"].to_numpy(dtype=float)}
    for column in ("label", "task", "data_id", "exception", "message"):
        if column in frame:
            data[column] = frame[column].astype(str).to_numpy()
    return data
