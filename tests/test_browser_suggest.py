"""Real-browser test of 'Label these next' on the demo: the suggested groups are drawn, two of them are named as new
populations with one entry each, the model is retrained, and those cells carry their new populations in the
result."""
from __future__ import annotations

import numpy as np
import pytest

from browser import chromium_page, label_demo_cells, streamlit_server, wait_for_app
from test_browser_journey import goto_page, shot, train_and_apply

pytestmark = pytest.mark.browser
KNOWN = ("CD4_T_cells", "Mature_B_cells")  # labelled before the test presses the button, 10 cells each
NAMED = ("Suggested one", "Suggested two")


def name_group(page, group: int, name: str) -> None:
    """Type a new population name for a suggested group and press Enter (the one action that answers it)."""
    box = page.get_by_label(f"New population for group {group}")
    box.scroll_into_view_if_needed()
    box.fill(name)
    box.press("Enter")
    box.wait_for(state="detached")  # the answered group leaves the page once its labels are saved
    wait_for_app(page)


def test_label_these_next_name_two_groups_retrain_and_see_them_in_the_result(tmp_path):
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        key, ws, store, truth = label_demo_cells(page, tmp_path / "ws", KNOWN)

        goto_page(page, "Label")
        button = page.get_by_role("button", name="Label these next")
        button.scroll_into_view_if_needed()
        button.click()
        wait_for_app(page)
        line = page.get_by_text("cells in 2 groups").first
        line.wait_for()
        assert "quick logistic regression" in line.inner_text(), "no model was trained: the page says what it used"
        chart = page.locator(".js-plotly-plot").filter(has_text="Suggested cells")
        chart.wait_for()
        traces = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(p => p.textContent.includes('Suggested cells'))
            .flatMap(p => p._fullData.map(t => t.name))""")
        assert sum(t.startswith("group ") for t in traces) == 2, traces
        page.evaluate("document.activeElement && document.activeElement.blur()")  # no tooltip in the screenshot
        page.mouse.move(5, 5)
        chart.scroll_into_view_if_needed()
        shot(page, "label-these-next")

        name_group(page, 1, NAMED[0])
        name_group(page, 2, NAMED[1])
        page.get_by_text("Every suggested group is answered").first.wait_for()
        labels = store.labels()
        by_name = {p.name: p.id for p in store.populations()}
        named_cells = {name: np.flatnonzero(labels == by_name[name]) for name in NAMED}
        assert all(cells.size == 5 for cells in named_cells.values()), named_cells
        assert all(truth[cells].size for cells in named_cells.values())

        train_and_apply(page, apply="Logistic regression")
        goto_page(page, "Results")
        page.get_by_text("Abundance per sample").first.wait_for()
        abundance = page.get_by_test_id("stDataFrame").filter(has_text="population").first
        abundance.filter(has_text=NAMED[0]).filter(has_text=NAMED[1]).wait_for()  # rendered once the page settles

    proba, meta = ws.load_array(key, "result-proba")
    assert set(NAMED) <= set(meta["class_names"]), meta["class_names"]
    n_classes = len(meta["class_names"])  # the stored result's last column is each cell's novelty
    predicted = np.asarray(meta["class_names"])[np.asarray(proba)[:, :n_classes].argmax(axis=1)]
    for name, cells in named_cells.items():
        assert (predicted[cells] == name).sum() >= 3, (name, predicted[cells])
