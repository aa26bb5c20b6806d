"""Real-browser tests of the Label page. Gating within a gate: a lasso on the density biaxial plot restricted to one
population selects only its cells, the assignment says how many it took from it, the selection clears with new axes,
and the plot downloads as PNG and SVG. A box drawn before its population is created goes to that population."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from browser import choose, chromium_page, streamlit_server, table_text, wait_for_app
from conftest import ROOT
from cytoauto_core.study.demo import DEMO_CELLS
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace
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


def box(page, corner: tuple[float, float], other: tuple[float, float]) -> None:
    """Drag a box between two corners given as fractions of the first plot's area."""
    plot = page.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    plot.hover()
    plot.locator('.modebar-btn[data-val="select"]').click()
    area = plot.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + corner[0] * area["width"], area["y"] + corner[1] * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + other[0] * area["width"], area["y"] + other[1] * area["height"], steps=10)
    page.mouse.up()
    wait_for_app(page)


def test_a_box_drawn_before_its_population_is_created_goes_to_that_population(tmp_path):
    """The new-user walkthrough: box, create a population, assign. The cells go to the new population (it becomes the
    target), not to the first one, and the page says where they went."""
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        key = parse_qs(urlparse(page.url).query)["dataset"][0]
        ws = Workspace(tmp_path / "ws")
        store = LabelStore(ws.labels_dir(key), DEMO_CELLS)
        mature = np.arange(50)
        store.assign(mature, store.create_population("Mature_B_cells"))
        coords = np.random.default_rng(0).normal(size=(DEMO_CELLS, 2)).astype(np.float32)
        coords[mature, 0] = 6.0  # far right, outside the box drawn on the left
        ws.save_array(key, "embedding-test", coords, {"method": "pca", "description": "PCA test map"})

        goto_page(page, "Label")
        page.locator(".js-plotly-plot").first.wait_for()
        box(page, (0.03, 0.05), (0.35, 0.95))
        caught = selected_count(page)
        assert caught > 50, caught
        page.get_by_label("New population name").fill("New gate")
        page.get_by_role("button", name="Create population").click()
        wait_for_app(page)
        page.get_by_text(f"Created New gate: Assign selection now labels cells as New gate. The {caught:,} cells "
                         "selected before are still selected").first.wait_for()
        assert selected_count(page) == caught, "creating a population keeps the selection"
        assert page.get_by_role("combobox", name="Population", exact=True).input_value() == "New gate", \
            "a new gate is the active population"

        page.get_by_role("button", name="Assign selection").click()
        wait_for_app(page)
        page.get_by_text(f"Assigned {caught:,} cells to New gate.").first.wait_for()
        assert page.get_by_text(re.compile(r"^0 cells selected")).first.is_visible(), "assigned: the selection is done"
        saved = LabelStore(ws.labels_dir(key), DEMO_CELLS)
        ids = {p.name: p.id for p in saved.populations()}
        assert (saved.labels() == ids["New gate"]).sum() == caught
        assert np.flatnonzero(saved.labels() == ids["Mature_B_cells"]).tolist() == mature.tolist()

        box(page, (0.6, 0.05), (0.9, 0.95))
        assert selected_count(page) > 0
        page.get_by_role("button", name="Clear selection").click()
        page.get_by_text(re.compile(r"^0 cells selected")).first.wait_for()
        wait_for_app(page)
        assert page.get_by_role("button", name="Assign selection").is_disabled()
