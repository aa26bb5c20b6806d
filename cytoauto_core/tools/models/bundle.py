"""Model bundles: a trained classifier with its transform, classes and provenance, saved without pickle and hash-checked."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...base.archive import MAX_JSON_BYTES, ArchiveRefused, read_npz
from ...base.dataset import UNASSIGNED_ID, UNKNOWN_ID, Spillover
from ...base.errors import CytoInputError
from ...prep.transforms import TransformSpec, transform_events
from . import Progress, ShouldStop, check_stop, report
from .kinds import classifier_types
from .novelty import NoveltyModel
from .xgb_check import check_xgboost_json

FORMAT = 1
CHUNK_ROWS = 200_000
NOVELTY_FILE = "novelty.npz"
# A bundle's largest file is an XGBoost booster's JSON, ~2 KB a tree: 200 rounds × 500 populations is ~200 MB.
MAX_BUNDLE_FILE_BYTES = 256 << 20
MAX_BUNDLE_BYTES = 512 << 20  # a booster at that ceiling plus the network's weights (a few MB) and envelopes


def _model_types() -> dict:
    """Every saved model class by `kind`: the classifiers, and the marker-table blend that wraps one of them."""
    from ..table_training import TableBlendModel

    return classifier_types() | {TableBlendModel.kind: TableBlendModel}


def current_versions() -> dict[str, str]:
    """Library versions recorded in every bundle (TensorFlow/Keras only when already loaded)."""
    import sys

    import sklearn
    import xgboost

    versions = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                "xgboost": xgboost.__version__, "cytoauto": "0.1"}
    for name in ("tensorflow", "keras"):
        version = getattr(sys.modules.get(name), "__version__", None)  # None while the warm-up thread imports it
        if version is not None:
            versions[name] = version
    return versions


@dataclass
class ModelBundle:
    """Everything needed to apply a classifier to a new file and to say where it came from."""

    classifier: object
    spec: TransformSpec
    class_ids: list[int]
    class_names: list[str]
    name: str = "model"
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    seed: int = 0
    versions: dict = field(default_factory=current_versions)
    novelty: NoveltyModel | None = None  # None in bundles saved before unknown detection


@dataclass
class Prediction:
    """Per-cell result: class id (-2 = unknown, unlike every named population; -1 = unassigned, below the confidence
    threshold), confidence, novelty (None for bundles without unknown detection) and all probabilities."""

    labels: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray
    class_ids: list[int]
    class_names: list[str]
    novelty: np.ndarray | None = None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def save_bundle(bundle: ModelBundle, directory: str) -> str:
    """Write the classifier's files and bundle.json (with each file's sha256) to `directory`; return the bundle hash."""
    if [int(c) for c in bundle.classifier.classes_] != [int(c) for c in bundle.class_ids]:
        raise ValueError("bundle.class_ids must equal the classifier's classes_ (same order)")
    os.makedirs(directory, exist_ok=True)
    config = bundle.classifier.save_state(directory)
    if bundle.novelty is not None:
        np.savez(os.path.join(directory, NOVELTY_FILE), **bundle.novelty.arrays())
    files = sorted(f for f in os.listdir(directory) if f != "bundle.json")
    meta = {
        "format": FORMAT, "name": bundle.name, "kind": bundle.classifier.kind, "model": config,
        "spec": bundle.spec.to_dict(), "class_ids": [int(c) for c in bundle.class_ids],
        "class_names": list(bundle.class_names), "params": bundle.params, "metrics": bundle.metrics,
        "seed": int(bundle.seed), "versions": bundle.versions,
        **({"novelty": bundle.novelty.config()} if bundle.novelty is not None else {}),
        "files": {f: _sha256(os.path.join(directory, f)) for f in files},
    }
    meta["bundle_hash"] = hashlib.sha256(_canonical(meta)).hexdigest()
    with open(os.path.join(directory, "bundle.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, sort_keys=True, indent=1)
    return meta["bundle_hash"]


def load_bundle(directory: str, label: str | None = None) -> ModelBundle:
    """Read a bundle, refusing in one sentence (CytoInputError) one whose folder holds anything but bundle.json and
    the files it lists with their hashes, files larger than a bundle holds, or that cannot be loaded and give one
    probability per class. Refusals name the bundle `label` (default: its folder's name; an import passes the user's
    file, never a staging folder)."""
    label = label or os.path.basename(os.path.normpath(directory))
    meta = _read_meta(directory, label)
    _check_files(directory, meta["files"], label)
    try:
        for fname in meta["files"]:
            if fname.endswith(".json"):  # every model JSON a bundle holds is an XGBoost booster
                check_xgboost_json(Path(directory) / fname)
        bundle = _build(directory, meta, label)
        _probe(bundle)
    except CytoInputError:
        raise
    except ArchiveRefused as exc:
        raise CytoInputError(f"The model bundle '{label}' cannot be loaded: {exc}.") from exc
    except Exception as exc:  # the files are untrusted; numpy, XGBoost and the model classes raise many kinds
        raise CytoInputError(f"The model bundle '{label}' cannot be loaded: its model files are not valid.") from exc
    return bundle


def _read_meta(directory: str, label: str) -> dict:
    """bundle.json, no larger than MAX_JSON_BYTES (read no further before parsing), parsed and checked against its
    own hash, with a file list of plain names."""
    path = os.path.join(directory, "bundle.json")
    try:
        if os.path.islink(path):
            raise OSError("bundle.json is a link")
        with open(path, "rb") as f:
            text = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise CytoInputError(f"The folder '{label}' does not contain a readable model bundle.") from exc
    if len(text) > MAX_JSON_BYTES:
        raise CytoInputError(f"The model bundle '{label}' has a bundle.json larger than this app reads "
                             f"(at most {MAX_JSON_BYTES:,} bytes).")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CytoInputError(f"The folder '{label}' does not contain a readable model bundle.") from exc
    if not isinstance(meta, dict):
        raise CytoInputError(f"The folder '{label}' does not contain a readable model bundle.")
    stored = meta.pop("bundle_hash", None)
    try:
        intact = stored == hashlib.sha256(_canonical(meta)).hexdigest()
    except (TypeError, ValueError, RecursionError):
        intact = False
    if not intact:
        raise CytoInputError(f"The model bundle '{label}' has been modified since it was saved (bundle.json changed).")
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CytoInputError(f"The model bundle '{label}' has no valid list of its files.")
    for fname in files:
        if fname in ("", ".", "..", "bundle.json") or "/" in fname or "\\" in fname or "\0" in fname:
            raise CytoInputError(f"The model bundle '{label}' lists a file outside its folder ({fname!r}).")
    return meta


def _check_files(directory: str, files: dict[str, str], label: str) -> None:
    """The folder holds exactly bundle.json and the listed files, each a regular file (no link) no larger than a
    bundle's files are, with its saved hash (sizes are checked before anything is read)."""
    present = set(os.listdir(directory)) - {"bundle.json"}
    missing, extra = sorted(set(files) - present), sorted(present - set(files))
    if missing:
        raise CytoInputError(f"The model bundle '{label}' is incomplete ({missing[0]} is missing).")
    if extra:
        raise CytoInputError(f"The model bundle '{label}' holds a file it did not save ({extra[0]}).")
    total = 0
    for fname in files:
        info = os.lstat(os.path.join(directory, fname))
        if not stat.S_ISREG(info.st_mode):
            raise CytoInputError(f"The model bundle '{label}' holds {fname} as a link or folder, not a saved file.")
        if info.st_size > MAX_BUNDLE_FILE_BYTES:
            raise CytoInputError(f"The model bundle '{label}' holds {fname}, larger than this app reads "
                                 f"({info.st_size:,} bytes; at most {MAX_BUNDLE_FILE_BYTES:,}).")
        total += info.st_size
    if total > MAX_BUNDLE_BYTES:
        raise CytoInputError(f"The model bundle '{label}' is larger than this app reads "
                             f"({total:,} bytes; at most {MAX_BUNDLE_BYTES:,}).")
    for fname, digest in files.items():
        path = os.path.join(directory, fname)
        if _sha256(path) != digest:
            raise CytoInputError(f"The model bundle '{label}' has been modified since it was saved ({fname} changed).")


def _build(directory: str, meta: dict, label: str) -> ModelBundle:
    kinds = _model_types()
    if meta["kind"] not in kinds:
        raise CytoInputError(f"The model bundle '{label}' holds an unknown model type '{meta['kind']}'.")
    classifier = kinds[meta["kind"]].load_state(directory, meta["model"])
    bundle = ModelBundle(
        classifier=classifier, spec=TransformSpec.from_dict(meta["spec"]),
        class_ids=[int(c) for c in meta["class_ids"]], class_names=[str(n) for n in meta["class_names"]],
        name=str(meta["name"]), params=dict(meta["params"]), metrics=dict(meta["metrics"]), seed=int(meta["seed"]),
        versions=dict(meta["versions"]), novelty=_novelty(directory, meta),
    )
    if [int(c) for c in classifier.classes_] != bundle.class_ids or len(bundle.class_names) != len(bundle.class_ids):
        raise ValueError("class ids, names and the classifier's classes disagree")
    return bundle


def _novelty(directory: str, meta: dict) -> NoveltyModel | None:
    """The bundle's unknown-cell envelopes (bounded read, pickle never used), None when it was saved without them."""
    if "novelty" not in meta:
        return None
    return NoveltyModel.from_saved(read_npz(os.path.join(directory, NOVELTY_FILE)), meta["novelty"])


def _probe(bundle: ModelBundle) -> None:
    """Predict two cells of zeros: a bundle whose arrays do not fit together fails here, not on the user's file."""
    probe = np.zeros((2, len(bundle.spec.features)), np.float32)
    proba = np.asarray(bundle.classifier.predict_proba(probe))
    if proba.shape != (2, len(bundle.class_ids)) or not np.isfinite(proba).all():
        raise ValueError(f"probe prediction has shape {proba.shape}")
    if bundle.novelty is not None and bundle.novelty.means.shape != (len(bundle.class_ids), probe.shape[1]):
        raise ValueError(f"novelty envelopes have shape {bundle.novelty.means.shape}")


def predict_dataset(
    bundle: ModelBundle,
    events: np.ndarray,
    channel_names: list[str],
    spillover: Spillover | None = None,
    threshold: float = 0.0,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    rejection: float | None = None,
) -> Prediction:
    """Apply a bundle to raw events, matching channels by name, in chunks of CHUNK_ROWS cells to bound memory;
    progress is reported and cancellation honoured between chunks. Cells below the confidence `threshold` are
    unassigned; with the bundle's unknown detection, cells more novel than `rejection` allows (the bundle's own
    level when None, 0 turns it off) are unknown."""
    present = set(channel_names)
    missing = [c for c in bundle.spec.features if c not in present]
    if missing:
        raise CytoInputError(f"This file lacks channel '{missing[0]}', which the model '{bundle.name}' needs.")
    n, k = events.shape[0], len(bundle.class_ids)
    proba = np.empty((n, k), np.float32)
    novelty = None if bundle.novelty is None else np.empty(n, np.float32)
    for start in range(0, n, CHUNK_ROWS):
        check_stop(should_stop)
        report(progress, start / max(n, 1), f"labelled {start:,} of {n:,} cells")
        chunk = transform_events(events[start:start + CHUNK_ROWS], channel_names, bundle.spec, spillover)
        proba[start:start + len(chunk)] = bundle.classifier.predict_proba(chunk)
        if novelty is not None:
            novelty[start:start + len(chunk)] = bundle.novelty.novelty(chunk)
    ids = np.asarray(bundle.class_ids, np.int64)
    unknown = None if novelty is None else bundle.novelty.unknown(novelty, rejection)
    labels, confidence = call_cells(proba, ids, threshold, unknown)
    return Prediction(labels=labels, confidence=confidence, probabilities=proba, class_ids=list(bundle.class_ids),
                      class_names=list(bundle.class_names), novelty=novelty)


def call_cells(proba: np.ndarray, ids: np.ndarray, threshold: float, unknown: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell population ids (the most probable class, UNASSIGNED_ID below the confidence `threshold`, UNKNOWN_ID
    where the `unknown` mask is set) and confidence (the top probability, float32)."""
    confidence = proba.max(axis=1, initial=0.0).astype(np.float32, copy=False)
    if not len(proba):
        return np.empty(0, np.int64), confidence
    labels = np.where(confidence >= threshold, np.asarray(ids, np.int64)[proba.argmax(axis=1)], UNASSIGNED_ID)
    if unknown is not None:
        labels[unknown] = UNKNOWN_ID
    return labels.astype(np.int64), confidence


@dataclass(frozen=True)
class BundleRef:
    """How a worker finds the bundle: its folder (visible to every worker) and the hash the client saw."""

    directory: str
    bundle_hash: str


def read_bundle_ref(directory: str | Path) -> BundleRef:
    """The bundle's folder and stored hash, read from bundle.json without loading the model (no TensorFlow here)."""
    try:
        with open(Path(directory) / "bundle.json", encoding="utf-8") as f:
            text = f.read(MAX_JSON_BYTES + 1)  # no further: a bundle.json beyond the cap is refused unparsed
        if len(text) > MAX_JSON_BYTES:
            raise ValueError("bundle.json is larger than a bundle writes")
        bundle_hash = json.loads(text)["bundle_hash"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CytoInputError(f"'{directory}' is not a readable model bundle folder.") from exc
    return BundleRef(str(Path(directory).resolve()), str(bundle_hash))


@lru_cache(maxsize=4)
def worker_bundle(ref: BundleRef) -> ModelBundle:
    """The bundle, loaded (and hash-checked) once per worker process and shared by all its tasks."""
    if read_bundle_ref(ref.directory).bundle_hash != ref.bundle_hash:
        raise CytoInputError(f"The model bundle '{Path(ref.directory).name}' changed while the batch was running.")
    return load_bundle(ref.directory)
