"""Plotly figures built from summaries (histogram counts, quantiles), never from millions of raw points."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cytoauto_core.base.dataset import UNASSIGNED, UNKNOWN
from cytoauto_core.io.h5ad import UNASSIGNED_COLOR, UNKNOWN_COLOR  # one grey each, in the app and in exports
from cytoauto_core.store.labels import PALETTE

FLOAT32_EXACT_INTEGERS = 2**24  # float32 holds every integer below this exactly (hover row ids beside marker values)
UNKNOWN_CODE = -2  # colour code of unknown cells (unlike every named population); other negative codes: unassigned
# Colours of clusters and other categories without their own: 24 that stay apart from each other (CIE76 ΔE > 20) and
# from the unassigned and unknown greys, none of them grey, so the default 20 clusters never share one.
LABELLED_SIZE, UNLABELLED_SIZE = 6, 3  # marker sizes when labelled cells are drawn on top of the others
UNLABELLED_ALPHA = 0.35  # how opaque the unassigned grey is under labelled cells


def histogram_figure(values: np.ndarray, title: str, bins: int = 120) -> go.Figure:
    """A histogram of every value in one column, clipped to its 0.1–99.9% range so tails do not flatten it."""
    finite = values[np.isfinite(values)]
    sample = finite if finite.size <= 200_000 else finite[:: finite.size // 200_000]
    lo, hi = np.quantile(sample, [0.001, 0.999]) if sample.size else (0.0, 1.0)
    counts, edges = np.histogram(finite, bins=bins, range=(float(lo), float(hi) if hi > lo else float(lo) + 1))
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#1f6fb2"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10), bargap=0, showlegend=False)
    return fig


def box_figure(x: np.ndarray, names: list[str]) -> go.Figure:
    """Boxplots from exact quartiles of every cell (whiskers at 1.5 IQR clipped to the data), side by side: each box
    at its own x (a precomputed box without x would sit at x = 0, all on top of each other)."""
    fig = go.Figure()
    for j, name in enumerate(names):
        col = x[:, j]
        q1, med, q3 = np.quantile(col, [0.25, 0.5, 0.75])
        iqr = q3 - q1
        lo = max(float(col.min()), q1 - 1.5 * iqr)
        hi = min(float(col.max()), q3 + 1.5 * iqr)
        fig.add_trace(go.Box(name=name, x=[name], q1=[q1], median=[med], q3=[q3], lowerfence=[lo], upperfence=[hi],
                             marker_color="#1f6fb2", showlegend=False))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def heatmap_figure(frame: pd.DataFrame, title: str, colorscale: str = "RdBu_r", zmid: float | None = 0.0,
                   text: bool = False) -> go.Figure:
    """A labelled heatmap of a DataFrame (rows × columns), naming every row and column (Plotly skips some if crowded)."""
    columns, index = [str(c) for c in frame.columns], [str(i) for i in frame.index]
    fig = go.Figure(go.Heatmap(
        z=frame.to_numpy(), x=columns, y=index,
        colorscale=colorscale, zmid=zmid, texttemplate="%{z:.2f}" if text else None,
    ))
    fig.update_layout(title=title, height=max(320, 22 * len(frame) + 120), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=every_tick(columns), yaxis=every_tick(index))
    return fig


def every_tick(names: list[str]) -> dict:
    """A category axis that labels every category: Plotly's automatic ticks show only every other one when crowded."""
    return dict(type="category", tickmode="array", tickvals=names, ticktext=names)


def _faint(hex_color: str, alpha: float) -> str:
    """'#rrggbb' as a see-through 'rgba(...)' colour."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def scatter_figure(
    xy: np.ndarray, rows: np.ndarray, color: np.ndarray | None, *, categories: list[str] | None = None,
    colors: list[str] | None = None, title: str = "", axis: tuple[str, str] = ("dim 1", "dim 2"),
    hover: tuple[list[str], np.ndarray] | None = None, height: int = 620, colorscale: str = "Viridis",
    colorbar_title: str = "", labelled_on_top: bool = False,
) -> go.Figure:
    """One Scattergl trace (selection-safe) of the drawn `rows`, customdata = row id (then, with `hover` = (names,
    drawn rows × names values), those values, shown on hover: numbers, not one string per cell, keep the chart small
    enough that a browser redraws it without stalling the page).

    `color` is numeric (continuous colour bar in `colorscale`) or integer codes into `categories` (UNKNOWN_CODE =
    unknown, other negatives = unassigned); a categorical legend is drawn with empty dummy traces so selection still
    reads one trace. `labelled_on_top` draws the cells of named populations last, larger and opaque, over fainter
    unassigned ones, so a few labelled cells stand out among many unlabelled ones.
    """
    marker: dict = dict(size=3, opacity=0.8)
    legend_traces = []
    if color is not None and categories is not None:
        codes = np.asarray(color)[rows]
        if labelled_on_top:
            order = np.argsort(codes >= 0, kind="stable")  # unassigned and unknown first, so named cells lie on top
            rows, codes = rows[order], codes[order]
            hover = None if hover is None else (hover[0], hover[1][order])
            marker.update(opacity=1.0, size=np.where(codes >= 0, LABELLED_SIZE, UNLABELLED_SIZE).astype(np.uint8))
        n = len(categories)
        unassigned = _faint(UNASSIGNED_COLOR, UNLABELLED_ALPHA) if labelled_on_top else UNASSIGNED_COLOR
        palette = np.array((colors or PALETTE * (n // len(PALETTE) + 1))[:n]
                           + [unassigned, UNKNOWN_COLOR])
        marker["color"] = palette[np.where(codes == UNKNOWN_CODE, n + 1, np.where(codes < 0, n, codes))].tolist()
        for i, name in enumerate(categories):
            legend_traces.append(go.Scattergl(x=[None], y=[None], mode="markers", name=name,
                                              marker=dict(size=9, color=palette[i]), hoverinfo="skip"))
        for name, shown, colour in ((UNASSIGNED, (codes < 0) & (codes != UNKNOWN_CODE), UNASSIGNED_COLOR),
                                    (UNKNOWN, codes == UNKNOWN_CODE, UNKNOWN_COLOR)):
            if shown.any():
                legend_traces.append(go.Scattergl(x=[None], y=[None], mode="markers", name=name,
                                                  marker=dict(size=9, color=colour), hoverinfo="skip"))
    elif color is not None:
        values = np.asarray(color)[rows]
        lo, hi = np.nanquantile(values, [0.01, 0.99]) if values.size else (0, 1)
        marker.update(color=values, colorscale=colorscale, cmin=float(lo), cmax=float(hi), showscale=True,
                      colorbar=dict(thickness=12, title=colorbar_title))
    else:
        marker["color"] = "#1f6fb2"
    pts = xy[rows]
    if hover is None:
        customdata, template = rows, "cell %{customdata}<extra></extra>"
    else:
        names, values = hover
        exact = np.float32 if rows.size == 0 or rows.max() < FLOAT32_EXACT_INTEGERS else np.float64  # row ids stay exact
        customdata = np.column_stack([rows, values]).astype(exact)
        shown = "".join(f"<br>{name}: %{{customdata[{j + 1}]:.2f}}" for j, name in enumerate(names))
        template = f"cell %{{customdata[0]:d}}{shown}<extra></extra>"
    trace = go.Scattergl(x=pts[:, 0], y=pts[:, 1], mode="markers", marker=marker, customdata=customdata,
                         showlegend=False, hovertemplate=template)
    fig = go.Figure([trace, *legend_traces])
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10), dragmode="lasso",
                      xaxis_title=axis[0], yaxis_title=axis[1], legend=dict(itemsizing="constant"),
                      uirevision="keep")
    return fig


def cluster_heatmap_figure(medians: pd.DataFrame, labels: list[str], selected: list[int]) -> go.Figure:
    """Clusters × markers median heatmap in the given row/column order, rows selectable by click or box.

    Colours are each marker's medians scaled 0–1 across clusters (CATALYST's convention, so a dim marker's
    differences show); hover gives the median itself. A transparent marker sits on every cell (customdata = cluster id) because heatmap traces cannot be
    selected; selected rows are outlined.
    """
    ids = medians.index.tolist()
    markers = [str(c) for c in medians.columns]
    values = medians.to_numpy(np.float64)
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    fig = go.Figure(go.Heatmap(z=scaled, x=markers, y=labels, colorscale="Viridis", zmin=0, zmax=1,
                               colorbar=dict(title="scaled<br>median", thickness=12), hoverinfo="skip"))
    grid_x = np.tile(markers, len(ids))
    grid_y = np.repeat(labels, len(markers))
    fig.add_trace(go.Scatter(
        x=grid_x, y=grid_y, mode="markers", customdata=np.repeat(ids, len(markers)), showlegend=False,
        marker=dict(size=14, symbol="square", color="rgba(0,0,0,0)"),
        text=[f"{v:.2f}" for v in values.ravel()],
        hovertemplate="%{y}<br>%{x}: median %{text}<extra></extra>",
    ))
    for row, cid in enumerate(ids):
        if cid in selected:
            fig.add_shape(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=row - 0.5, y1=row + 0.5,
                          line=dict(color="#d62728", width=3))
    fig.update_layout(height=max(320, 24 * len(ids) + 140), margin=dict(l=10, r=10, t=40, b=10), dragmode="select",
                      title="Median expression per cluster, scaled per marker (click or box-select rows)",
                      yaxis=dict(every_tick(labels), range=[len(ids) - 0.5, -0.5]),
                      xaxis=dict(every_tick(markers), tickangle=-45, range=[-0.5, len(markers) - 0.5]))
    return fig
