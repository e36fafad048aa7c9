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

import logging
import threading
import time

import numpy as np
import pandas as pd
from bokeh.models import (BasicTicker, BasicTickFormatter, ColorBar, ColumnDataSource, CustomJSTickFormatter, HoverTool, LinearColorMapper,
                          LogColorMapper, Range1d)
from bokeh.palettes import Inferno256, Viridis256
from bokeh.plotting import figure

from .model import unwrap_ra
from .payload import histogram_data, value_range

log = logging.getLogger(__name__)

__all__ = ["RASTER_ABOVE", "compile_kernels_in_background", "sky_reference", "sky_figure", "steady", "colour_bar", "colour_image", "polygon_data", "outline_data", "PolygonPlot",
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


def steady(fig: figure) -> figure:
    """Keep the figure's side panels one size whatever its data, so that new data never lays out the page.

    A Bokeh plot whose axis or colour bar changes width (new tick labels: "0.5" -> "1000") lays
    out the whole page again, 50-150 ms each in headless Chromium, several per drill-down step.
    The y tick labels are therefore drawn along the axis (their extent across it is the font's
    height) and colour bars lie below the plot (`colour_bar`), with titles never empty.
    """
    for axis in fig.yaxis:
        axis.major_label_orientation = "vertical"
    return fig


def colour_bar(fig: figure, mapper, title: str) -> ColorBar:
    """A horizontal colour bar below the plot: its height does not depend on its tick labels."""
    bar = ColorBar(color_mapper=mapper, orientation="horizontal", title=title or " ", height=12,
                   padding=4, margin=4)
    fig.add_layout(bar, "below")
    return bar


def sky_figure(tags: list[str], *, name: str = "sky", title: str = "", height: int = 420) -> figure:
    """An empty RA/Dec figure (RA increasing to the left), named and tagged for waiting on it."""
    fig = figure(title=title, name=name, tags=list(tags), height=height, sizing_mode="stretch_width",
                 tools="pan,wheel_zoom,box_zoom,reset,tap", x_axis_label="RA (deg)", y_axis_label="Dec (deg)")
    fig.x_range.flipped = True
    fig.xaxis.formatter = CustomJSTickFormatter(code="return (((tick % 360) + 360) % 360).toFixed(1)")
    return steady(fig)


def plane_figure(tags: list[str], *, name: str = "focalplane", title: str = "", height: int = 520) -> figure:
    """An empty focal-plane figure: tangent-plane offsets from the visit centre (deg), equal scales."""
    fig = figure(title=title, name=name, tags=list(tags), height=height, sizing_mode="stretch_width",
                 match_aspect=True, tools="pan,wheel_zoom,box_zoom,reset,tap",
                 x_axis_label="x on the sky (deg, RA increasing to the left)", y_axis_label="y (deg, north up)")
    fig.x_range.flipped = True
    return steady(fig)


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
    return value_range(values)


class PolygonPlot:
    """Tracts/patches/visits/detectors on the sky coloured by value, with hover, tap and outlines.

    ``on_pick(i)`` is called with the row index (into the last ``data`` given) of a tapped polygon.
    """

    def __init__(self, name: str = "sky", *, outline_color: str = "red", dashed: bool = True, height: int = 420,
                 plane: bool = False):
        self.fig = plane_figure([], name=name, height=height) if plane else sky_figure([], name=name, height=height)
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
        self.colorbar = colour_bar(self.fig, self.mapper, "value")
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
        self.colorbar.title = f"value ({unit})" if unit else "value"
        self.hover.tooltips = [(key, f"@{key}"), ("value", f"@value{{0.000}} {unit}"), ("status", "@status"),
                               ("n", "@n"), ("band", "@band")]
        if title is not None:
            self.fig.title.text = title
        self.fig.tags = list(tags)


_COMPILING = threading.Lock()
_COMPILED = False


def compile_kernels_in_background() -> None:
    """Datashade a few points the way the views do, in a thread, once per process: Numba compiles now.

    The first datashaded image of a server cost ~2 s of compiling (the first tract step of the
    first session took 2.7 s). Started once the first page is on screen (`app`), not with the
    server: compiling holds the interpreter, and the first quick look waited for it.
    The types here (float64 x, y and value; mean and count) are those of every view (`PointsPlot.prepare`).
    """
    global _COMPILED
    with _COMPILING:
        if _COMPILED:
            return
        _COMPILED = True

    def run() -> None:
        started = time.perf_counter()
        points = np.linspace(0.0, 1.0, 64)
        try:
            raster(points, points, points)
            raster(points, points, None)
        except Exception as exc:  # noqa: BLE001 - only a speed-up: the views datashade (and report) themselves
            log.info("could not compile the datashader kernels ahead: %s", exc)
            return
        log.info("datashader kernels compiled in %.1f s", time.perf_counter() - started)

    threading.Thread(target=run, name="surveyqa-compile-datashader", daemon=True).start()


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


def _palette_rgba(palette) -> np.ndarray:
    """A Bokeh palette of '#rrggbb' colours as RGBA uint32 (little-endian: what ``image_rgba`` reads)."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in palette], dtype=np.uint32)
    return rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16) | np.uint32(255 << 24)


_RGBA = {"Viridis256": _palette_rgba(Viridis256), "Inferno256": _palette_rgba(Inferno256)}


def colour_image(image: np.ndarray, low: float, high: float, *, log: bool = False,
                 palette: str = "Viridis256") -> np.ndarray:
    """Colour an image as Bokeh's Linear/LogColorMapper would, NaN transparent (RGBA uint32).

    The browser then paints the image as it comes, instead of colour-mapping its pixels at
    every step (~100 ms for two 300x400 images in headless Chromium); the figure's colour bar
    keeps the mapper with the same range.
    """
    colours = _RGBA[palette]
    n = len(colours)
    value = image.astype(float)
    ok = np.isfinite(value)
    if log:
        ok &= value > 0
        value = np.log(np.where(ok, value, 1.0))
        low, high = np.log(max(low, 1e-300)), np.log(max(high, 1e-300))
    scale = n / (high - low) if high > low else 0.0
    index = np.clip(np.floor((np.where(ok, value, low) - low) * scale), 0, n - 1).astype(np.intp)
    out = colours[index]
    out[~ok] = 0
    return out.astype(np.uint32)


class PointsPlot:
    """Per-row values as points, or as a datashaded image above `RASTER_ABOVE` rows.

    ``density=True`` (value against magnitude) colours the image by count; otherwise points and
    pixels are coloured by value (the mean value of a pixel's rows).
    """

    def __init__(self, name: str, xlabel: str, ylabel: str, *, flipped: bool = False, density: bool = False):
        self.density, self.flipped = density, flipped
        # Explicit ranges, set from the data on the server: with data ranges an empty figure has no
        # axes, and its first data would add them and lay the whole page out again.
        self.fig = figure(name=name, height=380, sizing_mode="stretch_width", output_backend="canvas",
                          tools="pan,wheel_zoom,box_zoom,reset,hover", x_axis_label=xlabel, y_axis_label=ylabel,
                          x_range=Range1d(*((1.0, 0.0) if flipped else (0.0, 1.0))), y_range=Range1d(0.0, 1.0))
        # one colour mapper per figure, so that the colour bar never changes model (that would lay the page out again)
        self.mapper = (LogColorMapper(palette=Inferno256, low=1.0, high=10.0, nan_color=(0, 0, 0, 0)) if density
                       else LinearColorMapper(palette=Viridis256, low=0.0, high=1.0, nan_color=(0, 0, 0, 0)))
        self.points = ColumnDataSource({"x": [], "y": [], "c": []})
        color = "#1f77b4" if density else {"field": "c", "transform": self.mapper}
        self.points_renderer = self.fig.scatter("x", "y", source=self.points, size=3 if density else 4,
                                                alpha=0.6 if density else 1.0, color=color)
        self.image = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        # coloured on the server (`colour_image`): the mapper only draws the colour bar
        self.image_renderer = self.fig.image_rgba("image", x="x", y="y", dw="dw", dh="dh", source=self.image)
        self.colorbar = colour_bar(self.fig, self.mapper, "count (datashaded)" if density else "value")
        steady(self.fig)
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
            low, high = _range(image["image"][0].ravel())
            if density:
                low, high = max(low, 1.0), max(high, 1.0 + 1e-9)
            rgba = colour_image(image["image"][0], low, high, log=density,
                                palette="Inferno256" if density else "Viridis256")
            return {"n": len(x), "image": {**image, "image": [rgba]}, "range": (low, high),
                    "x_range": (image["x"][0], image["x"][0] + image["dw"][0]),
                    "y_range": (image["y"][0], image["y"][0] + image["dh"][0])}
        c = c if c is not None else np.zeros(len(x))
        return {"n": len(x), "points": {"x": x, "y": y, "c": c}, "range": _range(c),
                "x_range": _padded(x), "y_range": _padded(y)}

    def show(self, payload: dict, unit: str, tags: list[str], title: str | None = None) -> None:
        """Replace what the figure shows by ``payload`` (from `prepare`)."""
        low, high = payload["range"]
        x0, x1 = payload.get("x_range", (0.0, 1.0))
        if self.flipped:
            x0, x1 = x1, x0
        y0, y1 = payload.get("y_range", (0.0, 1.0))
        self.fig.x_range.update(start=x0, end=x1, reset_start=x0, reset_end=x1)
        self.fig.y_range.update(start=y0, end=y1, reset_start=y0, reset_end=y1)
        if "image" in payload:
            self.points.data = {"x": [], "y": [], "c": []}
            self.image.data = payload["image"]
        else:
            self.image.data = {"image": [], "x": [], "y": [], "dw": [], "dh": []}
            self.points.data = payload["points"]
        if not (self.density and "image" not in payload):
            self.mapper.update(low=low, high=high)
        if not self.density:
            self.colorbar.title = f"value ({unit})" if unit else "value"
        if title is not None:
            self.fig.title.text = title
        self.fig.tags = list(tags) + [f"n:{payload['n']}"]


def _padded(values: np.ndarray, fraction: float = 0.05) -> tuple[float, float]:
    """(low, high) of the finite values with a margin on each side; (0, 1) if there are none."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = (high - low) * fraction if high > low else max(abs(low), 1.0) * fraction
    return low - pad, high + pad


class HistogramPlot:
    """Distribution of values (finite ones), 40 bins."""

    def __init__(self, name: str = "histogram"):
        self.fig = figure(name=name, height=300, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,hover",
                          y_axis_label="count")
        self.source = ColumnDataSource({"left": [], "right": [], "top": []})
        self.fig.quad(left="left", right="right", bottom=0, top="top", source=self.source, fill_color="#30a2da",
                      line_color="white")
        self.fig.select_one(HoverTool).tooltips = [("range", "@left{0.000} – @right{0.000}"), ("count", "@top")]
        steady(self.fig)

    def show(self, data: dict, unit: str, tags: list[str], title: str | None = None) -> None:
        """Show a histogram from `histogram_data`."""
        self.source.data = {k: data[k] for k in ("left", "right", "top")}
        one = data.get("constant")
        self.fig.xaxis.axis_label = ((f"value ({unit})" if unit else "value")
                                     + (f": all {data['n']} values are {one:.6g}" if one is not None else ""))
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
        self.fig.xaxis.ticker = BasicTicker(min_interval=1, desired_num_ticks=8)  # ids: no tick at 109005.5
        self.hover = self.fig.select_one(HoverTool)
        steady(self.fig)

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
