"""AppTests of every page: the demo opens, uploads load or fail with one sentence, labels and training flow."""
from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from conftest import CORPUS, ROOT
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import DEMO_CELLS
from ui.state import NOT_IN_WORKSPACE

APP = str(ROOT / "app.py")


def open_app(workspace_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_app_opens_on_demo_data(workspace_dir):
    at = open_app(workspace_dir)
    assert metrics(at)["Cells"] == f"{DEMO_CELLS:,}"
    assert metrics(at)["Feature markers"] == "32", "DNA, Time, beads and viability are not default features"
    [record] = Workspace(workspace_dir).list_datasets()
    assert record.name.endswith(".fcs"), "the demo goes through the FCS reader like a user's file"


def orientation(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**New here?**")]


def test_upload_flow_real_fcs(workspace_dir):
    at = open_app(workspace_dir)
    assert orientation(at) and "**Data**" in orientation(at)[0] and "**Results**" in orientation(at)[0]
    data = (CORPUS / "flowio_G11.fcs").read_bytes()
    at.file_uploader[0].set_value(("G11.fcs", data, "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Load files").click().run()
    assert not at.error, [e.value for e in at.error]
    assert metrics(at)["Cells"] == "5,785" and metrics(at)["Channels"] == "12"
    assert not orientation(at), "a dataset of one's own is loaded: the orientation is not needed any more"
    assert len(Workspace(workspace_dir).list_datasets()) == 2
    assert not list((workspace_dir / "uploads").iterdir()), "the temporary upload copy is deleted"


def test_upload_garbage_gives_one_sentence(workspace_dir):
    at = open_app(workspace_dir)
    at.file_uploader[0].set_value(("broken.fcs", b"FCS3.0   garbage" * 3, "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Load files").click().run()
    assert not at.exception
    [error] = at.error
    assert "broken.fcs" in error.value and "\n" not in error.value and "Traceback" not in error.value


def test_the_orientation_goes_when_dismissed(workspace_dir):
    at = open_app(workspace_dir)
    next(b for b in at.button if b.label == "Got it").click().run()
    assert not orientation(at) and not at.exception


def test_a_link_to_a_dataset_not_in_the_workspace_opens_the_demo_with_a_word(workspace_dir):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = "0" * 32
    at.run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [NOT_IN_WORKSPACE]
    assert metrics(at)["Cells"] == f"{DEMO_CELLS:,}"
    at.run()
    assert not at.warning, "said once: the link now names the demo"


def test_compensation_is_labelled_short_and_empty_cells_stay_blank(workspace_dir):
    at = open_app(workspace_dir)
    assert "Compensate" in [c.label for c in at.checkbox]
    channels = at.dataframe[0]
    assert channels.value["cofactor"].isna().all() and channels.value["cofactor"].dtype.kind == "f"
    assert channels.proto.HasField("placeholder") and channels.proto.placeholder == "", "no 'None' in empty cells"


def test_skew_is_not_blamed_on_the_cofactor_when_nothing_is_transformed(workspace_dir):
    at = open_app(workspace_dir)
    at.switch_page("pages/explore.py").run()
    assert all("Check the cofactor" in i.value for i in at.info)
    at.switch_page("pages/data.py").run()
    next(c for c in at.checkbox if c.label == "Apply arcsinh").uncheck().run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    [note] = [i.value for i in at.info]
    assert note.startswith("Heavy skew or kurtosis in: ") and "cofactor" not in note
    assert "not transformed: no transform is applied (arcsinh is off on the **Data** page)" in note


def test_transform_settings_persist(workspace_dir):
    at = open_app(workspace_dir)
    at.radio[0].set_value("Flow cytometry (cofactor 150)").run()
    assert any("arcsinh(x / 150)" in m.value for m in at.markdown)
    again = open_app(workspace_dir)  # a new session (refresh) sees the saved transform
    assert any("arcsinh(x / 150)" in m.value for m in again.markdown)


def test_explore_page_statistics(workspace_dir):
    at = open_app(workspace_dir)
    at.switch_page("pages/explore.py").run()
    assert not at.exception
    stats = at.dataframe[0].value
    assert {"mean", "median", "sd", "skewness", "kurtosis"} <= set(stats.columns)
    assert len(stats) == 32


def _wait_job(at: AppTest, text: str, timeout: float = 240) -> None:
    end = time.time() + timeout
    while time.time() < end:
        at.run()
        if any(text in s.value for s in at.success) or any(text in c.value for c in at.caption):
            return
        time.sleep(1)
    raise AssertionError(f"'{text}' never appeared")


def test_map_label_train_results(workspace_dir):
    at = open_app(workspace_dir)
    at.switch_page("pages/map.py").run()
    at.selectbox[0].set_value("pca")
    next(b for b in at.button if b.label == "Compute map").click().run()
    _wait_job(at, "PCA of all")
    assert not at.exception

    at.switch_page("pages/label.py").run()
    number_inputs = {n.label: n for n in at.number_input}
    number_inputs["Cells per population (0 = all)"].set_value(10)
    next(b for b in at.button if b.label == "Import from annotation").click().run()
    counts = at.dataframe[0].value
    assert len(counts) == 14 and (counts["cells"] == 10).all()

    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert any(m.value.startswith("**Recommended: VIME.** With at most 10 labels per population") for m in at.markdown)
    assert at.selectbox[0].value == "VIME", "the recommended model is the one applied by default"
    at.multiselect[0].set_value(["LDA"])
    at.selectbox[0].set_value("LDA")
    next(b for b in at.button if b.label == "Train and apply").click().run()
    _wait_job(at, "Trained and applied")
    table = at.dataframe[-1].value
    assert "LDA (applied)" in table.index and 0.5 < table.loc["LDA (applied)", "Accuracy"] <= 1
    assert any("held-out labelled cells per population" in c.value for c in at.caption), "few labels: CV is explained"

    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    values = {m.label: m.value for m in at.metric}
    assert float(values["Accuracy (by name)"]) > 0.8, "10 labels per population label the demo well"
    assert 0 <= float(values["Adjusted Rand index"]) <= 1

    saved = next(sb for sb in at.selectbox if sb.label == "Saved model")
    saved.set_value(next(o for o in saved.options if "demo_bone_marrow_vime" in o)).run()
    next(b for b in at.button if b.label == "Apply to every cell").click().run()
    assert not at.exception and not at.error
    assert any("applied from saved model" in c.value for c in at.caption)
    at.switch_page("pages/train.py").run()
    assert not at.exception
    headers = [h.value for h in at.subheader]
    assert "Model comparison on your labels" not in headers
    assert any("applied on the **Results** page" in c.value for c in at.caption)

    at.switch_page("pages/map.py").run()
    colour = next(sb for sb in at.selectbox if sb.label == "Colour by")
    assert {"your labels", "predicted population", "confidence"} <= set(colour.options)
    for option in ("your labels", "predicted population", "confidence"):
        colour.set_value(option).run()
        assert not at.exception, option


def test_cluster_page_clusters_merges_and_names_and_the_map_colours_by_cluster(workspace_dir):
    at = open_app(workspace_dir)
    at.switch_page("pages/cluster.py").run()
    assert any("No clusters yet" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Cluster cells").click().run()
    _wait_job(at, "metaclustered into 20 clusters")
    assert not at.exception, at.exception
    picker = next(m for m in at.multiselect if m.label == "Selected clusters")
    assert len(picker.options) == 20
    picker.set_value([0, 1]).run()
    next(b for b in at.button if b.label == "Merge selected clusters").click().run()
    assert not at.exception, at.exception
    assert len(next(m for m in at.multiselect if m.label == "Selected clusters").options) == 19

    next(m for m in at.multiselect if m.label == "Selected clusters").set_value([2]).run()
    at.text_input[0].input("Biggest but two")
    next(b for b in at.button if b.label == "Name as population").click().run()
    assert any("Labelled 50 cells as Biggest but two" in s.value for s in at.success)

    at.switch_page("pages/map.py").run()
    at.selectbox[0].set_value("pca")
    next(b for b in at.button if b.label == "Compute map").click().run()
    _wait_job(at, "PCA of all")
    colour = next(sb for sb in at.selectbox if sb.label == "Colour by")
    assert "clusters" in colour.options
    colour.set_value("clusters").run()
    assert not at.exception, at.exception
