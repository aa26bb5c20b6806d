"""Real-browser test of gating within a gate: a lasso on the density biaxial plot restricted to one population selects
only its cells, the assignment says how many it took from it, the selection clears with new axes, and the plot
downloads as PNG and SVG."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from browser import choose, chromium_page, streamlit_server, table_text, wait_for_app
from conftest import ROOT
from cytoauto_core.demo import DEMO_CELLS
from cytoauto_core.labels import LabelStore
from cytoauto_core.workspace import Workspace
from test_browser_journey import goto_page, lasso, selected_count

pytestmark = pytest.mark.browser
SCREENSHOTS = ROOT / "docs" / "screenshots"
LEFT_HALF = [(0.02, 0.02), (0.55, 0.02), (0.55, 0.98), (0.02, 0.98)]


def _download(page, plot, path) -> bytes:
    """Click the plot's camera button and save what the browser downloads."""
    plot.hover()
    with page.expect_download() as info:
        plot.locator(".modebar-btn[data-title^='Download plot']").click()
    info.value.save_as(path)
    return path.read_bytes()


def test_gate_within_a_population_on_the_density_plot_and_download_it(tmp_path):
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        key = parse_qs(urlparse(page.url).query)["dataset"][0]
        store = LabelStore(Workspace(tmp_path / "ws").labels_dir(key), DEMO_CELLS)
        parent = store.create_population("Parent")
        parent_cells = np.sort(np.random.default_rng(1).choice(DEMO_CELLS, 5_000, replace=False))
        store.assign(parent_cells, parent)
        few = store.create_population("Few")  # 6 cells of Parent well inside the left half: the gate takes them all
        dataset = Workspace(tmp_path / "ws").load_dataset(key)
        cd3, hla = (dataset.events[parent_cells, [c.marker for c in dataset.channels].index(m)] for m in ("CD3", "HLA-DR"))
        inside = (cd3 > np.quantile(cd3, 0.05)) & (cd3 < np.quantile(cd3, 0.10)) & \
            (hla > np.quantile(hla, 0.2)) & (hla < np.quantile(hla, 0.8))
        store.assign(parent_cells[inside][:6], few, within=parent)
        store.create_population("Inner")

        goto_page(page, "Label")
        page.get_by_text("Default axes: CD3 and HLA-DR").first.wait_for()  # the axes the Few cells are placed by
        choose(page, "Show only cells of", "Parent")
        page.get_by_text("Only Parent and its sub-populations (5,000 cells)").first.wait_for()
        plot = page.locator(".js-plotly-plot").first
        marker = page.evaluate("() => { const t = document.querySelector('.js-plotly-plot')._fullData[0];"
                               " return {scale: t.marker.colorscale, bar: t.marker.showscale, n: t._length}; }")
        assert marker["bar"] and marker["scale"][0][1] == "rgb(0,0,131)", "density colours (Jet) with a colour bar"
        assert marker["n"] == 5_000, "only the population's cells are drawn"

        choose(page, "Population", "Inner")
        lasso(page, LEFT_HALF)
        caught = selected_count(page)
        assert 6 < caught < 5_000, caught
        said = page.get_by_test_id("stMarkdown").filter(has_text="cells selected").first.inner_text()
        assert said == f"{caught:,} cells selected of Parent (every cell inside the shape, drawn or not)", said
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "label-density-gate.png"), full_page=True)
        png = _download(page, plot, tmp_path / "gate.png")
        assert png.startswith(b"\x89PNG") and len(png) > 20_000

        page.get_by_role("button", name="Assign selection").click()
        wait_for_app(page)
        page.get_by_text(f"Assigned {caught:,} cells to Inner: {caught - 6:,} cells moved from Parent and 6 from Few."
                         ).first.wait_for()
        page.get_by_text("Now below the training minimum of 5 cells because of this: Few.").first.wait_for()
        saved = LabelStore(Workspace(tmp_path / "ws").labels_dir(key), DEMO_CELLS)
        inner = np.flatnonzero(saved.labels() == [p.id for p in saved.populations() if p.name == "Inner"][0])
        assert inner.size == caught and np.isin(inner, parent_cells).all(), "the gate took only cells of Parent"
        table = table_text(page, "↳ Inner")
        assert "↳ Inner" in table, table

        lasso(page, LEFT_HALF)
        assert selected_count(page) > 0
        y_now = page.get_by_test_id("stSelectbox").filter(has_text="y marker").first.inner_text().split("\n")[-1]
        other = next(m for m in ("CD4", "CD8", "CD19", "CD11b") if m != y_now)
        choose(page, "y marker", other)
        assert page.get_by_text(re.compile(r"^0 cells selected")).first.is_visible(), "new axes, no old selection"

        page.get_by_test_id("stRadio").filter(has_text="Download format").get_by_text("SVG").click()
        wait_for_app(page)
        svg = _download(page, page.locator(".js-plotly-plot").first, tmp_path / "gate.svg")
        assert svg.lstrip().startswith(b"<svg") and b"</svg>" in svg
