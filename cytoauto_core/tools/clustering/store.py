"""The dataset's clustering as the user edits it: merges and splits saved at once, crash-safe, one manifest per state.

Layout: <dataset>/clusters/{current.json, <hash>.npy}. Cluster arrays are content-addressed and written first;
`current.json` names the array in use and is replaced by one rename (the commit point), so a crash at any
moment leaves the old or the new clustering whole.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...base.errors import CytoInputError
from ...base.storage import atomic_save_npy, atomic_write_json, folder_lock, read_json
from .flowsom import Clustering, ClusteringParams, FlowSOM

MANIFEST = "current.json"
SPLIT_GRID = 4  # a split re-clusters one cluster's cells on a small SOM
GENERATED_NAME = re.compile(r"^C\d+(\.\d+)*$")  # C3, and C3.1 after a split: names the store gave


@dataclass
class ClusterState:
    """The clustering in use: `clusters[i]` is cell i's cluster id; `names` maps every id in use to its name."""

    clusters: np.ndarray
    names: dict[int, str]
    description: str
    features: list[str]
    version: int

    @property
    def ids(self) -> list[int]:
        return sorted(self.names)

    def label(self, cluster: int) -> str:
        """The cluster's name, with its C-number when the user gave it a name of their own (several may share one)."""
        name = self.names[cluster]
        return name if GENERATED_NAME.match(name) else f"{name} (C{cluster + 1})"

    def categories(self) -> list[str]:
        """Labels indexed by cluster id, for colouring by cluster; '' for ids merged away."""
        return [self.label(c) if c in self.names else "" for c in range(max(self.names) + 1)]

    def sizes(self) -> dict[int, int]:
        counts = np.bincount(self.clusters, minlength=max(self.names) + 1)
        return {c: int(counts[c]) for c in self.ids}


class ClusterStore:
    """The clustering of one dataset, persisted in `directory`."""

    def __init__(self, directory: Path, n_cells: int) -> None:
        self.directory = Path(directory)
        self.n_cells = n_cells

    def current(self) -> ClusterState | None:
        """The clustering in use, or None before the first one."""
        with folder_lock(self.directory, exclusive=False):
            return self._read()

    def save(self, clustering: Clustering, features: list[str]) -> ClusterState:
        """Replace the clustering by a fresh one (clusters named C1, C2, … by size)."""
        names = {c: f"C{c + 1}" for c in np.unique(clustering.clusters).tolist()}
        return self.restore(clustering.clusters, names, clustering.description, features)

    def restore(self, clusters: np.ndarray, names: dict[int, str], description: str, features: list[str]) -> ClusterState:
        """Replace the clustering by the given one (a fresh one, or a session file's), keeping the names given."""
        with folder_lock(self.directory):
            head = read_json(self.directory / MANIFEST) or {"version": 0}
            return self._commit(clusters, names, description, features, head["version"] + 1)

    def merge(self, ids: list[int]) -> int:
        """Merge clusters `ids` into the first of them (keeping its name); returns the surviving id."""
        with folder_lock(self.directory):
            state = self._require()
            ids = self._known(state, ids)
            if len(ids) < 2:
                raise CytoInputError("Choose at least two clusters to merge.")
            target = ids[0]
            clusters = state.clusters.copy()
            clusters[np.isin(clusters, ids[1:])] = target
            names = {c: n for c, n in state.names.items() if c not in ids[1:]}
            self._commit(clusters, names, state.description, state.features, state.version + 1)
            return target

    def rename(self, clusters: list[int], name: str) -> None:
        """Give clusters `clusters` one new name, in one step (names need not be unique; ids are)."""
        name = name.strip()
        if not name:
            raise CytoInputError("A cluster name cannot be empty.")
        with folder_lock(self.directory):
            state = self._require()
            for cluster in self._known(state, clusters):
                state.names[cluster] = name
            self._commit(state.clusters, state.names, state.description, state.features, state.version + 1)

    def split(self, cluster: int, x: np.ndarray, parts: int, seed: int) -> list[int]:
        """Re-cluster the cells of `cluster` (features `x` of every cell) into `parts` clusters; returns their ids."""
        with folder_lock(self.directory):
            state = self._require()
            self._known(state, [cluster])
            members = np.flatnonzero(state.clusters == cluster)
            if not 2 <= parts <= SPLIT_GRID * SPLIT_GRID or members.size < 10 * parts:
                raise CytoInputError(f"Cluster {state.names[cluster]} ({members.size:,} cells) cannot be split into "
                                     f"{parts} parts: choose 2–{SPLIT_GRID * SPLIT_GRID} parts, at least 10 cells each.")
            params = ClusteringParams(n_clusters=parts, grid=SPLIT_GRID, seed=seed)
            sub = FlowSOM(params).fit_predict(x[members]).clusters
            first_new = max(state.names) + 1
            new_ids = [cluster] + [first_new + i for i in range(int(sub.max()))]
            clusters = state.clusters.copy()
            clusters[members] = np.asarray(new_ids, np.int16)[sub]
            base = state.names[cluster]
            names = {**state.names, **{cid: f"{base}.{i + 1}" for i, cid in enumerate(new_ids)}}
            self._commit(clusters, names, state.description, state.features, state.version + 1)
            return new_ids

    # ---- persistence ---------------------------------------------------------------------
    def _require(self) -> ClusterState:
        state = self._read()
        if state is None:
            raise CytoInputError("This dataset has no clustering yet: cluster its cells first.")
        return state

    @staticmethod
    def _known(state: ClusterState, ids: list[int]) -> list[int]:
        unknown = [c for c in ids if c not in state.names]
        if unknown:
            raise CytoInputError(f"There is no cluster with id {unknown[0]} (the clustering changed meanwhile?).")
        return list(dict.fromkeys(int(c) for c in ids))

    def _read(self) -> ClusterState | None:
        head = read_json(self.directory / MANIFEST)
        if head is None:
            return None
        path = self.directory / head["array"]
        try:
            clusters = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CytoInputError(f"The clustering of this dataset cannot be read ({path.name} is missing or damaged).") from exc
        if clusters.shape != (self.n_cells,):
            raise CytoInputError(f"The clustering of this dataset ({path.name}) does not match its {self.n_cells:,} cells.")
        names = {int(c): n for c, n in head["names"].items()}
        return ClusterState(clusters, names, head["description"], head["features"], head["version"])

    def _commit(self, clusters: np.ndarray, names: dict[int, str], description: str, features: list[str],
                version: int) -> ClusterState:
        """Write the array under its content hash, then switch the manifest to it; drop arrays no longer named."""
        clusters = np.ascontiguousarray(clusters, dtype=np.int16)
        if clusters.shape != (self.n_cells,):
            raise ValueError("one cluster per cell is required")
        array = hashlib.blake2b(clusters.data, digest_size=12).hexdigest() + ".npy"
        if not (self.directory / array).exists():
            atomic_save_npy(self.directory / array, clusters)
        atomic_write_json(self.directory / MANIFEST, {
            "array": array, "names": {str(c): n for c, n in sorted(names.items())},
            "description": description, "features": list(features), "version": version,
        })
        for path in self.directory.glob("*.npy"):
            if path.name != array:
                path.unlink(missing_ok=True)
        return ClusterState(clusters, dict(names), description, list(features), version)
