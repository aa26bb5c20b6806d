"""Apply a box or lasso drawn on a subsample to every cell with coordinates."""
from __future__ import annotations

from typing import Any

import numpy as np


def cells_in_box(xy: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
    """Row indices of points inside an axis-aligned box."""
    x0, x1 = sorted(x_range)
    y0, y1 = sorted(y_range)
    x, y = xy[:, 0], xy[:, 1]
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))


def cells_in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Row indices of points inside a closed polygon (even-odd rule), vectorised over points."""
    poly = np.asarray(polygon, dtype=np.float64)
    if len(poly) < 3:
        return np.empty(0, dtype=np.int64)
    candidates = cells_in_box(xy, (poly[:, 0].min(), poly[:, 0].max()), (poly[:, 1].min(), poly[:, 1].max()))
    px = xy[candidates, 0].astype(np.float64)
    py = xy[candidates, 1].astype(np.float64)
    inside = np.zeros(candidates.size, dtype=bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        crosses = (yi > py) != (yj > py)
        if crosses.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                x_cross = (xj - xi) * (py - yi) / (yj - yi) + xi
            inside ^= crosses & (px < x_cross)
        xj, yj = xi, yi
    return candidates[inside]


def cells_in_selection(xy: np.ndarray, selection: dict[str, Any]) -> np.ndarray:
    """Union of every box and lasso in a Plotly selection, applied to all rows of `xy`."""
    found = []
    for box in selection.get("box") or []:
        found.append(cells_in_box(xy, tuple(box["x"]), tuple(box["y"])))
    for lasso in selection.get("lasso") or []:
        found.append(cells_in_polygon(xy, np.column_stack([lasso["x"], lasso["y"]])))
    if not found:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(found))
