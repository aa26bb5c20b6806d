"""AnnData (.h5ad) out, in the layout scanpy, readfcs and pytometry users expect (h5ad_reader reads it back).

Written: cells × feature markers; `X` the transformed features (float32), `layers['raw']` the instrument
values of the same channels, `obsm['other_channels']` the channels that are not features, `var` with channel,
marker, kind and cofactor; `obs` with sample, event_id (row in the sample's file), user label, predicted
population (categorical, colours in `uns['population_colors']`), confidence, novelty and the dataset's
annotations; `obsm` with every map (`X_umap`, `X_tsne`, `X_pca`); `uns` with the transform, the channel table,
the spillover matrix, the file keywords (`meta`) and the provenance (`cytoauto`: model, bundle hash, seed, versions).
Read back: `layers['raw']` (else `X`) and `obsm['other_channels']` become the events, text and categorical `obs`
columns the annotations, numeric `obs` columns extra channels that are not features (except the numeric results
our own export adds: DERIVED_COLUMNS).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.dataset import NOT_CALLED, UNASSIGNED, UNASSIGNED_ID, UNKNOWN, Dataset, event_ids
from ..prep.transforms import TransformSpec

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
RAW_LAYER = "raw"
OTHER_CHANNELS = "other_channels"
PROVENANCE = "cytoauto"
UNASSIGNED_COLOR = "#bbbbbb"
UNKNOWN_COLOR = "#444444"
DEFAULT_COLOR = "#888888"
DERIVED_COLUMNS = ("event_id", "population_id", "confidence", "novelty")  # numeric obs our export adds


@dataclass
class H5adContent:
    """What is written beside the events; every field is optional.

    `population_id` (-1 = unassigned, -2 = unknown) with `names` is the predicted population, `user_labels` the
    label store's ids (-1 = unlabelled) named by the same `names`; `colors` by population id; `maps` by obsm key
    ('X_umap').
    """

    population_id: np.ndarray | None = None
    confidence: np.ndarray | None = None
    names: dict[int, str] = field(default_factory=dict)
    colors: dict[int, str] = field(default_factory=dict)
    user_labels: np.ndarray | None = None
    novelty: np.ndarray | None = None
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


@contextmanager
def _object_strings() -> Iterator[None]:
    """anndata 0.12.6 (the last for Python 3.11 that allows pandas 3) writes only object-dtype strings, and builds
    categoricals of its own while writing: pandas' string inference is off meanwhile (an option pandas 3 still has,
    deprecated for pandas 4, whose warning is silenced here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*future.infer_string.*")
        with pd.option_context("future.infer_string", False):
            yield


def write_h5ad(path: Path, dataset: Dataset, x: np.ndarray, spec: TransformSpec, content: H5adContent) -> Path:
    """Write `dataset` with its transformed features `x` (columns = spec.features) and `content` as .h5ad, atomically."""
    with _object_strings():
        adata = _anndata(dataset, x, spec, content)
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.h5ad")
        try:
            adata.write_h5ad(tmp)
            os.replace(tmp, path)  # never half a file at `path`
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _anndata(dataset: Dataset, x: np.ndarray, spec: TransformSpec, content: H5adContent):
    import anndata

    feature_idx = dataset.channel_index(spec.features)
    other_idx = [i for i in range(len(dataset.channels)) if i not in set(feature_idx)]
    index = pd.Index(np.arange(dataset.n_cells).astype(str), dtype=object)
    features = [dataset.channels[i] for i in feature_idx]
    markers = [c.marker for c in features]
    var = pd.DataFrame({
        "channel": [c.name for c in features], "marker": markers, "kind": [c.kind for c in features],
        "cofactor": [_cofactor(spec, c.name) for c in features],
    }, index=pd.Index(markers if len(set(markers)) == len(markers) else [c.name for c in features], dtype=object))
    adata = anndata.AnnData(X=np.asarray(x, np.float32), obs=_obs(dataset, content, index), var=var)
    adata.layers[RAW_LAYER] = np.ascontiguousarray(dataset.events[:, feature_idx], np.float32)
    if other_idx:
        adata.obsm[OTHER_CHANNELS] = pd.DataFrame(np.asarray(dataset.events[:, other_idx], np.float32), index=index,
                                                  columns=[dataset.channels[i].name for i in other_idx])
    for key, coords in content.maps.items():
        adata.obsm[key] = np.asarray(coords, np.float32)
    adata.uns.update(_uns(dataset, spec, content, adata.obs))
    return adata


def _cofactor(spec: TransformSpec, name: str) -> float:
    """The arcsinh cofactor a channel was divided by; NaN when it stayed linear."""
    if not spec.arcsinh or name in spec.linear:
        return float("nan")
    return float(spec.cofactors.get(name, spec.cofactor))


def _obs(dataset: Dataset, content: H5adContent, index: pd.Index) -> pd.DataFrame:
    obs = pd.DataFrame(index=index)
    obs["sample"] = pd.Categorical.from_codes(np.asarray(dataset.sample_ids), categories=list(dataset.samples))
    obs["event_id"] = event_ids(dataset.sample_ids)
    if content.user_labels is not None:
        obs["user_label"] = _categorical(content.user_labels, content.names, missing={})
    if content.population_id is not None:
        ids = np.asarray(content.population_id)
        called = np.isin(ids, [*content.names, *NOT_CALLED])  # an id without a name is unassigned, as in names_of
        obs["population"] = _categorical(np.where(called, ids, UNASSIGNED_ID), content.names, missing=NOT_CALLED)
        obs["population_id"] = np.asarray(content.population_id, np.int32)
    if content.confidence is not None:
        obs["confidence"] = np.asarray(content.confidence, np.float32)
    if content.novelty is not None:
        obs["novelty"] = np.asarray(content.novelty, np.float32)
    for column in dataset.annotations.columns:
        name = str(column)
        target = f"annotation_{name}" if name in obs.columns else name
        obs[target] = dataset.annotations[column].astype(str).to_numpy(dtype=object)
    return obs


def _categorical(ids: np.ndarray, names: dict[int, str], missing: dict[int, str]) -> pd.Categorical:
    """Named populations as a categorical of the ids present (in id order), then the `missing` ids present under
    their own names; every other id is NaN."""
    ids = np.asarray(ids)
    labels = {**{i: names[i] for i in sorted(names)}, **missing}
    present = [i for i in labels if (ids == i).any()]
    codes = np.full(len(ids), -1, np.int64)
    for code, pid in enumerate(present):
        codes[ids == pid] = code
    return pd.Categorical.from_codes(codes, categories=[labels[i] for i in present])


def _uns(dataset: Dataset, spec: TransformSpec, content: H5adContent, obs: pd.DataFrame) -> dict:
    lookup = {name: content.colors.get(pid, DEFAULT_COLOR) for pid, name in content.names.items()}
    lookup |= {UNASSIGNED: UNASSIGNED_COLOR, UNKNOWN: UNKNOWN_COLOR}
    uns: dict = {
        "transform": {"features": list(spec.features), "cofactor": float(spec.cofactor),
                      "cofactors": {k: float(v) for k, v in spec.cofactors.items()}, "linear": list(spec.linear),
                      "compensate": bool(spec.compensate), "arcsinh": bool(spec.arcsinh)},
        "channels": {"name": [c.name for c in dataset.channels], "marker": [c.marker for c in dataset.channels],
                     "kind": [c.kind for c in dataset.channels],
                     "is_feature": np.array([c.name in spec.features for c in dataset.channels])},
        "meta": {k: str(v) for k, v in dataset.metadata.items() if "/" not in k and str(v)},
        PROVENANCE: {"dataset": dataset.name, **content.provenance, "versions": _versions()},
    }
    for column, ids in (("population", content.population_id), ("user_label", content.user_labels)):
        if ids is not None:
            uns[f"{column}_colors"] = [lookup.get(c, DEFAULT_COLOR) for c in obs[column].cat.categories]
    if dataset.spillover is not None:
        uns["spillover"] = {"channels": list(dataset.spillover.channels),
                            "matrix": np.asarray(dataset.spillover.matrix, np.float64)}
    return uns


def _versions() -> dict[str, str]:
    return {"cytoauto": "0.1", "anndata": version("anndata"), "numpy": np.__version__, "pandas": pd.__version__}
