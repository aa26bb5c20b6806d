"""Benchmark maps and stats on demo data (PCA, t-SNE, UMAP of all cells vs plain libraries); map quality on Levine_32dim.

Usage: nice python bench/embed.py [--sizes 100000,265000,1000000] [--seed 0]
Levine et al. 2015, Cell 162:184-197 (labelled 30k cells of individual H1, arcsinh cofactor 5).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cytoauto_core.prep.stats import channel_stats  # noqa: E402
from cytoauto_core.prep.transforms import default_spec, transform_features  # noqa: E402
from cytoauto_core.study.demo import make_demo  # noqa: E402
from cytoauto_core.tools.embeddings import EmbeddingParams, embed  # noqa: E402
from cytoauto_core.tools.metrics import knn_label_agreement  # noqa: E402

LEVINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "levine32" / "Levine_32dim_labeled30k_arcsinh.csv"


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    """Result of fn(*args, **kwargs) and its wall seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def plain_umap(x: np.ndarray, seed: int) -> np.ndarray:
    """umap-learn with its defaults and a seed: the library as a user would call it."""
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return umap.UMAP(random_state=seed).fit_transform(x)


def sklearn_tsne(x: np.ndarray, seed: int) -> np.ndarray:
    """sklearn's Barnes-Hut TSNE with its defaults, two threads."""
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, random_state=seed, n_jobs=2).fit_transform(x)


def speed(sizes: list[int], seed: int, sklearn_cells: int) -> None:
    """Print the timing table for demo data of each size."""
    rows = []
    for i, n in enumerate(sizes):
        ds = make_demo(n, seed)
        x = transform_features(ds, default_spec(ds))
        pca = embed(x, EmbeddingParams(method="pca", seed=seed))
        tsne = embed(x, EmbeddingParams(method="tsne", seed=seed))
        print(f"  {n:,}: {tsne.description} ({tsne.seconds:.1f} s)", flush=True)
        umap_map = embed(x, EmbeddingParams(method="umap", seed=seed))
        print(f"  {n:,}: {umap_map.description} ({umap_map.seconds:.1f} s)", flush=True)
        row = {"cells": n, "fit_cells": tsne.fit_indices.size, "PCA_s": pca.seconds, "tSNE_all_s": tsne.seconds,
               "UMAP_all_s": umap_map.seconds, "stats_s": timed(channel_stats, x, ds.feature_names)[1]}
        if i == 0:
            sub = x[tsne.fit_indices]
            row["umap_learn_fit_cells_s"] = timed(plain_umap, sub, seed)[1]
            small = sub[:sklearn_cells]
            row["sklearn_TSNE_small_s"] = timed(sklearn_tsne, small, seed)[1]
            row["our_tSNE_small_s"] = embed(small, EmbeddingParams(method="tsne", seed=seed)).seconds
        rows.append(row)
        print(pd.DataFrame([row]).round(2).to_string(index=False), f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\nSpeed (wall seconds, 2 shared cores; 'all' = fit on the {rows[0]['fit_cells']:,}-cell subsample + 10-NN"
          f" placement of every other cell; at the first size only: plain umap-learn on the same subsample, and sklearn"
          f" TSNE vs our t-SNE on its first {sklearn_cells:,} cells, because sklearn TSNE on 50k cells is too slow here)")
    print(pd.DataFrame(rows).round(2).to_string(index=False), flush=True)


def quality(seed: int) -> None:
    """kNN (k=15) label agreement of maps of the 30k labelled Levine cells, and of the 32-D marker space."""
    df = pd.read_csv(LEVINE)
    markers = [c for c in df.columns if c not in ("label", "population", "split")]
    x = df[markers].to_numpy(np.float32)
    y = df["label"].to_numpy()
    rows = [{"space": f"marker space ({len(markers)}-D)", "seconds": 0.0, "knn15_agreement": knn_label_agreement(x, y)}]
    for method in ("tsne", "umap"):
        for fit in (50_000, 10_000):
            e = embed(x, EmbeddingParams(method=method, max_fit_cells=fit, seed=seed))
            row = {"space": e.description, "seconds": e.seconds, "knn15_agreement": knn_label_agreement(e.coords, y)}
            if e.fit_indices.size < x.shape[0]:
                placed = np.ones(x.shape[0], bool)
                placed[e.fit_indices] = False
                row["placed_cells_only"] = float(np.mean(_neighbour_labels(e.coords, y, placed)))
            rows.append(row)
            print(rows[-1], flush=True)
    print("\nLevine_32dim, 30,000 labelled cells (Levine et al. 2015): fraction of each cell's 15 nearest"
          " neighbours with its population ('placed_cells_only': neighbours among all cells, scored on placed cells)")
    with pd.option_context("display.max_colwidth", 120, "display.width", 250):
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)


def _neighbour_labels(coords: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per selected cell, the fraction of its 15 nearest map neighbours (itself excluded) sharing its label."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=15).fit(coords).kneighbors(return_distance=False)[rows]
    return (y[idx] == y[rows][:, None]).mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,265000,1000000", help="comma-separated demo sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sklearn-cells", type=int, default=10_000, help="cells for the sklearn TSNE comparison")
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    quality(args.seed)
    speed([int(s) for s in args.sizes.split(",")], args.seed, args.sklearn_cells)


if __name__ == "__main__":
    main()
