"""Real-browser test of the Label page's Marker table tab on Levine_32dim (10,000 cells): the expected-expression table
is uploaded, names every cell with no click (counts, explanations and a map), its populations become the user's, one
population is corrected with labelled cells, and the Train page trains with the table and says what came from where."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from browser import chromium_page, streamlit_server, upload_files, wait_for_app
from conftest import LEVINE
from cytoauto_core.io import read_file
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
from test_browser_journey import goto_page, shot, train_and_apply

pytestmark = pytest.mark.browser
FCS = LEVINE / "Levine_32dim_10k.fcs"
TABLE = LEVINE / "knowledge_table" / "levine32_expected_expression.csv"
MATCHED = LEVINE / "Levine_32dim_10k_matched_labels.csv"  # the gated population of 2,230 of the 10,000 cells
CORRECTED = "CD8 T cells"
CLICKS = 20


def _counts_text(page, *expected: str) -> str:
    """The text of the table of populations named from the marker table, once it holds every expected word."""
    grid = page.get_by_test_id("stDataFrame").filter(has_text="explanation").first
    grid.wait_for()
    for _ in range(120):
        text = grid.text_content() or ""
        if all(word in text for word in expected):
            return text
        page.wait_for_timeout(250)
    return text


def _corrections(calls: np.ndarray, populations: list[str]) -> np.ndarray:
    """CLICKS gated CD8 T cells of the FCS: first those the table called something else, then ones it called right
    (the cells a biologist would label to correct the table's CD8 T cells)."""
    matched = pd.read_csv(MATCHED)
    rows = matched.loc[matched["population"] == CORRECTED.replace(" ", "_"), "row_in_fcs_0based"].to_numpy()
    wrong = calls[rows] != populations.index(CORRECTED)
    return np.concatenate([rows[wrong], rows[~wrong]])[:CLICKS]


def test_name_cells_from_the_levine_table_use_its_populations_correct_one_and_train(tmp_path):
    root = tmp_path / "ws"
    ws = Workspace(root)
    key = ws.add_dataset(read_file(FCS))
    with streamlit_server(root, tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(f"{url}/label?dataset={key}")
        wait_for_app(page)
        page.get_by_role("tab", name="Marker table").click()
        wait_for_app(page)
        upload_files(page, [TABLE], label="Marker table (CSV)")
        page.get_by_text("14 populations; 14 of the table's 14 markers are features in use.").wait_for()
        page.get_by_role("button", name="Name cells from the table").click()
        page.get_by_role("heading", name="Cells named from the table").wait_for(timeout=120_000)
        wait_for_app(page)

        calls, named = ws.load_array(key, "table-calls")
        counts, populations = named["counts"], named["populations"]
        assert 1_500 <= counts["CD4 T cells"] <= 3_500, counts  # about 30 % of Levine's cells are CD4 T cells
        assert counts["unassigned"] < 1_000 and sum(counts.values()) == 10_000, counts
        text = _counts_text(page, "CD4 T cells", "Monocytes", "unassigned")
        assert all(name in text for name in populations), text
        assert f"CD4 T cells ({counts['CD4 T cells']:,} cells): " in text, "each population is explained"
        chart = page.locator(".js-plotly-plot").filter(has_text="Every cell named from the marker table")
        chart.wait_for()
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(p => p.textContent.includes('Every cell named'))
            .map(p => ({n: p._fullData[0]._length, legend: p._fullData.slice(1).map(t => t.name)}))[0]""")
        assert drawn["n"] == 10_000 and "CD4 T cells" in drawn["legend"], drawn
        page.set_viewport_size({"width": 1400, "height": 2600})  # the whole tab: Streamlit scrolls inside its page
        page.mouse.move(5, 5)
        wait_for_app(page)
        shot(page, "label-marker-table")
        page.set_viewport_size({"width": 1400, "height": 1000})

        page.get_by_role("button", name="Use the table's populations").click()
        page.get_by_text("Created 14 of the table's 14 populations").wait_for()
        store = LabelStore(ws.labels_dir(key), 10_000)
        assert [p.name for p in store.populations()] == populations
        assert ws.load_marker_table(key).populations == populations

        # the correction a biologist would lasso, assigned through the label store the page uses (aiming a lasso at
        # particular cells of a map is not what this test is about; tests/test_browser_label.py draws lassos)
        cells = _corrections(np.asarray(calls), populations)
        target = next(p.id for p in store.populations() if p.name == CORRECTED)
        store.assign(cells, target)

        goto_page(page, "Train")
        page.get_by_text(re.compile(r"Marker table: 14 populations; 1 has clicked cells")).wait_for()
        assert page.get_by_role("checkbox", name="Use the marker table").is_checked()
        train_and_apply(page, leave_out=("XGBoost",), apply="LDA")
        provenance = ws.load_array(key, "result-proba")[1]["provenance"]
        assert provenance, "the stored result says what came from the table and what from clicks"
        shown = " ".join(page.get_by_test_id("stAlertContentInfo").all_inner_texts())
        assert all(sentence in shown for sentence in provenance), (provenance, shown)

        goto_page(page, "Results")
        page.get_by_text("Abundance per sample").first.wait_for()
        page.get_by_test_id("stDataFrame").filter(has_text="population").filter(has_text="CD4 T cells").filter(
            has_text="Monocytes").first.wait_for()

    proba, meta = ws.load_array(key, "result-proba")
    names = np.asarray(meta["class_names"])
    assert set(names) == set(counts) - {"unassigned"}, names
    predicted = names[np.asarray(proba)[:, :len(names)].argmax(axis=1)]
    table_said = np.asarray(calls)[cells] == populations.index(CORRECTED)
    assert table_said.mean() < 1 and (predicted[cells] == CORRECTED).mean() >= 0.9, \
        f"the clicks win over the table: {(predicted[cells] == CORRECTED).mean():.2f} (the table alone {table_said.mean():.2f})"
