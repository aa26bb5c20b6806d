"""Real-browser test of the way in for a new panel: cluster the demo, pick clusters on the heatmap, name them (Enter
in the name field labels nothing), train."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from browser import chromium_page, streamlit_server, wait_for_app
from test_browser_journey import goto_page, saved_counts, shot, train_and_apply

pytestmark = pytest.mark.browser
N_CLUSTERS = 20


def box_select_rows(page, first: int, last: int) -> None:
    """Drag a box over heatmap rows first..last (0 = top row) of the page's first plot."""
    plot = page.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    box = plot.locator(".nsewdrag").first.bounding_box()
    row = box["height"] / N_CLUSTERS
    page.mouse.move(box["x"] + 0.05 * box["width"], box["y"] + (first + 0.2) * row)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.95 * box["width"], box["y"] + (last + 0.8) * row, steps=10)
    page.mouse.up()
    wait_for_app(page)


def selected_clusters(page, n: int, timeout: float = 60_000) -> list[str]:
    """The names in the 'Selected clusters' box once it holds `n` of them."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text="Selected clusters")
    chips = box.locator(".react-aria-ComboBox [data-tag]")
    chips.nth(n - 1).wait_for(timeout=timeout)
    return [re.sub(r" · .*", "", chip.get_attribute("aria-label")) for chip in chips.all()]


def pick_rows(page, first: int, last: int) -> list[str]:
    """Box-select heatmap rows first..last and return the clusters picked. On a loaded machine a drag that starts
    while Plotly is still laying the chart out is lost, as a user's would be; the user draws again, and so does this
    (three times at most)."""
    n = last - first + 1
    for _ in range(2):
        box_select_rows(page, first, last)
        try:
            return selected_clusters(page, n, timeout=20_000)
        except PlaywrightTimeoutError:
            continue
    box_select_rows(page, first, last)
    return selected_clusters(page, n)


def name_selection(page, name: str) -> None:
    page.get_by_label("Population name").fill(name)
    page.get_by_role("button", name="Name as population").click()
    page.get_by_text(f"as {name}; train").wait_for()
    wait_for_app(page)


def test_cluster_name_two_clusters_train_and_read_them_on_results(tmp_path):
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        goto_page(page, "Cluster")
        page.get_by_role("button", name="Cluster cells").click()
        page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
        wait_for_app(page)
        assert page.get_by_text(re.compile(rf"metaclustered into {N_CLUSTERS} clusters")).first.is_visible()

        first_two = pick_rows(page, 0, 1)
        shot(page, "cluster-1-heatmap")
        name = page.get_by_label("Population name")
        name.fill("Cluster pair A")
        name.press("Enter")  # a user moving on to set the cells per cluster
        page.wait_for_timeout(2_000)
        wait_for_app(page)
        assert saved_counts(tmp_path / "ws") == {}, "Enter in the name field labels nothing"
        assert name.input_value() == "Cluster pair A"
        name_selection(page, "Cluster pair A")
        [third] = pick_rows(page, 4, 4)
        assert third not in first_two
        name_selection(page, "Cluster B")
        shot(page, "cluster-2-named")
        saved = saved_counts(tmp_path / "ws")
        assert saved == {"Cluster pair A": 100, "Cluster B": 50}, saved  # 50 central cells of each cluster

        train_and_apply(page)

        goto_page(page, "Results")
        page.locator(".js-plotly-plot").first.wait_for()
        text = page.get_by_test_id("stMain").inner_text()
        assert "Cluster pair A" in text and "Cluster B" in text, text[:2000]
        shot(page, "cluster-3-results")
