"""Crash injection on the label store: a writer killed before any one of its file operations leaves the old or the
new state, with undo and redo working, for every action and for folders of the layout before FORMAT 2."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.store.labels import HEAD, LEGACY_LABELS, LEGACY_STATE, LabelStore

N_CELLS = 60
KILLED = 77
HOOKED = ("replace", "fsync", "unlink")  # with tempfile.mkstemp: every file operation of a label-store write

ACTIONS: dict[str, Callable[[LabelStore], object]] = {
    "assign": lambda s: s.assign(np.arange(20, 30), 0),
    "rename": lambda s: s.rename(0, "T cells"),
    "delete": lambda s: s.delete(1),
    "undo": lambda s: s.undo(),
    "redo": lambda s: s.redo(),
}


def _history(directory: Path) -> None:
    """Four actions, the last undone: the store has both an undo and a redo stack."""
    store = LabelStore(directory, N_CELLS)
    t = store.create_population("T")
    store.assign(np.arange(0, 10), t)
    b = store.create_population("B")
    store.assign(np.arange(10, 20), b)
    store.assign(np.arange(5, 15), t)
    store.undo()


def _to_legacy(directory: Path) -> None:
    """Rewrite a store as the earlier layout wrote it: state.json beside labels.npy, no manifest."""
    head = json.loads((directory / HEAD).read_text())
    (directory / head.pop("labels")).rename(directory / LEGACY_LABELS)
    head.pop("format")
    (directory / LEGACY_STATE).write_text(json.dumps(head))
    (directory / HEAD).unlink()


def _snapshot(directory: Path) -> tuple:
    store = LabelStore(directory, N_CELLS)
    return (store.labels().tobytes(), [asdict(p) for p in store.populations()], store.can_undo(), store.can_redo())


def _install_hooks(on_operation: Callable[[], None]) -> None:
    """Call `on_operation` before every file operation a write makes (in this process only)."""
    def wrap(module, name):
        original = getattr(module, name)

        def hooked(*args, **kwargs):
            on_operation()
            return original(*args, **kwargs)
        setattr(module, name, hooked)

    for name in HOOKED:
        wrap(os, name)
    wrap(tempfile, "mkstemp")


def _killed_writer(directory: str, action: str, kill_before: int) -> None:
    count = [0]

    def on_operation():
        count[0] += 1
        if count[0] == kill_before:
            os._exit(KILLED)
    _install_hooks(on_operation)
    ACTIONS[action](LabelStore(directory, N_CELLS))
    os._exit(0)


def _count_operations(directory: Path, action: str) -> int:
    count = [0]

    def on_operation():
        count[0] += 1
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child():
        _install_hooks(on_operation)
        ACTIONS[action](LabelStore(directory, N_CELLS))
        queue.put(count[0])
    proc = ctx.Process(target=child)
    proc.start()
    n = queue.get(timeout=60)
    proc.join()
    return n


def _expectations(directory: Path, scratch: Path) -> dict:
    """The store's state, and the states after undo (then redo back) and after redo, computed on clean copies."""
    out = {"state": _snapshot(directory)}
    for step in ("undo", "redo"):
        copy = scratch / f"expect-{step}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(directory, copy)
        store = LabelStore(copy, N_CELLS)
        out[step] = _snapshot(copy) if getattr(store, step)() else None
    return out


def _assert_tidy(directory: Path) -> None:
    """Only what the committed state names is left: manifest, lock, one labels file, the stacks' action records."""
    head = json.loads((directory / HEAD).read_text())
    assert sorted(p.name for p in directory.iterdir()) == sorted(["actions", "lock", HEAD, head["labels"]])
    records = sorted(p.name for p in (directory / "actions").iterdir())
    assert records == sorted(f"{a}{s}" for a in head["undo"] + head["redo"] for s in (".json", ".npz"))


@pytest.mark.parametrize("legacy", [False, True], ids=["format2", "earlier-layout"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_writer_killed_at_any_step_leaves_old_or_new_state_with_history(tmp_path, action, legacy):
    base = tmp_path / "base"
    _history(base)
    if legacy:
        _to_legacy(base)
    done = tmp_path / "done"
    shutil.copytree(base, done)
    ACTIONS[action](LabelStore(done, N_CELLS))
    expected = {"old": _expectations(base, tmp_path), "new": _expectations(done, tmp_path)}
    assert expected["old"]["state"] != expected["new"]["state"]

    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    n_operations = _count_operations(probe, action)
    assert n_operations >= 4
    outcomes = []
    for kill_before in range(1, n_operations + 1):
        crashed = tmp_path / f"crash-{kill_before}"
        shutil.copytree(base, crashed)
        proc = mp.get_context("fork").Process(target=_killed_writer, args=(str(crashed), action, kill_before))
        proc.start()
        proc.join()
        assert proc.exitcode == KILLED
        seen = _snapshot(crashed)
        [outcome] = [name for name, e in expected.items() if e["state"] == seen]
        outcomes.append(outcome)
        store = LabelStore(crashed, N_CELLS)
        assert store.undo() and _snapshot(crashed) == expected[outcome]["undo"]
        assert store.redo() and _snapshot(crashed) == seen
        if expected[outcome]["redo"] is not None:
            assert store.redo() and _snapshot(crashed) == expected[outcome]["redo"]
        store.create_population("after the crash")
        _assert_tidy(crashed)
    commit = outcomes.index("new")
    assert outcomes == ["old"] * commit + ["new"] * (n_operations - commit), outcomes
    assert commit > 0


def test_earlier_layout_opens_and_migrates_on_first_write(tmp_path):
    _history(tmp_path)
    before = _snapshot(tmp_path)
    _to_legacy(tmp_path)
    assert _snapshot(tmp_path) == before
    store = LabelStore(tmp_path, N_CELLS)
    assert store.redo()
    assert not (tmp_path / LEGACY_STATE).exists() and not (tmp_path / LEGACY_LABELS).exists()
    _assert_tidy(tmp_path)
    assert store.undo() and _snapshot(tmp_path) == before


def test_a_lost_history_record_is_one_sentence_and_clears_that_stack(tmp_path):
    """What the earlier layout left after a crash during an action with a redo stack: a redo whose record is gone."""
    _history(tmp_path)
    _to_legacy(tmp_path)
    [lost] = json.loads((tmp_path / LEGACY_STATE).read_text())["redo"]
    (tmp_path / "actions" / f"{lost}.npz").unlink()
    store = LabelStore(tmp_path, N_CELLS)
    labels = store.labels()
    with pytest.raises(CytoInputError, match=r"^The last step can no longer be redone: its record is missing or damaged\.$"):
        store.redo()
    assert not store.can_redo() and store.can_undo()
    assert np.array_equal(store.labels(), labels)
    assert store.undo()

