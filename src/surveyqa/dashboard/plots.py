"""HoloViews elements of the dashboard: sky polygons, per-row scatters, histograms, visit series.

Each plot carries a Bokeh model name (``sky``, ``scatter``, ``histogram``, ``series``, ...) and tags
saying what it shows (``level:tract``, ``tract:9813``), so browser tests and the benchmark can
wait for the plot of the level they asked for. Large per-row tables are rasterized with
Datashader on the server (a static image, sized to the data), small ones are WebGL points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the Bokeh backend the options below need)
from bokeh.models import ColorBar, ColumnDataSource, CustomJSTickFormatter, HoverTool, LinearColorMapper
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from holoviews.operation.datashader import rasterize

from .model import unwrap_ra

__all__ = ["sky_figure", "add_polygons", "add_outlines", "sky_rows", "value_vs_mag", "histogram", "series",
           "add_failures", "RASTER_ABOVE", "sky_reference"]

#: Per-row tables longer than this are datashaded instead of drawn point by point.
RASTER_ABOVE = 20_000
CMAP = "viridis"


def _named(name: str, tags: list[str]):
    def hook(plot, element):
        plot.state.name = name
        plot.state.tags = list(tags)
    return hook


def sky_reference(polygons: pd.Series) -> float:
    """The RA (deg) to centre sky plots on: circular mean of the polygons' first vertices."""
    ras = [p[0][0] for p in polygons if p is not None and len(p)]
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
    for polygon in polygons["polygon"]:
        ok = polygon is not None and not isinstance(polygon, float) and len(polygon) > 0
        keep.append(ok)
        if ok:
            vertices = np.asarray(polygon, dtype=float)
            ra = unwrap_ra(vertices[:, 0], reference)
            xs.append(unwrap_ra(ra, float(ra[0])))  # a polygon across the wrap stays in one piece
            ys.append(vertices[:, 1])
    return xs, ys, np.array(keep, dtype=bool)


def add_polygons(fig: figure, children: pd.DataFrame, key: str, unit: str, reference: float) -> ColumnDataSource:
    """Tracts/patches/visits/detectors coloured by value, with hover and tap; returns their data source.

    Row ``i`` of the returned source is row ``i`` of ``children`` with a polygon (the tap index).
    """
    xs, ys, keep = _vertices(children, reference)
    shown = children[keep]
    data = {"xs": xs, "ys": ys, key: shown[key].astype(int).to_numpy(),
            "value": shown["value"].astype(float).to_numpy()}
    extra = [c for c in ("status", "n", "band") if c in shown]
    for column in extra:
        data[column] = shown[column].astype(str).to_numpy()
    source = ColumnDataSource(data)
    finite = data["value"][np.isfinite(data["value"])]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    mapper = LinearColorMapper(palette=Viridis256, low=low, high=high if high > low else low + 1e-9,
                               nan_color="lightgrey")
    renderer = fig.patches("xs", "ys", source=source, fill_color={"field": "value", "transform": mapper},
                           line_color="black", line_width=1, fill_alpha=0.85,
                           nonselection_fill_alpha=0.35, selection_line_color="red", selection_line_width=3)
    tooltips = [(key, f"@{key}"), ("value", f"@value{{0.000}} {unit}")] + [(c, f"@{c}") for c in extra]
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=tooltips))
    fig.add_layout(ColorBar(color_mapper=mapper, title=unit or None), "right")
    return source


def add_outlines(fig: figure, polygons: pd.DataFrame, key: str, reference: float, *, color: str = "red",
                 dashed: bool = True) -> None:
    """Polygon outlines only (all tracts, or the visits overlapping a tract)."""
    xs, ys, keep = _vertices(polygons, reference)
    xs = [np.append(x, x[0]) for x in xs]
    ys = [np.append(y, y[0]) for y in ys]
    source = ColumnDataSource({"xs": xs, "ys": ys, key: polygons.loc[keep, key].astype(int).to_numpy()})
    renderer = fig.multi_line("xs", "ys", source=source, line_color=color, line_width=1.5,
                              line_dash="dashed" if dashed else "solid")
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=[(key, f"@{key}")]))


def _points(frame: pd.DataFrame, x: str, y: str, c: str, unit: str, tags: list[str], name: str,
            xlabel: str, ylabel: str, invert_x: bool) -> hv.Element:
    data = frame[[x, y, c]].astype(float)
    data = data[np.isfinite(data).all(axis=1)]
    common = dict(responsive=True, min_height=380, xlabel=xlabel, ylabel=ylabel, invert_xaxis=invert_x,
                  hooks=[_named(name, tags + [f"n:{len(data)}"])])
    if len(data) > RASTER_ABOVE:
        points = hv.Points(data, kdims=[x, y], vdims=[hv.Dimension(c, unit=unit or None)])
        pad = lambda lo, hi: (lo - 1e-9, hi + 1e-9) if hi <= lo else (lo, hi)  # noqa: E731
        image = rasterize(points, aggregator="mean", dynamic=False, width=500, height=400,
                          x_range=pad(data[x].min(), data[x].max()), y_range=pad(data[y].min(), data[y].max()))
        return image.opts(cmap=CMAP, colorbar=True, cnorm="eq_hist", tools=["hover"], **common)
    return hv.Points(data, kdims=[x, y], vdims=[hv.Dimension(c, unit=unit or None)]).opts(
        color=c, cmap=CMAP, colorbar=True, size=4, tools=["hover"],
        backend_opts={"plot.output_backend": "webgl"}, **common)


def sky_rows(rows: pd.DataFrame, columns: dict, unit: str, tags: list[str]) -> hv.Element:
    """Per-row values on the sky, colour-mapped by value."""
    ra = rows[columns["ra"]].to_numpy(dtype=float)
    frame = pd.DataFrame({"ra": unwrap_ra(ra, float(np.nanmedian(ra))) if len(ra) else ra,
                          "dec": rows[columns["dec"]].to_numpy(dtype=float),
                          "value": rows[columns["value"]].to_numpy(dtype=float)})
    return _points(frame, "ra", "dec", "value", unit, tags, "sky_rows", "RA (deg)", "Dec (deg)", True)


def value_vs_mag(rows: pd.DataFrame, columns: dict, unit: str, tags: list[str]) -> hv.Element:
    """The value of each row against its magnitude (DMTN-085 Fig. 2)."""
    frame = pd.DataFrame({"mag": rows[columns["mag"]].to_numpy(dtype=float),
                          "value": rows[columns["value"]].to_numpy(dtype=float)})
    frame["density"] = 1.0
    if len(frame) > RASTER_ABOVE:
        return _points(frame, "mag", "value", "density", "", tags, "scatter", "magnitude (AB mag)",
                       f"value ({unit})" if unit else "value", False).opts(cmap="fire", cnorm="log")
    return hv.Points(frame[np.isfinite(frame[["mag", "value"]]).all(axis=1)], kdims=["mag", "value"]).opts(
        size=3, alpha=0.6, responsive=True, min_height=380, tools=["hover"], xlabel="magnitude (AB mag)",
        ylabel=f"value ({unit})" if unit else "value", backend_opts={"plot.output_backend": "webgl"},
        hooks=[_named("scatter", tags + [f"n:{len(frame)}"])])


def histogram(values: pd.Series, unit: str, tags: list[str], *, name: str = "histogram") -> hv.Histogram:
    """Distribution of values (finite ones), 40 bins."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    counts, edges = np.histogram(finite, bins=40) if len(finite) else (np.zeros(1), np.array([0.0, 1.0]))
    return hv.Histogram((edges, counts), kdims=[hv.Dimension("value", unit=unit or None)], vdims=["count"]).opts(
        responsive=True, min_height=300, tools=["hover"], hooks=[_named(name, tags + [f"n:{len(finite)}"])])


def series(children: pd.DataFrame, key: str, unit: str, tags: list[str], *, name: str = "series") -> hv.Overlay:
    """The metric against visit (or detector) number; outliers in red, the rest in blue."""
    frame = children[[key, "value", "outlier"]].copy()
    frame[key] = frame[key].astype(int)
    frame["value"] = frame["value"].astype(float)
    frame["outlier"] = frame["outlier"].astype(bool)
    frame["kind"] = np.where(frame["outlier"], "outlier", "normal")
    vdims = [hv.Dimension("value", unit=unit or None), "kind"]
    normal = hv.Scatter(frame[~frame["outlier"]], kdims=[key], vdims=vdims).opts(color="#1f77b4", size=7)
    bad = hv.Scatter(frame[frame["outlier"]], kdims=[key], vdims=vdims).opts(color="red", size=11, marker="x",
                                                                           line_width=3)
    return (normal * bad).opts(responsive=True, min_height=300, show_legend=False, hooks=[_named(
        name, tags + [f"outliers:{','.join(str(v) for v in frame.loc[frame['outlier'], key])}"])])


def add_failures(fig: figure, failures: pd.DataFrame, reference: float) -> int:
    """Failed quanta at their sky positions (red crosses); returns how many have a position."""
    frame = failures.dropna(subset=["ra", "dec"])
    data = {"ra": unwrap_ra(frame["ra"].to_numpy(dtype=float), reference), "dec": frame["dec"].to_numpy(dtype=float)}
    hover = [c for c in ("label", "task", "data_id", "exception", "message") if c in frame]
    for column in hover:
        data[column] = frame[column].astype(str).to_numpy()
    renderer = fig.scatter("ra", "dec", source=ColumnDataSource(data), marker="x", size=16, line_width=3,
                           color="red")
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=[(c, f"@{c}") for c in hover]))
    return len(frame)
