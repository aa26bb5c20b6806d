"""Session files: one dataset's settings, labels, maps, clustering, result and model bundle as a zip of JSON + .npy.

A session names its dataset by content hash; importing it restores that state into a workspace holding the same
data (loaded from the same file), on this machine or another. Nothing is pickled: arrays are .npy read by a reader
that accepts only numbers, and the model bundle is verified (hashes, XGBoost JSON check) before it is kept. Every
entry is bounded (count, sizes tied to the dataset) before it is inflated, and streamed to disk (archive.py).
"""
from __future__ import annotations

import filecmp
import io
import json
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..base.archive import (DEFLATE_MAX_RATIO, MAX_JSON_BYTES, ArchiveRefused, Limits, check_entries, check_sizes,
                            extract_member, open_zip, read_member, read_npy)
from ..base.dataset import Dataset
from ..base.errors import CytoInputError
from ..io.marker_table import MarkerTable
from ..prep.transforms import TransformSpec
from ..tools.clustering.store import ClusterStore
from ..tools.models.bundle import MAX_BUNDLE_BYTES, MAX_BUNDLE_FILE_BYTES, load_bundle
from .labels import UNLABELLED, LabelStore
from .workspace import Workspace

FORMAT = 1
MANIFEST = "session.json"
LABELS = "labels.npy"
CLUSTERS = "clusters.npy"
ARRAYS = "arrays/"
BUNDLE = "bundle/"
RESULT = "result-proba"  # the stored result array, whose metadata names the model bundle's folder
# A session's arrays together hold less than this per cell (labels and clusters 8 each, a map 8, a result 4 × classes):
# what they may declare is tied to the dataset the workspace really holds, not to what the archive claims.
BYTES_PER_CELL = 4 << 10
MAX_SESSION_MEMBERS = 256  # a session holds its manifest, labels, clusters, a few maps and results and a bundle's files
# Bundle files compress little (float weights ~1:1, XGBoost JSON ~5:1 to 10:1); zeros inflate ~1000:1.
BUNDLE_MAX_RATIO = 100
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


@dataclass
class SessionSummary:
    """What an imported session restored, for one sentence on the page."""

    key: str
    dataset_name: str
    populations: int
    labelled_cells: int
    arrays: int
    clustering: bool
    bundle: str | None


def cluster_store(ws: Workspace, key: str, n_cells: int) -> ClusterStore:
    """The clustering of dataset `key` (the folder ui.state.cluster_store opens)."""
    return ClusterStore(ws.dataset_dir(key) / "clusters", n_cells)


def export_session(ws: Workspace, key: str, dataset: Dataset, bundle_folder: Path | None = None) -> bytes:
    """The session file of dataset `key`: settings, labels with populations and colours, stored arrays (maps, result),
    the clustering with its names and, when given, the folder of the model bundle the result came from."""
    store = LabelStore(ws.labels_dir(key), dataset.n_cells)
    clustering = cluster_store(ws, key, dataset.n_cells).current()
    arrays = {name: ws.load_array(key, name) for name in ws.list_arrays(key)}
    arrays = {name: found for name, found in arrays.items() if found is not None}
    manifest = {
        "format": FORMAT,
        "dataset": {"key": key, "name": dataset.name, "n_cells": dataset.n_cells},
        "settings": ws.load_settings(key) or {},
        "populations": [{"id": p.id, "name": p.name, "color": p.color, "parent": p.parent}
                        for p in store.populations()],
        "arrays": {name: meta for name, (_, meta) in arrays.items()},
        "clustering": None if clustering is None else {
            "names": {str(c): n for c, n in clustering.names.items()},
            "description": clustering.description, "features": clustering.features,
        },
        "bundle": None if bundle_folder is None else bundle_folder.name,
        "marker_table": None if (table := ws.load_marker_table(key)) is None else table.to_dict(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
        _write_npy(archive, LABELS, store.labels())
        if clustering is not None:
            _write_npy(archive, CLUSTERS, clustering.clusters)
        for name, (array, _) in arrays.items():
            _write_npy(archive, f"{ARRAYS}{name}.npy", array)
        if bundle_folder is not None:
            for path in sorted(bundle_folder.iterdir()):
                if path.is_file():
                    archive.write(path, BUNDLE + path.name)
    return buffer.getvalue()


def import_session(ws: Workspace, source: BinaryIO | Path, file_name: str) -> SessionSummary:
    """Restore a session file into the workspace's copy of its dataset, replacing that dataset's labels, clustering,
    maps and settings. Everything is read and checked before anything is written; any problem is one sentence.
    Entries are bounded (count, sizes tied to the dataset) before any is inflated, then streamed to a staging folder."""
    with _staging(ws) as staging:
        manifest, key, n_cells, members = _unpack(ws, source, file_name, staging)
        labels = _read_npy(staging, LABELS, (n_cells,), file_name)
        clusters = _read_npy(staging, CLUSTERS, (n_cells,), file_name) if CLUSTERS in members else None
        arrays = {name: _read_npy(staging, f"{ARRAYS}{name}.npy", None, file_name) for name in manifest["arrays"]}
        if any(a.shape[0] != n_cells for a in arrays.values()):
            raise CytoInputError(f"The session file '{file_name}' holds a map or result that does not fit its dataset.")
        populations = _check_populations(manifest["populations"], labels, file_name)
        names = _check_clustering(manifest["clustering"], clusters, file_name)
        bundle = _store_bundle(ws, manifest["bundle"], staging / BUNDLE, file_name) if manifest["bundle"] else None
        table = _check_marker_table(manifest.get("marker_table"), file_name)  # absent from sessions before tables
    for name, array in arrays.items():
        meta = dict(manifest["arrays"][name])
        if name == RESULT and bundle is not None:
            meta["bundle_dir"] = bundle
        ws.save_array(key, name, array, meta)
    if clusters is not None:
        cluster_store(ws, key, n_cells).restore(clusters, names, manifest["clustering"]["description"],
                                                [str(f) for f in manifest["clustering"]["features"]])
    labelled = _restore_labels(LabelStore(ws.labels_dir(key), n_cells), populations, labels)
    ws.save_settings(key, manifest["settings"])
    ws.save_marker_table(key, table)
    return SessionSummary(key, str(manifest["dataset"].get("name", "")), len(populations), labelled, len(arrays),
                          clusters is not None, bundle)


def _check_marker_table(stored: object, file_name: str) -> MarkerTable | None:
    """The session's marker table, checked as a read one is, or None; a damaged one is refused in one sentence."""
    if stored is None:
        return None
    try:
        return MarkerTable.from_dict(stored if isinstance(stored, dict) else {})
    except CytoInputError as exc:
        raise CytoInputError(f"The session file '{file_name}' holds a damaged marker table, so nothing was "
                             f"restored.") from exc


def _write_npy(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(name, "w", force_zip64=True) as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


@contextmanager
def _staging(ws: Workspace) -> Iterator[Path]:
    """A private folder for a session's entries, in the models folder so that its bundle is kept by a rename;
    removed afterwards, whatever happened."""
    staging = ws.models_dir / f".import-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(ws: Workspace, source: BinaryIO | Path, file_name: str, staging: Path) -> tuple[dict, str, int, set[str]]:
    """The manifest, dataset key, cell count and entry names of a session file whose entries were checked (names,
    count, sizes) before any was inflated, then streamed into `staging` under their names."""
    try:
        with open_zip(source, "its") as (archive, size):
            infos = archive.infolist()
            check_entries(infos, size, MAX_SESSION_MEMBERS, "its")
            manifest, key, n_cells = _read_manifest(ws, archive, file_name)
            members = _check_members(infos, manifest, n_cells, file_name)
            (staging / ARRAYS).mkdir()
            (staging / BUNDLE).mkdir()
            for info in infos:
                if info.filename != MANIFEST:
                    extract_member(archive, info, staging / info.filename, "its")
    except zipfile.BadZipFile as exc:
        raise CytoInputError(f"'{file_name}' is not a session file (it is not a zip archive).") from exc
    except ArchiveRefused as exc:
        raise CytoInputError(f"The session file '{file_name}' cannot be imported: {exc}.") from exc
    return manifest, key, n_cells, members


def _read_manifest(ws: Workspace, archive: zipfile.ZipFile, file_name: str) -> tuple[dict, str, int]:
    """session.json (its declared size checked before it is inflated), checked for its format and its dataset being
    in this workspace."""
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError as exc:
        raise CytoInputError(f"'{file_name}' is not a session file this version of the app can read.") from exc
    check_sizes([info], Limits(MAX_JSON_BYTES, MAX_JSON_BYTES, DEFLATE_MAX_RATIO), "its")
    text = read_member(archive, info, "its")
    try:
        manifest = json.loads(text)
        dataset = manifest["dataset"]
        key, n_cells = str(dataset["key"]), int(dataset["n_cells"])
        if manifest["format"] != FORMAT or not isinstance(manifest["settings"], dict) or \
                not isinstance(manifest["arrays"], dict) or not isinstance(manifest["populations"], list):
            raise ValueError("unknown layout")
        if "transform" in manifest["settings"]:
            TransformSpec.from_dict(manifest["settings"]["transform"])
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise CytoInputError(f"'{file_name}' is not a session file this version of the app can read.") from exc
    if not ws.has_dataset(key) or ws.load_dataset(key).n_cells != n_cells:
        raise CytoInputError(
            f"The session file '{file_name}' belongs to the dataset '{dataset.get('name', '?')}' "
            f"({n_cells:,} cells), which is not in this workspace: load that data file first, then import the session.")
    return manifest, key, n_cells


def _check_members(infos: list[zipfile.ZipInfo], manifest: dict, n_cells: int, file_name: str) -> set[str]:
    """The archive holds only the members a session writes; its arrays declare no more than its dataset explains
    and its bundle files no more than a bundle holds (ArchiveRefused otherwise)."""
    allowed = {MANIFEST, LABELS, CLUSTERS} | {f"{ARRAYS}{n}.npy" for n in manifest["arrays"]}
    members = {info.filename for info in infos}
    for name in members:
        file = name[len(BUNDLE):]
        if name not in allowed and not (name.startswith(BUNDLE) and _PLAIN_NAME.match(file) and file[0] != "."):
            raise CytoInputError(f"The session file '{file_name}' holds an unexpected entry ({name[:60]!r}).")
    arrays_limit = MAX_JSON_BYTES + BYTES_PER_CELL * n_cells
    check_sizes([i for i in infos if not i.filename.startswith(BUNDLE)],
                Limits(arrays_limit, arrays_limit, DEFLATE_MAX_RATIO), "its")
    check_sizes([i for i in infos if i.filename.startswith(BUNDLE)],
                Limits(MAX_BUNDLE_FILE_BYTES, MAX_BUNDLE_BYTES, BUNDLE_MAX_RATIO), "its")
    missing = {LABELS} | {f"{ARRAYS}{n}.npy" for n in manifest["arrays"]}
    missing |= {CLUSTERS} if manifest.get("clustering") else set()
    if not missing <= members or any(not _PLAIN_NAME.match(str(n)) for n in manifest["arrays"]):
        raise CytoInputError(f"The session file '{file_name}' is incomplete or damaged.")
    return members


def _read_npy(staging: Path, name: str, shape: tuple[int, ...] | None, file_name: str) -> np.ndarray:
    """A numeric .npy member streamed to `staging` (never pickled objects, its header matching its size), of `shape`
    when given."""
    path = staging / name
    try:
        with open(path, "rb") as handle:
            array = read_npy(handle, path.stat().st_size, "its", name)
    except ArchiveRefused as exc:
        raise CytoInputError(f"The session file '{file_name}' has a damaged entry ({name}).") from exc
    if array.dtype.kind not in "iuf" or (shape is not None and array.shape != shape) or array.ndim not in (1, 2):
        raise CytoInputError(f"The session file '{file_name}' has an entry that does not fit its dataset ({name}).")
    return array


def _check_populations(populations: list, labels: np.ndarray, file_name: str) -> list[dict]:
    """Populations with unique names and known parents, and labels that name only them."""
    try:
        cleaned = [{"id": int(p["id"]), "name": str(p["name"]), "color": str(p["color"]),
                    "parent": None if p.get("parent") is None else int(p["parent"])} for p in populations]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CytoInputError(f"The session file '{file_name}' has a damaged population list.") from exc
    ids = {p["id"] for p in cleaned}
    used = set(np.unique(labels).tolist()) - {UNLABELLED}
    parents = {p["parent"] for p in cleaned} - {None}
    if len(ids) != len(cleaned) or len({p["name"] for p in cleaned}) != len(cleaned) or not used | parents <= ids:
        raise CytoInputError(f"The session file '{file_name}' has labels that do not match its populations.")
    return cleaned


def _check_clustering(clustering: dict | None, clusters: np.ndarray | None, file_name: str) -> dict[int, str]:
    """Cluster names for every cluster id in use."""
    if clusters is None:
        return {}
    try:
        names = {int(c): str(n) for c, n in clustering["names"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CytoInputError(f"The session file '{file_name}' has a damaged clustering.") from exc
    in_use = set(np.unique(clusters).tolist())
    if clusters.dtype.kind not in "iu" or not in_use <= set(names) or min(names, default=0) < 0:
        raise CytoInputError(f"The session file '{file_name}' has a clustering whose clusters are not all named.")
    return names


def _store_bundle(ws: Workspace, folder: object, staged: Path, file_name: str) -> str:
    """Keep the session's model bundle, streamed to the folder `staged`, in the workspace (verified first, refusals
    naming the session file); returns its folder name there."""
    if not isinstance(folder, str) or not _PLAIN_NAME.match(folder) or folder.startswith(".") or \
            not (staged / "bundle.json").is_file():
        raise CytoInputError(f"The session file '{file_name}' holds a damaged model bundle.")
    load_bundle(str(staged), label=file_name)  # CytoInputError in one sentence when the files are not a valid bundle
    target = ws.models_dir / folder
    if target.exists():
        if (target / "bundle.json").is_file() and filecmp.cmp(target / "bundle.json", staged / "bundle.json", False):
            return folder
        folder = f"{folder}-{uuid.uuid4().hex[:8]}"
        target = ws.models_dir / folder
    staged.rename(target)
    return folder


def _restore_labels(store: LabelStore, populations: list[dict], labels: np.ndarray) -> int:
    """Replace the store's populations and labels by the session's (names, colours and the population tree kept;
    each step undoable)."""
    for population in store.populations():
        store.delete(population.id)
    new_ids = {p["id"]: store.create_population(p["name"], p["color"]) for p in populations}
    labelled = 0
    for population in populations:
        parent = population["parent"]
        cells = np.flatnonzero(labels == population["id"])
        within = None if parent is None else new_ids[parent]
        labelled += store.assign(cells, new_ids[population["id"]], within=within).changed
    return labelled
