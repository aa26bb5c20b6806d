"""embed: a map for every cell, deterministic per seed, PCA like sklearn, held-out cells placed with their cluster."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from cytoauto_core.tools.embeddings import (
    EmbeddingCancelled, EmbeddingParams, embed, embedding_key, pca_2d, stratified_subsample,
)


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated Gaussian clusters in 8-D (float32) and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = rng.normal(0, 6, (4, 8))
    return (centres[labels] + rng.normal(0, 1, (n, 8))).astype(np.float32), labels


def test_pca_matches_sklearn():
    x, _ = blobs(5_000)
    x[:, 1] *= 3
    coords, ratio = pca_2d(x)
    ref = PCA(n_components=2, svd_solver="full").fit(x.astype(np.float64))
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose(coords, ref.transform(x.astype(np.float64)), atol=1e-3)
    e = embed(x, EmbeddingParams(method="pca"))
    assert e.coords.dtype == np.float32 and e.fit_indices.size == 5_000 and "PC1" in e.description


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_map_covers_every_cell_is_deterministic_and_places_held_out_cells(method):
    x, labels = blobs(1_200)
    params = EmbeddingParams(method=method, max_fit_cells=400, seed=3)
    a, b = embed(x, params), embed(x, params)
    assert a.coords.shape == (1_200, 2) and a.coords.dtype == np.float32 and np.isfinite(a.coords).all()
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.fit_indices.size == 400 and "the other 800 placed by 10-NN" in a.description
    held_out = np.setdiff1d(np.arange(1_200), a.fit_indices)
    fit_centres = np.stack([a.coords[a.fit_indices][labels[a.fit_indices] == k].mean(axis=0) for k in range(4)])
    nearest = np.argmin(((a.coords[held_out, None, :] - fit_centres[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == labels[held_out]) > 0.99


def test_tsne_transform_placement():
    x, labels = blobs(600)
    e = embed(x, EmbeddingParams(method="tsne", max_fit_cells=300, placement="transform", n_jobs=1))
    held_out = np.setdiff1d(np.arange(600), e.fit_indices)
    assert np.isfinite(e.coords).all() and "placed by t-SNE transform" in e.description
    fit_centres = np.stack([e.coords[e.fit_indices][labels[e.fit_indices] == k].mean(axis=0) for k in range(4)])
    nearest = np.argmin(((e.coords[held_out, None, :] - fit_centres[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == labels[held_out]) > 0.95


def test_cancel_and_progress():
    x, _ = blobs(300)
    seen: list[float] = []
    with pytest.raises(EmbeddingCancelled):
        embed(x, EmbeddingParams(method="tsne", max_fit_cells=200), progress=lambda f, m: seen.append(f),
              should_stop=lambda: len(seen) > 2)
    assert seen and max(seen) < 1.0


def test_embedding_key_is_stable_and_sensitive():
    p = EmbeddingParams(method="umap", seed=1)
    key = embedding_key("abc", ["CD3", "CD4"], {"cofactor": 5}, p)
    assert key == embedding_key("abc", ["CD3", "CD4"], {"cofactor": 5}, EmbeddingParams(method="umap", seed=1))
    assert key != embedding_key("abc", ["CD3", "CD4"], {"cofactor": 5}, EmbeddingParams(method="umap", seed=2))
    assert key != embedding_key("abc", ["CD4", "CD3"], {"cofactor": 5}, p)


def test_stratified_subsample_keeps_rare_strata():
    strata = np.repeat([0, 1, 2], [100_000, 50, 900])
    rows = stratified_subsample(strata.size, 10_000, strata, seed=0)
    assert rows.size <= 10_000 and rows.size > 9_900 and np.all(np.diff(rows) > 0)
    kept = np.bincount(strata[rows], minlength=3)
    assert kept[1] == 50 and kept[2] >= 900 * 10_000 / strata.size
    np.testing.assert_array_equal(rows, stratified_subsample(strata.size, 10_000, strata, seed=0))
    np.testing.assert_array_equal(stratified_subsample(500, 10_000, strata[:500], seed=0), np.arange(500))
