"""Real-browser test of unknown cells on the demo with Monocytes left unnamed: after training, the Results page counts
the unknown cells, a compact group of them becomes a new population, and the Label page lists it with its cells."""
from __future__ import annotations

import numpy as np
import pytest

from browser import choose, chromium_page, label_demo_cells, streamlit_server, wait_for_app
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.embeddings import EmbeddingParams, embed
from cytoauto_core.prep.transforms import default_spec, transform_features
from test_browser_journey import SCREENSHOTS, goto_page, train_and_apply

pytestmark = pytest.mark.browser
HIDDEN = "Monocytes"  # the demo population nobody names here
NEW = "Unnamed monocytes"


def test_results_count_unknown_cells_and_a_group_becomes_a_population_on_the_label_page(tmp_path):
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        named = sorted(set(make_demo().annotations["population"]) - {HIDDEN, "unassigned"})
        key, ws, store, truth = label_demo_cells(page, tmp_path / "ws", named)
        dataset = ws.load_dataset(key)
        pca = embed(transform_features(dataset, default_spec(dataset)), EmbeddingParams(method="pca"))
        ws.save_array(key, "embedding-pca", pca.coords, {"method": "pca", "description": pca.description})

        train_and_apply(page, apply="LDA")
        goto_page(page, "Results")
        metric = page.get_by_test_id("stMetric").filter(has_text="Unknown (unlike every named population)")
        metric.wait_for()
        stored, meta = ws.load_array(key, "result-proba")
        n_unknown = int((np.asarray(stored)[:, -1] > 1 - meta["rejection"]).sum())
        assert n_unknown > 0 and f"{n_unknown:,} cells" in metric.inner_text(), metric.inner_text()

        heading = page.get_by_role("heading", name="Unknown cells")
        heading.scroll_into_view_if_needed()
        page.get_by_text("compact group").first.wait_for()
        box = page.get_by_label("Name of the new population")
        box.fill(NEW)
        box.press("Enter")
        wait_for_app(page)
        page.get_by_role("button", name="Make a new population").click()
        wait_for_app(page)
        page.get_by_text(f"labelled as the new population {NEW}").first.wait_for()
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.mouse.move(5, 5)
        heading.evaluate("h => h.scrollIntoView({block: 'start'})")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "results-unknown.png"))

        by_name = {p.name: p.id for p in store.populations()}
        cells = np.flatnonzero(store.labels() == by_name[NEW])
        assert cells.size == 25 and (truth[cells] == HIDDEN).mean() >= 0.9, truth[cells]
        assert (np.asarray(stored)[:, -1][cells] > 1 - meta["rejection"]).all(), "made of unknown cells"

        page.get_by_role("link", name="Go on labelling on the Label page").click()
        page.wait_for_url(lambda u: "/label" in u)
        wait_for_app(page)
        page.locator(".js-plotly-plot").filter(has_text="assign the cells to a population").wait_for()
        legend = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(p => p.textContent.includes('assign the cells to a population'))
            .flatMap(p => p._fullData.map(t => t.name))""")
        assert NEW in legend, legend  # the Label page draws the new population's cells
        choose(page, "Population", NEW)  # and it can be labelled further
