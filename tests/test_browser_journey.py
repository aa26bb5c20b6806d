"""Real-browser tests (Playwright driving Debian Chromium) of what users click: upload, lasso labelling, the whole journey."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from browser import choose, chromium_page, streamlit_server, table_text, upload_files, wait_for_app
from conftest import CORPUS, ROOT
from cytoauto_core.store.labels import LabelStore
from cytoauto_core.store.workspace import Workspace

pytestmark = pytest.mark.browser
SCREENSHOTS = ROOT / "docs" / "screenshots"


def goto_page(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.wait_for_url(re.compile(rf"/{title.lower()}"))
    wait_for_app(page)


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def lasso(page, fractions: list[tuple[float, float]], chart_index: int = 0) -> None:
    """Draw a lasso through points given as fractions of the plot area."""
    plot = page.locator(".js-plotly-plot").nth(chart_index)
    plot.scroll_into_view_if_needed()
    plot.hover()
    plot.locator('.modebar-btn[data-val="lasso"]').click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in fractions]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:] + points[:1]:
        page.mouse.move(*point, steps=8)
    page.mouse.up()
    wait_for_app(page)


def selected_count(page, timeout: float = 30.0) -> int:
    """The page's count of selected cells, waiting for the selection rerun to report a non-zero count."""
    deadline = time.time() + timeout
    while True:
        text = page.get_by_text(re.compile(r"cells selected")).first.inner_text()
        count = int(re.search(r"([\d,]+) cells selected", text).group(1).replace(",", ""))
        if count or time.time() > deadline:
            return count
        time.sleep(0.5)


def label_region(page, name: str, region: list[tuple[float, float]]) -> None:
    page.get_by_label("New population name").fill(name)
    page.get_by_role("button", name="Create population").click()
    page.get_by_test_id("stDataFrame").filter(has_text=name).wait_for()
    wait_for_app(page)
    choose(page, "Population", name)
    lasso(page, region)
    assert selected_count(page) >= 5, f"the lasso for {name} caught too few cells"
    page.get_by_role("button", name="Assign selection").click()
    page.get_by_text("0 cells selected", exact=False).first.wait_for()  # the selection is cleared once saved
    wait_for_app(page)


def train_and_apply(page, leave_out: tuple[str, ...] = ("XGBoost",), apply: str | None = None,
                    timeout_ms: int = 300_000) -> None:
    """On the Train page: drop `leave_out` from the comparison (by default it holds the fast baselines, not VIME),
    optionally pick the model to apply, train, wait."""
    goto_page(page, "Train")
    for model in leave_out:
        page.get_by_test_id("stMultiSelect").get_by_role("button", name=re.compile(f"Remove {model}")).click()
    if apply is not None:
        choose(page, "Model to apply to every cell", apply)
    page.get_by_role("button", name="Train and apply").click()
    page.get_by_text("Trained and applied").wait_for(timeout=timeout_ms)
    wait_for_app(page)


def saved_counts(workspace: Path) -> dict[str, int]:
    """Labelled cells per population as saved in the workspace on disk."""
    ws = Workspace(workspace)
    [record] = ws.list_datasets()
    counts = LabelStore(ws.labels_dir(record.key), record.n_cells).counts()
    return dict(zip(counts["name"], counts["cells"]))


def test_upload_real_fcs_shows_summary(tmp_path):
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        upload_files(page, [CORPUS / "flowkit_index_sorted.fcs"])
        page.get_by_role("button", name="Load files").click()
        wait_for_app(page)
        page.get_by_text("flowkit_index_sorted.fcs").first.wait_for()
        # the file's name shows in the uploader before the load's rerun has drawn its summary: wait for the summary
        page.get_by_test_id("stMetric").filter(has_text="384").first.wait_for()
        metrics = page.get_by_test_id("stMetric").all_inner_texts()
        assert any("Cells" in m and "384" in m for m in metrics), metrics
        assert any("Channels" in m and "13" in m for m in metrics), metrics
        assert "dataset=" in page.url, "the current dataset is kept in the URL"


def test_a_deep_link_as_first_request_opens_inside_the_app(tmp_path):
    """A bookmarked page opened right after a server (re)start gets the app's navigation and sidebar."""
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(f"{url}/label")
        wait_for_app(page)
        assert page.get_by_role("heading", name="Label").first.is_visible()
        nav = page.get_by_test_id("stSidebarNav").inner_text()
        assert all(title in nav for title in ("Data", "Explore", "Map", "Label", "Train", "Results")), nav
        assert "app" not in nav.split(), "the page ran outside app.py"
        assert page.get_by_text("CytoAutoCluster").first.is_visible()


def test_whole_journey_on_demo_data(tmp_path):
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        assert any("20,000" in m for m in page.get_by_test_id("stMetric").all_inner_texts())
        shot(page, "1-data")

        goto_page(page, "Explore")
        text = table_text(page, "skewness", "kurtosis")
        assert "skewness" in text and "kurtosis" in text
        shot(page, "2-explore")

        goto_page(page, "Map")
        choose(page, "Method", "PCA")
        page.get_by_role("button", name="Compute map").click()
        page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
        wait_for_app(page)
        shot(page, "3-map")

        goto_page(page, "Label")
        page.locator(".js-plotly-plot").first.wait_for()
        label_region(page, "Left cells", [(0.02, 0.02), (0.35, 0.02), (0.35, 0.98), (0.02, 0.98)])
        label_region(page, "Right cells", [(0.65, 0.02), (0.98, 0.02), (0.98, 0.98), (0.65, 0.98)])
        table = table_text(page, "Left cells", "Right cells")
        assert "Left cells" in table and "Right cells" in table
        shot(page, "4-label")

        saved = saved_counts(tmp_path / "ws")
        assert saved["Left cells"] >= 5 and saved["Right cells"] >= 5, saved
        page.reload()
        wait_for_app(page)
        page.get_by_test_id("stDataFrame").filter(has_text="Right cells").first.wait_for()
        after_reload = table_text(page, "Left cells", "Right cells")
        assert "Left cells" in after_reload and "Right cells" in after_reload, "labels must survive a reload"
        assert f"{saved['Left cells']}" in after_reload and f"{saved['Right cells']}" in after_reload

        train_and_apply(page)
        page.get_by_text(re.compile(r"VIME weighs its parts: network 0\.\d+ · linear pair .*experts' shares chosen on "
                                    r"your labels: LDA")).wait_for()
        shot(page, "5-train")

        goto_page(page, "Results")
        page.locator(".js-plotly-plot").first.wait_for()
        shot(page, "6-results")
        page.get_by_role("button", name="Prepare CSV").click()
        wait_for_app(page)
        with page.expect_download() as info:
            page.get_by_role("button", name="Download labelled cells (CSV)").click()
        path = tmp_path / "labelled.csv"
        info.value.save_as(path)

    frame = pd.read_csv(path)
    assert len(frame) == 20_000
    assert {"population_id", "population", "confidence", "map_x", "map_y", "sample"} <= set(frame.columns)
    assert {"Left cells", "Right cells"} <= set(frame["population"].unique())
    assert frame["confidence"].between(0, 1).all()
