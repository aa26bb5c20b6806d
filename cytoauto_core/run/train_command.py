"""Training without the app: files plus labels (a labels CSV, an annotation column or a FlowJo workspace's gates) →
the Train page's comparison and a saved bundle, through the same `train_and_apply` the page runs.

A labels CSV has a cell-index column and a population column, found by name as the Results page's reference upload
guesses them (`label_columns`: `cell_index`, else a column named like a row or event number such as
`row_in_fcs_0based`, else the first; `population`, else a column named like a cell type, label or gate, else the
next). The index is the cell's row in the combined files (in the order given), 1-based when its column's name says so,
or, when the CSV has a `sample` column too, the row in that sample's own file (the `event_id` of our exports).
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..base.dataset import NOT_A_POPULATION, Dataset, event_ids
from ..base.errors import CytoInputError, quoted
from ..base.labelled import MIN_LABELS_FOR_TRAINING
from ..io import read_files
from ..prep.transforms import TransformSpec, default_spec, transform_features
from ..tools.models.novelty import DEFAULT_REJECTION
from ..tools.recommendation import recommend_model
from ..tools.training import DEFAULT_COMPARISON, TrainingOutcome, TrainingRequest, train_and_apply

CELL_COLUMN_HINTS = ("cell_index", "event_id", "cell_id", "row", "index", "event")  # most telling first
POPULATION_COLUMN_HINTS = ("population", "cell_type", "celltype", "label", "gate", "cluster", "name")
ONE_BASED = re.compile(r"(?:1|one)[\s_-]?based", re.IGNORECASE)
MODEL_ALIASES = {"vime": "VIME", "logreg": "Logistic regression", "logistic": "Logistic regression",
                 "logistic regression": "Logistic regression", "xgboost": "XGBoost", "lda": "LDA"}


class TrainUsageError(CytoInputError):
    """The train request itself is unusable (bad option, output folder taken): nothing was trained."""


class LabelColumns(NamedTuple):
    """Which columns of a label or reference table hold the cell index and the population, and the first cell's
    index (0 or 1)."""

    cell: str
    population: str
    first_index: int


@dataclass
class LabelSet:
    """Per-cell population ids (-1 = unlabelled), their names, and where a CSV's were read from (its columns)."""

    labels: np.ndarray
    names: dict[int, str]
    read_from: str = ""

    def counts(self) -> dict[str, int]:
        """Labelled cells per population name."""
        ids, n = np.unique(self.labels[self.labels >= 0], return_counts=True)
        return {self.names[int(i)]: int(c) for i, c in zip(ids, n)}


def model_name(text: str) -> str:
    """The display name of a model from a command-line spelling ('lda', 'logreg', 'XGBoost', …)."""
    key = text.strip().lower().replace("_", " ").replace("-", " ")
    if key in MODEL_ALIASES:
        return MODEL_ALIASES[key]
    raise TrainUsageError(f"Unknown model '{text}': choose from vime, logreg, xgboost and lda.")


def _label_set(dataset: Dataset, values: np.ndarray) -> LabelSet:
    """Ids by population name (sorted), -1 for cells whose value names no population."""
    text = pd.Series(values, dtype=object).where(pd.notna(values), "").astype(str).str.strip().to_numpy(dtype=object)
    named = np.array([t.lower() not in NOT_A_POPULATION for t in text])
    names = sorted(set(text[named]))
    lookup = {n: i for i, n in enumerate(names)}
    labels = np.full(dataset.n_cells, -1, np.int16)
    labels[named] = [lookup[t] for t in text[named]]
    return LabelSet(labels, dict(enumerate(names)))


def labels_from_column(dataset: Dataset, column: str) -> LabelSet:
    """Labels from an annotation column of the files (e.g. a ground-truth or a manual-gate column)."""
    if column not in dataset.annotations.columns:
        have = ", ".join(map(str, dataset.annotations.columns)) or "none"
        raise CytoInputError(f"'{dataset.name}' has no annotation column '{column}' (its columns: {have}).")
    return _label_set(dataset, dataset.annotations[column].to_numpy(dtype=object))


def label_columns(columns: Sequence[str]) -> LabelColumns:
    """The app's guess of a table's cell-index and population columns: the first column named like each kind
    (CELL_COLUMN_HINTS, POPULATION_COLUMN_HINTS, the most telling name first), else the first and the next other
    column; the index is 1-based when its column's name says so ('row_1based'), else 0-based."""
    names = [str(c) for c in columns if str(c) != "sample"] or [str(c) for c in columns]
    if not names:
        raise CytoInputError("A label table needs a cell-index column and a population column; this one has none.")
    cell = _named_like(names, CELL_COLUMN_HINTS, ()) or names[0]
    population = _named_like(names, POPULATION_COLUMN_HINTS, (cell,)) or next((c for c in names if c != cell), cell)
    return LabelColumns(cell, population, 1 if ONE_BASED.search(cell) else 0)


def _named_like(names: Sequence[str], hints: Sequence[str], taken: Sequence[str]) -> str | None:
    """The first column (not `taken`) named exactly as a hint, else containing one, hints in order; case, spaces and
    underscores alike ('Cell Type' is 'cell_type')."""
    free = {n: re.sub(r"[\s_]+", "_", n.strip().lower()) for n in names if n not in taken}
    for hint in hints:
        for exact in (True, False):
            found = next((n for n, plain in free.items() if (plain == hint if exact else hint in plain)), None)
            if found is not None:
                return found
    return None


def labels_from_csv(path: Path, dataset: Dataset) -> LabelSet:
    """Labels from a CSV of (cell index, population) rows and optionally a sample column, its columns found by
    label_columns."""
    path = Path(path)
    name = path.name
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CytoInputError(f"The labels file '{name}' could not be read as a CSV table ({exc}).") from exc
    columns = label_columns(table.columns)
    if columns.cell == columns.population:
        raise CytoInputError(f"The labels file '{name}' needs a cell-index column and a population column "
                             f"(it has only {quoted(columns.cell)}).")
    index = pd.to_numeric(table[columns.cell], errors="coerce")
    if index.isna().any() or (index % 1 != 0).any():
        row = int(np.flatnonzero(index.isna() | (index % 1 != 0))[0]) + 2
        raise CytoInputError(f"The labels file '{name}' has a cell index (column {quoted(columns.cell)}) that is not "
                             f"a whole number on line {row}.")
    rows = index.to_numpy(np.int64) - columns.first_index
    if "sample" in table.columns:
        rows = _sample_rows(table["sample"].astype(str).to_numpy(), rows, dataset, name)
    elif ((rows < 0) | (rows >= dataset.n_cells)).any():
        bad = int(rows[(rows < 0) | (rows >= dataset.n_cells)][0]) + columns.first_index
        raise CytoInputError(f"The labels file '{name}' names cell {bad}, but the files hold cells "
                             f"{columns.first_index} to {dataset.n_cells - 1 + columns.first_index}.")
    if len(np.unique(rows)) != len(rows):
        raise CytoInputError(f"The labels file '{name}' labels some cells twice.")
    values = np.full(dataset.n_cells, "", dtype=object)
    values[rows] = table[columns.population].fillna("").astype(str).to_numpy(dtype=object)
    found = _label_set(dataset, values)
    found.read_from = (f"cell index from column {quoted(columns.cell)} ({columns.first_index}-based), population from "
                       f"{quoted(columns.population)}")
    return found


def labels_from_workspace(wsp: Path, files: Sequence[Path], dataset: Dataset,
                          gates: Sequence[str] | None = None) -> LabelSet:
    """Labels from a FlowJo workspace's gates (leaf gates by default) applied by FlowKit to `files`, which `dataset`
    was read from."""
    from ..io.flowjo import workspace_labels

    gated = workspace_labels(Path(wsp), [Path(f) for f in files], gates)
    sizes = np.bincount(np.asarray(dataset.sample_ids), minlength=len(dataset.samples)).tolist()
    if gated.cells_per_file != sizes:
        raise CytoInputError(f"FlowKit read {sum(gated.cells_per_file):,} events from the files but they hold "
                             f"{dataset.n_cells:,}, so the gates cannot be matched to the cells.")
    return LabelSet(gated.labels, gated.names)


def _sample_rows(samples: np.ndarray, rows: np.ndarray, dataset: Dataset, name: str) -> np.ndarray:
    """Positions in the combined dataset of (sample, row in that sample's file) pairs."""
    known = {s: i for i, s in enumerate(dataset.samples)}
    unknown = sorted(set(samples) - set(known))
    if unknown:
        raise CytoInputError(f"The labels file '{name}' names sample '{unknown[0]}', which is not among the files "
                             f"({', '.join(dataset.samples)}).")
    ids = np.asarray(dataset.sample_ids)
    within = event_ids(ids)
    sizes = np.bincount(ids, minlength=len(dataset.samples))
    sample_index = np.array([known[s] for s in samples], np.int64)
    if ((rows < 0) | (rows >= sizes[sample_index])).any():
        k = int(np.flatnonzero((rows < 0) | (rows >= sizes[sample_index]))[0])
        raise CytoInputError(f"The labels file '{name}' names cell {rows[k]} of '{samples[k]}', which holds "
                             f"{sizes[sample_index[k]]:,} cells.")
    position = np.empty((len(dataset.samples), int(sizes.max(initial=0))), np.int64)
    position[ids, within] = np.arange(len(ids))
    return position[sample_index, rows]


def keep_per_population(labels: LabelSet, per_population: int, seed: int) -> LabelSet:
    """At most `per_population` labelled cells of each population, chosen at random with `seed`."""
    rng = np.random.default_rng(seed)
    kept = np.full_like(labels.labels, -1)
    for pid in sorted(labels.names):
        cells = np.flatnonzero(labels.labels == pid)
        chosen = cells if len(cells) <= per_population else rng.choice(cells, per_population, replace=False)
        kept[chosen] = pid
    return LabelSet(kept, labels.names, labels.read_from)


@dataclass
class TrainCommand:
    """Everything `train` needs, as parsed from the command line."""

    files: list[Path]
    out: Path
    labels_csv: Path | None = None
    label_column: str | None = None
    workspace: Path | None = None
    gates: Sequence[str] | None = None
    per_population: int | None = None
    compare: Sequence[str] = DEFAULT_COMPARISON
    apply: str | None = None
    seed: int = 0
    threshold: float = 0.5
    rejection: float = DEFAULT_REJECTION
    cofactor: float | None = None
    features: Sequence[str] | None = None
    vime: dict | None = None


def prepare(command: TrainCommand) -> tuple[Dataset, TransformSpec, LabelSet]:
    """Read the files, the labels and the transform settings; raise one sentence when any cannot be used."""
    sources = [command.labels_csv, command.label_column, command.workspace]
    if sum(s is not None for s in sources) != 1:
        raise TrainUsageError("Give the labels one way: --labels FILE.csv, --label-column NAME or --wsp FILE.wsp.")
    if command.out.exists() and (not command.out.is_dir() or any(command.out.iterdir())):
        raise TrainUsageError(f"The output folder '{command.out}' already exists and is not empty.")
    dataset = read_files(command.files)
    if command.labels_csv is not None:
        labels = labels_from_csv(command.labels_csv, dataset)
    elif command.label_column is not None:
        labels = labels_from_column(dataset, command.label_column)
    else:
        labels = labels_from_workspace(command.workspace, command.files, dataset, command.gates)
    if command.per_population:
        labels = keep_per_population(labels, command.per_population, command.seed)
    spec = default_spec(dataset)
    if command.features:
        spec.features = _channels(dataset, command.features)
        kinds = {c.name: c.kind for c in dataset.channels}
        spec.linear = [f for f in spec.features if kinds[f] in ("scatter", "time")]
    if command.cofactor is not None:
        spec.cofactor = float(command.cofactor)
    return dataset, spec, labels


def _channels(dataset: Dataset, wanted: Sequence[str]) -> list[str]:
    """Channel names for --features given as channel names or markers."""
    by_marker = {c.marker: c.name for c in dataset.channels}
    names = set(dataset.channel_names)
    out = []
    for w in wanted:
        if w not in names and w not in by_marker:
            raise CytoInputError(f"The files have no channel or marker '{w}'.")
        out.append(w if w in names else by_marker[w])
    return out


def run_train(command: TrainCommand, progress=None) -> tuple[TrainingOutcome, str, LabelSet]:
    """Train as the Train page does; the bundle ends up in `command.out`. Returns the outcome, the model applied
    and the labels used."""
    dataset, spec, labels = prepare(command)
    counts = labels.counts()
    usable = [c for c in counts.values() if c >= MIN_LABELS_FOR_TRAINING]
    if len(usable) < 2:
        raise CytoInputError(f"Training needs at least two populations with {MIN_LABELS_FOR_TRAINING} or more "
                             f"labelled cells each (the labels give {len(usable)}).")
    apply = command.apply or recommend_model(usable).model
    request = TrainingRequest(compare=list(command.compare), apply=apply, vime=dict(command.vime or {}),
                              seed=command.seed, threshold=command.threshold, rejection=command.rejection)
    x = transform_features(dataset, spec)
    out = command.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.train-"))
    try:
        outcome = train_and_apply(dataset, x, spec, labels.labels, labels.names, request, staging,
                                  progress or (lambda f, m: None), lambda: False)
        if out.exists():
            out.rmdir()  # checked empty in prepare()
        outcome.bundle_dir.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    outcome.bundle_dir = out
    return outcome, apply, labels


def stage_printer(stream=sys.stderr):
    """A progress callback that prints each new stage once, with its percentage."""
    last = [""]

    def progress(fraction: float, message: str) -> None:
        stage = message.split(":")[0]
        if stage != last[0]:
            last[0] = stage
            print(f"{fraction:4.0%} {message}", file=stream, flush=True)

    return progress

