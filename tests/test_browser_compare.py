"""Real-browser test of a study: six demo FCS files uploaded together, labelled from their annotation, LDA trained,
a sample table uploaded on the Compare page, condition B compared with A, and the study report downloaded and
opened with the network cut off."""
from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from browser import chromium_page, streamlit_server, upload_files, wait_for_app
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.io import write_fcs
from test_browser_journey import SCREENSHOTS, goto_page, train_and_apply

pytestmark = pytest.mark.browser
SHIFTED = "Pre_B_cells"


def view_from(page, heading: str, name: str) -> None:
    """Screenshot of the window with `heading` at its top (the app scrolls inside its main block)."""
    page.get_by_role("heading", name=heading).evaluate("h => h.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _download(page, button: str, path):
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    info.value.save_as(path)
    return path


def test_compare_conditions_and_download_the_study_report(tmp_path):
    study = make_demo_study()
    files = [write_fcs(tmp_path / sample.name, sample.dataset) for sample in study]
    sheet = tmp_path / "samples.csv"
    pd.DataFrame({"sample": [s.name for s in study], "condition": [s.condition for s in study]}).to_csv(sheet,
                                                                                                       index=False)
    with streamlit_server(tmp_path / "ws", tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        upload_files(page, files)
        page.get_by_role("button", name="Load files").click()
        page.get_by_test_id("stSidebar").get_by_text("6 sample(s)").wait_for()  # the load reruns into the study
        wait_for_app(page)
        metrics = page.get_by_test_id("stMetric").all_inner_texts()
        assert any("Samples" in m and "6" in m for m in metrics), metrics

        goto_page(page, "Label")
        page.get_by_role("tab", name="Annotation column").click()
        page.get_by_role("button", name="Import from annotation").click()
        wait_for_app(page)
        page.get_by_test_id("stDataFrame").filter(has_text=SHIFTED).first.wait_for()

        train_and_apply(page, ("XGBoost", "Logistic regression"), apply="LDA", timeout_ms=180_000)

        goto_page(page, "Results")
        page.get_by_role("heading", name="Per-sample quality").wait_for()
        quality = page.get_by_test_id("stDataFrame").filter(has_text="drift_marker").first.text_content()
        assert all(s.name in quality for s in study), quality

        goto_page(page, "Compare")
        upload_files(page, [sheet], "Upload a sample table")
        page.get_by_role("button", name="Use this table").click()
        wait_for_app(page)
        page.get_by_text("Compare condition 'B' with 'A'.").first.wait_for()
        page.locator(".js-plotly-plot").nth(2).wait_for()
        view_from(page, "Abundance by condition", "compare-abundance")
        view_from(page, "Differential abundance", "compare-differential")

        table = pd.read_csv(_download(page, "Download the differential abundance table (CSV)", tmp_path / "da.csv"))
        report_path = _download(page, "Download the study report (HTML)", tmp_path / "report.html")

        offline = page.context.browser.new_page()
        fetched = []
        offline.route(re.compile(r"^(?!file:).*"), lambda route: (fetched.append(route.request.url), route.abort()))
        offline.goto(report_path.as_uri())
        offline.locator(".js-plotly-plot .main-svg").nth(2).wait_for(timeout=30_000)
        drawn = offline.locator(".js-plotly-plot").count()
        offline.screenshot(path=str(SCREENSHOTS / "compare-report.png"))

    significant = table.loc[table["p_adjusted"] < 0.05, "population"].tolist()
    assert significant == [SHIFTED], table
    assert table.set_index("population").loc[SHIFTED, "log2_fold_change"] > 1

    report = report_path.read_text()
    assert drawn == 3 and not fetched, (drawn, fetched)
    assert "Compare condition &#x27;B&#x27; with &#x27;A&#x27;." in report
    [reported] = pd.read_html(io.StringIO(re.search(r'<table[^>]*class="dataframe differential".*?</table>', report,
                                                    flags=re.S).group(0)), na_values=["NA"])
    assert reported.loc[reported["p_adjusted"] < 0.05, "population"].tolist() == [SHIFTED]
    assert reported["population"].tolist() == table["population"].tolist()
    assert all(s.name in report for s in study) and "LDA" in report
