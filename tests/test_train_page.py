"""AppTest of the Train and Results pages' model comparison: the applied model is scored on the held-out labels beside
the baselines, under names a person reads, and the recommendation's evidence is said in numbers, not a file name."""
from __future__ import annotations

import time

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.tools.recommendation import DEVSUITE_VIME, EVIDENCE

APP = str(ROOT / "app.py")
NAMED = ("CD4_T_cells", "CD8_T_cells", "Monocytes", "Mature_B_cells")  # the demo's large populations, 8 labels each
SHOWN = ["Macro-F1", "Accuracy", "AUROC", "Log loss", "Time to score (s)"]


def _label_demo(workspace_dir) -> str:
    """8 labelled cells of each NAMED demo population (seeded), through the label store; the dataset key."""
    ws = Workspace(workspace_dir)
    [record] = ws.list_datasets()
    truth = ws.load_dataset(record.key).annotations["population"].astype(str).to_numpy()
    store = LabelStore(ws.labels_dir(record.key), record.n_cells)
    rng = np.random.default_rng(0)
    for name in NAMED:
        store.assign(rng.choice(np.flatnonzero(truth == name), 8, replace=False), store.create_population(name))
    return record.key


def _trained(at: AppTest, timeout: float = 300) -> None:
    """Rerun the page until the training job says it is done."""
    end = time.time() + timeout
    while time.time() < end:
        at.run()
        assert not at.exception, at.exception
        if any("Trained and applied" in s.value for s in at.success):
            return
        time.sleep(1)
    raise AssertionError("the training did not finish")


def _text(at: AppTest) -> str:
    """Every markdown and caption on the page, joined."""
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_the_applied_model_is_scored_beside_the_baselines_on_train_and_results(workspace_dir):
    at = AppTest.from_file(APP, default_timeout=180).run()
    _label_demo(workspace_dir)
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    page = _text(at)
    assert "BENCHMARKS" not in page and EVIDENCE in page, "the evidence is said on the page, with its numbers"
    assert " / ".join(f"{v:.2f}" for v in DEVSUITE_VIME) in page
    assert "3-fold cross-validation" in page and "fitted 3 more times" in page, "the cost is said before training"

    # LDA applied while only logistic regression is picked for comparison: LDA is scored all the same
    next(m for m in at.multiselect if m.label == "Models to score beside the applied one").set_value(
        ["Logistic regression"])
    next(s for s in at.selectbox if s.label == "Model to apply to every cell").set_value("LDA")
    next(b for b in at.button if b.label == "Train and apply").click()
    _trained(at)
    table = at.dataframe[-1].value
    assert list(table.index) == ["LDA (applied)", "Logistic regression"] and list(table.columns) == SHOWN
    assert 0.5 < table.loc["LDA (applied)", "Macro-F1"] <= 1 and table.loc["LDA (applied)", "Log loss"] > 0
    assert any("Scoring LDA on them took" in c.value for c in at.caption), "the measured cost is said after training"

    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "Macro-F1" in getattr(d.value, "columns", []))
    assert list(table.index) == ["LDA (applied)", "Logistic regression"] and list(table.columns) == SHOWN
    assert float(next(m.value for m in at.metric if m.label == "Held-out macro-F1 on your labels")) == \
        round(table.loc["LDA (applied)", "Macro-F1"], 3)
