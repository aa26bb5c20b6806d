"""The label store: named populations and per-cell labels, saved on every action, with undo and redo.

Every action runs under a file lock and starts from what is on disk, so two browser tabs (or a
restart) never lose or overwrite each other's work. Each action has one commit point, the rename of a
small manifest naming the labels file and the undo/redo stacks, so a crash leaves the old or the new state.
Labels are int16 population ids; -1 = unlabelled.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .dataset import NOT_A_POPULATION
from .errors import CytoInputError
from .storage import atomic_file, atomic_save_npy, atomic_write_json, is_temp_file, read_json

UNLABELLED = -1
FORMAT = 2
HEAD = "head.json"  # the manifest: populations, undo/redo stacks and the name of the current labels file
LEGACY_STATE, LEGACY_LABELS = "state.json", "labels.npy"  # the layout before FORMAT 2, migrated on its first write
MIN_LABELS_FOR_TRAINING = 5
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#8ca252", "#de9ed6", "#e7ba52", "#31a354",
]


@dataclass
class Population:
    """A user-named population."""

    id: int
    name: str
    color: str


@dataclass
class _State:
    populations: list[Population]
    labels: np.ndarray
    version: int
    undo: list[int]
    redo: list[int]
    next_action: int
    labels_file: str | None


class LabelStore:
    """Populations and labels of one dataset, persisted in `directory`."""

    def __init__(self, directory: Path, n_cells: int) -> None:
        self.directory = Path(directory)
        self.n_cells = n_cells
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "actions").mkdir(exist_ok=True)

    # ---- reading -------------------------------------------------------------------------
    def populations(self) -> list[Population]:
        return [Population(**p) for p in self._shared_head()["populations"]]

    def labels(self) -> np.ndarray:
        """Per-cell population ids (int16, -1 = unlabelled)."""
        return self._read().labels

    def version(self) -> int:
        """Increases with every action; lets a page notice changes made in another tab."""
        return self._shared_head()["version"]

    def counts(self) -> pd.DataFrame:
        """Labelled cells per population (id, name, color, cells, enough_for_training)."""
        state = self._read()
        ids, n = np.unique(state.labels[state.labels >= 0], return_counts=True)
        by_id = dict(zip(ids.tolist(), n.tolist()))
        rows = [
            {**asdict(p), "cells": by_id.get(p.id, 0), "enough_for_training": by_id.get(p.id, 0) >= MIN_LABELS_FOR_TRAINING}
            for p in state.populations
        ]
        return pd.DataFrame(rows, columns=["id", "name", "color", "cells", "enough_for_training"])

    def can_undo(self) -> bool:
        return bool(self._shared_head()["undo"])

    def can_redo(self) -> bool:
        return bool(self._shared_head()["redo"])

    # ---- actions -------------------------------------------------------------------------
    def create_population(self, name: str, color: str | None = None) -> int:
        """Add a population and return its id; names must be unique and non-empty."""
        with self._action("create population") as state:
            name = _clean_name(name)
            if any(p.name == name for p in state.populations):
                raise CytoInputError(f"A population named {name!r} already exists.")
            new_id = max((p.id for p in state.populations), default=-1) + 1
            state.populations.append(Population(new_id, name, color or PALETTE[new_id % len(PALETTE)]))
            return new_id

    def rename(self, pop_id: int, name: str) -> None:
        with self._action("rename") as state:
            name = _clean_name(name)
            if any(p.name == name and p.id != pop_id for p in state.populations):
                raise CytoInputError(f"A population named {name!r} already exists.")
            _find(state, pop_id).name = name

    def recolor(self, pop_id: int, color: str) -> None:
        with self._action("recolour") as state:
            _find(state, pop_id).color = color

    def assign(self, cells: np.ndarray, pop_id: int) -> int:
        """Label `cells` (row indices) as population `pop_id`; returns how many labels changed."""
        with self._action("assign") as state:
            _find(state, pop_id)
            return _set(state, np.asarray(cells, dtype=np.int64), pop_id)

    def unassign(self, cells: np.ndarray) -> int:
        """Remove the labels of `cells`; returns how many labels changed."""
        with self._action("unassign") as state:
            return _set(state, np.asarray(cells, dtype=np.int64), UNLABELLED)

    def merge(self, sources: list[int], target: int) -> None:
        """Move every cell of `sources` into `target` and delete the source populations."""
        with self._action("merge") as state:
            _find(state, target)
            for src in sources:
                if src == target:
                    continue
                _find(state, src)
                _set(state, np.flatnonzero(state.labels == src), target)
                state.populations = [p for p in state.populations if p.id != src]

    def delete(self, pop_id: int) -> None:
        """Delete a population; its cells become unlabelled."""
        with self._action("delete") as state:
            _find(state, pop_id)
            _set(state, np.flatnonzero(state.labels == pop_id), UNLABELLED)
            state.populations = [p for p in state.populations if p.id != pop_id]

    def undo(self) -> bool:
        """Revert the last action; False when there is nothing to undo."""
        return self._step(backwards=True)

    def redo(self) -> bool:
        """Re-apply the last undone action; False when there is nothing to redo."""
        return self._step(backwards=False)

    # ---- import / export -----------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Labelled cells as (cell_index, population) rows."""
        state = self._read()
        names = {p.id: p.name for p in state.populations}
        cells = np.flatnonzero(state.labels >= 0)
        return pd.DataFrame({"cell_index": cells, "population": [names[i] for i in state.labels[cells].tolist()]})

    def import_frame(self, frame: pd.DataFrame) -> int:
        """Add labels from (cell_index, population) rows, creating populations by name; returns cells labelled."""
        if not {"cell_index", "population"} <= set(frame.columns):
            raise CytoInputError("A label file needs the columns 'cell_index' and 'population'.")
        cells = pd.to_numeric(frame["cell_index"], errors="coerce")
        if cells.isna().any() or (cells < 0).any() or (cells >= self.n_cells).any():
            raise CytoInputError(f"The label file has cell indices outside 0–{self.n_cells - 1:,} for this dataset.")
        return self._import(cells.to_numpy(np.int64), frame["population"].astype(str).to_numpy())

    def import_annotation(
        self, values: np.ndarray, per_population: int | None = None, seed: int = 0, skip: tuple[str, ...] = NOT_A_POPULATION
    ) -> int:
        """Label cells from an annotation column (e.g. ground truth), optionally only N random cells per population."""
        values = np.asarray(values).astype(str)
        keep = ~np.isin(np.char.lower(values), skip)
        cells = np.flatnonzero(keep)
        if per_population is not None:
            rng = np.random.default_rng(seed)
            chosen = []
            for name in np.unique(values[cells]):
                members = cells[values[cells] == name]
                chosen.append(rng.choice(members, min(per_population, len(members)), replace=False))
            cells = np.sort(np.concatenate(chosen)) if chosen else cells[:0]
        return self._import(cells, values[cells])

    def _import(self, cells: np.ndarray, names: np.ndarray) -> int:
        with self._action("import") as state:
            by_name = {p.name: p.id for p in state.populations}
            changed = 0
            for name in pd.unique(names):
                if name not in by_name:
                    new_id = max((p.id for p in state.populations), default=-1) + 1
                    state.populations.append(Population(new_id, name, PALETTE[new_id % len(PALETTE)]))
                    by_name[name] = new_id
                changed += _set(state, cells[names == name], by_name[name])
            return changed

    # ---- persistence ---------------------------------------------------------------------
    @contextmanager
    def _lock(self, exclusive: bool = True) -> Iterator[None]:
        """Writers hold the lock alone; readers share it, so no writer removes a file a reader is about to open."""
        with open(self.directory / "lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _head(self) -> dict:
        """The committed manifest (or a folder of the earlier layout, read as one), without the labels array."""
        head = read_json(self.directory / HEAD)
        if head is None:
            head = read_json(self.directory / LEGACY_STATE)
            if head is None:
                return {"populations": [], "version": 0, "undo": [], "redo": [], "next_action": 0, "labels": None}
            head["labels"] = LEGACY_LABELS
        return head

    def _shared_head(self) -> dict:
        with self._lock(exclusive=False):
            return self._head()

    def _read(self) -> _State:
        with self._lock(exclusive=False):
            return self._read_locked()

    def _read_locked(self) -> _State:
        head = self._head()
        labels = np.full(self.n_cells, UNLABELLED, np.int16)
        if head["labels"] is not None:
            path = self.directory / head["labels"]
            try:
                labels = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CytoInputError(f"The labels of this dataset cannot be read ({path.name} is missing or damaged).") from exc
            if labels.shape != (self.n_cells,):
                raise CytoInputError(f"The labels of this dataset ({path.name}) do not match its {self.n_cells:,} cells.")
        return _State(
            [Population(**p) for p in head["populations"]], labels, head["version"],
            head["undo"], head["redo"], head["next_action"], head["labels"],
        )

    def _commit(self, state: _State, labels_changed: bool) -> None:
        """Write changed labels under a new name, then switch to the new state with one rename of the manifest
        (the commit point: a crash before it leaves the old state whole, after it the new one); then tidy up."""
        state.version += 1
        if labels_changed or state.labels_file is None:
            state.labels_file = f"labels-{state.version}.npy"
            atomic_save_npy(self.directory / state.labels_file, state.labels)
        atomic_write_json(self.directory / HEAD, {
            "format": FORMAT, "labels": state.labels_file,
            "populations": [asdict(p) for p in state.populations], "version": state.version,
            "undo": state.undo, "redo": state.redo, "next_action": state.next_action,
        })
        self._remove_unreferenced(state)

    def _remove_unreferenced(self, state: _State) -> None:
        """Delete what the committed state no longer names: replaced labels, discarded actions, the earlier layout's
        state file and temp files of killed writers (every writer holds the lock, so none is in use)."""
        keep = {HEAD, "lock", state.labels_file}
        for path in self.directory.iterdir():
            if path.is_file() and path.name not in keep and (path.name.startswith("labels") or path.name == LEGACY_STATE
                                                              or is_temp_file(path)):
                path.unlink()
        actions = {str(a) for a in state.undo + state.redo}
        for path in (self.directory / "actions").iterdir():
            if path.name.split(".")[0] not in actions or is_temp_file(path):
                path.unlink()

    @contextmanager
    def _action(self, what: str) -> Iterator[_State]:
        """Run one action atomically: lock, read, mutate, record an undo entry, commit."""
        with self._lock():
            state = self._read_locked()
            before_labels = state.labels.copy()
            before_pops = [asdict(p) for p in state.populations]
            yield state
            changed = np.flatnonzero(before_labels != state.labels)
            after_pops = [asdict(p) for p in state.populations]
            if changed.size == 0 and after_pops == before_pops:
                return
            action = state.next_action  # never named by the committed state, so its files may be (re)written freely
            with atomic_file(self._action_path(action, ".npz")) as handle:
                np.savez(handle, cells=changed, before=before_labels[changed], after=state.labels[changed])
            atomic_write_json(self._action_path(action, ".json"), {"what": what, "before": before_pops, "after": after_pops})
            state.undo.append(action)
            state.redo = []
            state.next_action += 1
            self._commit(state, labels_changed=changed.size > 0)

    def _step(self, backwards: bool) -> bool:
        with self._lock():
            state = self._read_locked()
            stack, other = (state.undo, state.redo) if backwards else (state.redo, state.undo)
            if not stack:
                return False
            action = stack.pop()
            try:
                with np.load(self._action_path(action, ".npz"), allow_pickle=False) as arrays:
                    cells, values = arrays["cells"], arrays["before" if backwards else "after"]
                pops = read_json(self._action_path(action, ".json"))["before" if backwards else "after"]
                state.labels[cells] = values
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                stack.clear()  # the entries below it were recorded on top of it: none can be applied any more
                self._commit(state, labels_changed=False)
                word = "undone" if backwards else "redone"
                raise CytoInputError(f"The last step can no longer be {word}: its record is missing or damaged.") from exc
            state.populations = [Population(**p) for p in pops]
            other.append(action)
            self._commit(state, labels_changed=True)
            return True

    def _action_path(self, action: int, suffix: str) -> Path:
        return self.directory / "actions" / f"{action}{suffix}"


def _set(state: _State, cells: np.ndarray, value: int) -> int:
    if cells.size and (cells.min() < 0 or cells.max() >= state.labels.size):
        raise CytoInputError("Some selected cells are outside this dataset.")
    changed = int(np.count_nonzero(state.labels[cells] != value))
    state.labels[cells] = value
    return changed


def _find(state: _State, pop_id: int) -> Population:
    for p in state.populations:
        if p.id == pop_id:
            return p
    raise CytoInputError(f"Population {pop_id} no longer exists; it may have been deleted in another tab.")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise CytoInputError("A population needs a name.")
    return name[:80]
