"""FlowSOM-style clustering of real cells, its scores, its cluster profiles and the crash-safe store of the user's edits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import LEVINE

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.tools.clustering import ClusteringParams, FlowSOM
from cytoauto_core.tools.clustering.profile import central_cells, cluster_medians, similarity_order
from cytoauto_core.tools.clustering.store import ClusterStore
from cytoauto_core.tools.metrics import matched_f1


@pytest.fixture(scope="module")
def levine() -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(LEVINE / "Levine_32dim_labeled30k_arcsinh.csv")
    markers = [c for c in df.columns if c not in ("label", "population", "split")]
    return df[markers].to_numpy(np.float32), pd.factorize(df["population"])[0]


def test_matched_f1_is_one_for_a_relabelled_partition_and_counts_unmatched_populations_as_zero():
    truth = np.array([0, 0, 1, 1, 2, 2, -1])
    assert matched_f1(np.array([5, 5, 3, 3, 9, 9, 0]), truth) == pytest.approx(1.0)
    # one cluster for everything: it matches one population (F1 = 2·2/(2+6) = 0.5), the other two score 0
    assert matched_f1(np.zeros(7, int), truth) == pytest.approx(0.5 / 3)


def test_levine_clusters_find_its_populations_reproducibly(levine):
    x, truth = levine
    params = ClusteringParams(n_clusters=28, seed=3)
    first = FlowSOM(params).fit_predict(x)
    again = FlowSOM(params).fit_predict(x)
    np.testing.assert_array_equal(first.clusters, again.clusters)
    sizes = np.bincount(first.clusters)
    assert first.clusters.shape == (x.shape[0],) and sizes.size == 28 and sizes.min() > 0
    assert sizes[0] == sizes.max()  # cluster 0 (C1) is the largest
    assert matched_f1(first.clusters, truth) > 0.55  # the flowsom package scores 0.66 here
    other = FlowSOM(ClusteringParams(n_clusters=28, seed=4)).fit_predict(x).clusters
    assert not np.array_equal(first.clusters, other)


def test_weighted_average_linkage_is_average_linkage_for_equal_weights_and_averages_over_cells_otherwise():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import cdist
    from sklearn.metrics import adjusted_rand_score

    from cytoauto_core.tools.clustering.metacluster import weighted_average_linkage

    points = np.random.default_rng(0).normal(size=(60, 4))
    plain = fcluster(linkage(points, method="average"), 7, criterion="maxclust")
    weighted = weighted_average_linkage(cdist(points, points), np.ones(60), 7)
    assert adjusted_rand_score(plain, weighted) == 1.0
    # nodes at 0 and 1 merge first; node 2 (at 3) is 2.5 from them on average over nodes, 2.8 from node 3 (at 5.8);
    # when node 0 holds 100 cells, node 2 is 2.99 from that group's cells on average, so it joins node 3 instead
    line = np.array([[0.0], [1.0], [3.0], [5.8]])
    groups = lambda w: weighted_average_linkage(cdist(line, line), np.asarray(w, float), 2)  # noqa: E731
    unit, heavy = groups([1, 1, 1, 1]), groups([100, 1, 1, 1])
    assert unit[0] == unit[1] == unit[2] != unit[3]
    assert heavy[0] == heavy[1] != heavy[2] == heavy[3]


def test_cancelling_stops_the_map_between_passes(levine):
    with pytest.raises(InterruptedError):
        FlowSOM().fit(levine[0], should_stop=lambda: True)


def test_profiles_cover_every_cluster_and_marker_and_central_cells_sit_at_the_median(levine):
    x, truth = levine
    markers = [f"m{j}" for j in range(x.shape[1])]
    medians = cluster_medians(x, truth, markers)
    assert list(medians.index) == sorted(np.unique(truth).tolist())
    rows, cols = similarity_order(medians)
    assert sorted(rows) == sorted(medians.index) and sorted(cols) == sorted(markers)
    cells = central_cells(x, truth, 0, 20)
    members = np.flatnonzero(truth == 0)
    assert cells.size == 20 and np.isin(cells, members).all()
    centre = np.median(x[members], axis=0)
    distance = lambda rows_: np.linalg.norm(x[rows_] - centre, axis=1)  # noqa: E731
    assert distance(cells).max() <= np.sort(distance(members))[19] + 1e-5


def test_store_keeps_merges_splits_and_names_across_reopening(tmp_path, levine):
    x = levine[0][:5_000]
    store = ClusterStore(tmp_path / "clusters", x.shape[0])
    assert store.current() is None
    result = FlowSOM(ClusteringParams(n_clusters=6, seed=0)).fit_predict(x)
    store.save(result, ["a", "b"])
    state = ClusterStore(tmp_path / "clusters", x.shape[0]).current()
    np.testing.assert_array_equal(state.clusters, result.clusters)
    assert state.names == {c: f"C{c + 1}" for c in range(6)}
    survivor = store.merge([2, 4])
    after = store.current()
    assert survivor == 2 and 4 not in after.names
    assert after.sizes()[2] == int(np.isin(result.clusters, [2, 4]).sum())
    new = store.split(0, x, 3, seed=0)
    split = store.current()
    assert new[0] == 0 and len(new) == 3
    np.testing.assert_array_equal(np.isin(split.clusters, new), result.clusters == 0)
    assert [split.names[c] for c in new] == ["C1.1", "C1.2", "C1.3"]
    store.rename([1], "T cells")
    reopened = ClusterStore(tmp_path / "clusters", x.shape[0]).current()
    assert reopened.names[1] == "T cells" and reopened.version == split.version + 1
    assert reopened.label(1) == "T cells (C2)" and reopened.label(0) == "C1.1"
    assert reopened.categories()[4] == "" and reopened.categories()[1] == "T cells (C2)"
    assert len(list((tmp_path / "clusters").glob("*.npy"))) == 1  # replaced arrays are gone


def test_store_refuses_unknown_clusters_and_reports_a_damaged_array(tmp_path, levine):
    x = levine[0][:2_000]
    store = ClusterStore(tmp_path / "c", x.shape[0])
    with pytest.raises(CytoInputError, match="no clustering yet"):
        store.merge([0, 1])
    store.save(FlowSOM(ClusteringParams(n_clusters=3, seed=0)).fit_predict(x), [])
    with pytest.raises(CytoInputError, match="no cluster with id 7"):
        store.merge([0, 7])
    with pytest.raises(CytoInputError, match="at least two"):
        store.merge([1])
    next((tmp_path / "c").glob("*.npy")).write_bytes(b"not an array")
    with pytest.raises(CytoInputError, match="cannot be read"):
        store.current()


def test_linear_scatter_beside_arcsinh_markers_is_brought_to_their_scale_and_cyTOF_markers_are_left_alone(levine):
    from conftest import SHARED

    from cytoauto_core.io import read_file
    from cytoauto_core.prep.transforms import default_spec, transform_features
    from cytoauto_core.tools.clustering.flowsom import balance_scales

    np.testing.assert_array_equal(balance_scales(levine[0]), 1.0)
    dataset = read_file(SHARED / "devsuite" / "flowsom_mouse_bal_wsp" / "68983.fcs")
    spec = default_spec(dataset)
    scatter = [c.name for c in dataset.channels if c.kind == "scatter"]
    spec.features, spec.linear = scatter + spec.features, scatter  # a user who clusters on scatter too, left linear
    x = transform_features(dataset, spec)
    scale = balance_scales(x)
    linear = np.isin(spec.features, spec.linear)
    assert linear.any() and (scale[linear] < 0.01).all()  # raw FSC/SSC, ~10⁵, next to arcsinh markers of ~1
    assert (scale[~linear] == 1.0).all()
    spread = (x * scale).std(axis=0)
    assert spread.max() <= 1.01 * np.median(x.std(axis=0)) * 10
