"""Well-separated Gaussian cell populations shared by the model tests."""
from __future__ import annotations

import numpy as np


def gaussian_cells(n_per_class: int = 300, classes: tuple[int, ...] = (3, 7, 9, 12), dims: int = 8,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, arcsinh-like scale) and class ids for separated populations with unequal sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3.0, (len(classes), dims))
    sizes = [n_per_class // (1 + i % 2) for i in range(len(classes))]
    x = np.concatenate([rng.normal(c, 0.6, (s, dims)) for c, s in zip(centres, sizes)]).astype(np.float32)
    y = np.concatenate([np.full(s, k) for k, s in zip(classes, sizes)])
    order = rng.permutation(len(y))
    return x[order], y[order]


def label_split(y: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `per_class` labelled cells per class and of the remaining cells."""
    rng = np.random.default_rng(seed)
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)])
    return np.sort(lab), np.setdiff1d(np.arange(len(y)), lab)
