"""The label store: named populations and per-cell labels, saved on every action, with undo and redo.

Every action runs under a file lock and starts from what is on disk, so two browser tabs (or a
restart) never lose or overwrite each other's work. Each action has one commit point, the rename of a
small manifest naming the labels file and the undo/redo stacks, so a crash leaves the old or the new state.
Labels are int16 population ids; -1 = unlabelled.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pandas as pd

from ..base.dataset import NOT_A_POPULATION
from ..base.errors import CytoInputError, quoted
from ..base.labelled import MIN_LABELS_FOR_TRAINING
from ..base.storage import atomic_file, atomic_save_npy, atomic_write_json, folder_lock, is_temp_file, read_json
from ..io.csv_reader import SNIFF_BYTES, check_table_head

UNLABELLED = -1
FORMAT = 2
HEAD = "head.json"  # the manifest: populations, undo/redo stacks and the name of the current labels file
LEGACY_STATE, LEGACY_LABELS = "state.json", "labels.npy"  # the layout before FORMAT 2, migrated on its first write
MAX_FILE_COLUMNS = 1_000  # a label file: cell index and population, or an export with every channel and gate beside
# Populations' and clusters' colours: 24, every pair distinct (CIE ΔE ≥ 21), none grey nor near the unassigned and
# unknown greys (#bbbbbb, #444444; tests/test_palette.py), so 20 clusters get 20 colours.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#a6761d",
    "#e7298a", "#1b9e77", "#e6ab02", "#843c39", "#98df8a", "#ff9896", "#542788", "#637939", "#00bfff", "#b15928",
    "#ba55d3", "#9acd32", "#ffbb78", "#000080",
]


@dataclass
class Population:
    """A user-named population."""

    id: int
    name: str
    color: str
    parent: int | None = None  # the population whose cells it was drawn among (a gate within a gate), if any


@dataclass
class Assignment:
    """What one assign did: labels changed, cells taken from other populations (by name), and the populations
    that fell below MIN_LABELS_FOR_TRAINING because of it."""

    changed: int
    moved: dict[str, int]
    below_minimum: list[str]

    def moved_sentence(self) -> str:
        """'312 cells moved from Mature B and 4 from NK cells.', or '' when none moved."""
        ranked = [f"{n:,} from {name}" for name, n in sorted(self.moved.items(), key=lambda kv: -kv[1])]
        if not ranked:
            return ""
        ranked[0] = ranked[0].replace(" from ", " cells moved from " if sum(self.moved.values()) > 1 else
                                      " cell moved from ", 1)
        return (ranked[0] if len(ranked) == 1 else ", ".join(ranked[:-1]) + " and " + ranked[-1]) + "."


def read_label_file(handle: BinaryIO, file_name: str) -> pd.DataFrame:
    """An uploaded label CSV (a binary handle, read from its start) as a table with text column names for
    LabelStore.import_frame, or one sentence naming the file. A header or first row that would make pandas allocate
    far more than the file (millions of columns, an index of extra fields) is refused before it is parsed; cell
    indices are only compared with the dataset's size, so a huge one costs nothing."""
    handle.seek(0)
    head = handle.read(SNIFF_BYTES + 1)
    check_table_head(head, len(head) <= SNIFF_BYTES, file_name, ",", MAX_FILE_COLUMNS)
    handle.seek(0)
    try:
        frame = pd.read_csv(handle, index_col=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise CytoInputError(f"'{file_name}' could not be read as CSV.") from exc
    frame.columns = [str(c) for c in frame.columns]
    return frame


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
        return pd.DataFrame(rows, columns=["id", "name", "color", "parent", "cells", "enough_for_training"])

    def tree(self) -> pd.DataFrame:
        """The population tree, parents before children: depth, own labelled cells, cells including sub-populations,
        % of all cells and % of the parent's cells (of all cells for a top-level population)."""
        counts = self.counts()
        own = dict(zip(counts["id"], counts["cells"]))
        children: dict[int | None, list[int]] = {}
        for pid, parent in zip(counts["id"], counts["parent"]):
            children.setdefault(None if pd.isna(parent) else int(parent), []).append(int(pid))
        total: dict[int, int] = {}

        def add_up(pid: int) -> int:
            total[pid] = own[pid] + sum(add_up(c) for c in children.get(pid, []))
            return total[pid]

        order: list[tuple[int, int]] = []

        def walk(pid: int, depth: int) -> None:
            order.append((pid, depth))
            for c in children.get(pid, []):
                walk(c, depth + 1)

        for root in children.get(None, []):
            add_up(root)
            walk(root, 0)
        by_id = counts.set_index("id")
        rows = []
        for pid, depth in order:
            parent = by_id.at[pid, "parent"]
            base = self.n_cells if pd.isna(parent) else total[int(parent)]
            rows.append({"id": pid, "name": by_id.at[pid, "name"], "depth": depth,
                         "parent": None if pd.isna(parent) else int(parent), "own_cells": own[pid],
                         "cells": total[pid], "pct_of_all": 100 * total[pid] / max(self.n_cells, 1),
                         "pct_of_parent": 100 * total[pid] / base if base else 0.0,
                         "enough_for_training": own[pid] >= MIN_LABELS_FOR_TRAINING})
        return pd.DataFrame(rows, columns=["id", "name", "depth", "parent", "own_cells", "cells", "pct_of_all",
                                           "pct_of_parent", "enough_for_training"])

    def members(self, pop_id: int) -> np.ndarray:
        """Rows labelled `pop_id` or any population drawn inside it (its sub-populations, at any depth)."""
        state = self._read()
        family = _descendants(state.populations, pop_id) | {pop_id}
        return np.flatnonzero(np.isin(state.labels, list(family)))

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

    def population_named(self, name: str) -> int:
        """The id of the population called `name` (cleaned as create_population cleans it), created when none is."""
        name = _clean_name(name)
        existing = {p.name: p.id for p in self.populations()}
        return existing[name] if name in existing else self.create_population(name)

    def rename(self, pop_id: int, name: str) -> None:
        with self._action("rename") as state:
            name = _clean_name(name)
            if any(p.name == name and p.id != pop_id for p in state.populations):
                raise CytoInputError(f"A population named {name!r} already exists.")
            _find(state, pop_id).name = name

    def recolor(self, pop_id: int, color: str) -> None:
        with self._action("recolour") as state:
            _find(state, pop_id).color = color

    def assign(self, cells: np.ndarray, pop_id: int, within: int | None = None) -> Assignment:
        """Label `cells` (row indices) as population `pop_id` and say which cells this took from other populations.

        `within`: the population the cells were drawn among; it becomes `pop_id`'s parent if it has none yet.
        """
        with self._action("assign") as state:
            target = _find(state, pop_id)
            cells = np.asarray(cells, dtype=np.int64)
            if cells.size and (cells.min() < 0 or cells.max() >= state.labels.size):
                raise CytoInputError("Some selected cells are outside this dataset.")
            before = state.labels[cells]
            taken, n_taken = np.unique(before[(before >= 0) & (before != pop_id)], return_counts=True)
            had = dict(zip(*np.unique(state.labels[state.labels >= 0], return_counts=True)))
            changed = _set(state, cells, pop_id)
            if within is not None and within != pop_id and target.parent is None:
                _find(state, within)
                if pop_id not in _ancestors(state.populations, within):  # no cycle
                    target.parent = within
            names = {p.id: p.name for p in state.populations}
            moved = {names[int(i)]: int(n) for i, n in zip(taken, n_taken)}
            below = [names[int(i)] for i, n in zip(taken, n_taken)
                     if had[i] >= MIN_LABELS_FOR_TRAINING > had[i] - n]
            return Assignment(changed, moved, below)

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
                _drop(state, src, heir=target)

    def delete(self, pop_id: int) -> None:
        """Delete a population; its cells become unlabelled."""
        with self._action("delete") as state:
            _find(state, pop_id)
            _set(state, np.flatnonzero(state.labels == pop_id), UNLABELLED)
            _drop(state, pop_id, heir=_find(state, pop_id).parent)

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

    def import_frame(self, frame: pd.DataFrame, cell_column: str = "cell_index", population_column: str = "population",
                     first_index: int = 0) -> int:
        """Add labels from rows of (cell index, population name), creating populations by name; returns cells labelled.

        `first_index` is the index the file gives the first cell: 0 (Python, this app's export) or 1 (R, FlowJo).
        Rows with an empty population are skipped.
        """
        if first_index not in (0, 1):
            raise ValueError("first_index must be 0 or 1")
        missing = [c for c in dict.fromkeys([cell_column, population_column]) if c not in frame.columns]
        if missing or cell_column == population_column:
            wanted = (f"{quoted(cell_column)} and {quoted(population_column)}" if cell_column != population_column
                      else "two different columns for the cell index and the population")
            raise CytoInputError(f"A label file needs the columns {wanted}.")
        names = frame[population_column]
        keep = names.notna() & (names.astype(str).str.strip() != "")
        raw = pd.to_numeric(frame.loc[keep, cell_column], errors="coerce")
        whole = raw.notna() & (raw == raw.round())
        cells = raw - first_index
        if not whole.all() or (cells < 0).any() or (cells >= self.n_cells).any():
            lo = first_index
            raise CytoInputError(f"The label file's column {quoted(cell_column)} has values that are not cell "
                                 f"indices {lo}–{self.n_cells - 1 + lo:,} of this dataset ({first_index}-based).")
        return self._import(cells.to_numpy(np.int64), names[keep].astype(str).str.strip().to_numpy())

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
        with folder_lock(self.directory, exclusive=False):
            return self._head()

    def _read(self) -> _State:
        with folder_lock(self.directory, exclusive=False):
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
        with folder_lock(self.directory):
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
        with folder_lock(self.directory):
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


def _drop(state: _State, pop_id: int, heir: int | None) -> None:
    """Remove a population; its sub-populations move up to `heir`."""
    state.populations = [p for p in state.populations if p.id != pop_id]
    for p in state.populations:
        if p.parent == pop_id:
            p.parent = heir if heir != p.id else None


def _descendants(populations: list[Population], pop_id: int) -> set[int]:
    found: set[int] = set()
    frontier = {pop_id}
    while frontier:
        frontier = {p.id for p in populations if p.parent in frontier} - found
        found |= frontier
    return found


def _ancestors(populations: list[Population], pop_id: int) -> set[int]:
    parent = {p.id: p.parent for p in populations}
    found: set[int] = set()
    current = parent.get(pop_id)
    while current is not None and current not in found:
        found.add(current)
        current = parent.get(current)
    return found


def _find(state: _State, pop_id: int) -> Population:
    for p in state.populations:
        if p.id == pop_id:
            return p
    raise CytoInputError(f"Population {pop_id} no longer exists; it may have been deleted in another tab.")


def _clean_name(name: str) -> str:
    """The name trimmed to 80 characters; empty names and the names of uncalled cells ('unknown', 'unassigned') are
    refused, since results and exports use those for cells no population claims."""
    name = (name or "").strip()
    if not name:
        raise CytoInputError("A population needs a name.")
    if name.lower() in NOT_A_POPULATION:
        raise CytoInputError(f"'{name}' is what results call cells no population claims; choose another name.")
    return name[:80]
