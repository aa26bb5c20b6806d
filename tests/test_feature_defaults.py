"""Default features on real files: empty detectors (no marker name where the file names its markers) and channels
without signal are left unticked, with a note on the Data page; files that name no marker keep their channels."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import CORPUS, LEVINE, ROOT, SHARED
from cytoauto_core.io import read_file
from cytoauto_core.prep.transforms import default_spec, unticked_channels
from cytoauto_core.study.demo import make_demo

COVID_FCS = (SHARED / "devsuite/covid19_flow_wsp/fcs"
             / "export_COVID19 samples 21_04_20_ST3_COVID19_ICU_005_A ST3 210420_080_Live_cells.fcs")
HIMC_CYTOF = SHARED / "devsuite/himc_ctrl_cytof/fcs/02Feb18_Helios2_Plate3_Sample1_HIMCctrl_CD4-EM.fcs"
EMPTY_COVID = ["FJComp-BB660-P-A", "FJComp-BB790-P-A", "FJComp-BUV661-A"]  # $PnS '-' in the panel: empty detectors


def test_the_covid_panels_empty_detectors_are_unticked_with_the_reason():
    dataset = read_file(COVID_FCS)
    unticked = unticked_channels(dataset)
    assert [u.channel for u in unticked] == EMPTY_COVID
    assert [u.reason for u in unticked] == ["no marker name, 85 % of cells below zero",
                                            "no marker name, 66 % of cells below zero",
                                            "no marker name, 98 % of cells below zero"]
    features = default_spec(dataset).features
    assert not set(EMPTY_COVID) & set(features) and len(features) == 24
    assert {"CD3", "CD4", "CD8", "CD14", "CD19"} <= {dataset.channels[i].marker
                                                     for i in dataset.channel_index(features)}


@pytest.mark.parametrize("path, unticked", [
    (CORPUS / "flowio_data1.fcs", ["FL2-A"]),  # the area twin of FL2-H, no $PnS, 76 % zeros
    (CORPUS / "flowsom_ff.fcs", ["Qdot 605-A"]),  # the one fluorescence detector of the panel without a marker
    (CORPUS / "flowio_100715.fcs", []),  # every detector names its marker
    (HIMC_CYTOF, []),  # mass cytometry names its markers in $PnS
])
def test_detectors_without_a_marker_name_are_unticked_where_the_file_names_its_markers(path, unticked):
    dataset = read_file(path)
    assert [u.channel for u in unticked_channels(dataset)] == unticked
    assert default_spec(dataset).features == [n for n in dataset.feature_names if n not in unticked]


@pytest.mark.parametrize("path", [LEVINE / "Levine_32dim_10k.fcs", LEVINE / "Levine_32dim_labeled30k_arcsinh.csv",
                                  CORPUS / "flowio_3FITC_4PE_004.fcs", CORPUS / "flowio_coulter_multidataset.lmd"])
def test_a_file_that_names_no_marker_keeps_its_channels(path):
    """Levine's CD14 has 56 % of cells below zero and coulter's FL1 Lin 90 % at zero: still real channels."""
    dataset = read_file(path)
    assert unticked_channels(dataset) == [] and default_spec(dataset).features == dataset.feature_names


def test_a_channel_without_signal_is_unticked_even_with_a_marker_name():
    demo = make_demo(5_000)
    events = np.array(demo.events)
    cd3 = demo.channel_names.index(next(c.name for c in demo.channels if c.marker == "CD3"))
    events[:, cd3] = 0.0
    flat = replace(demo, events=events)
    [unticked] = unticked_channels(flat)
    assert unticked.channel == demo.channel_names[cd3] and unticked.reason == "100.0 % of cells have the same value"
    assert unticked_channels(demo) == [], "the demo's 32 markers all carry signal"


def test_the_data_page_unticks_the_empty_detectors_and_says_why(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.file_uploader[0].set_value((COVID_FCS.name, COVID_FCS.read_bytes(), "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Load files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value.set_index("channel")
    assert not table.loc[EMPTY_COVID, "use"].any() and table["use"].sum() == 24
    assert {m.label: m.value for m in at.metric}["Feature markers"] == "24"
    [note] = [c.value for c in at.caption if c.value.startswith("Not ticked")]
    assert note == ("Not ticked: FJComp-BB660-P-A (no marker name, 85 % of cells below zero); FJComp-BB790-P-A (no "
                    "marker name, 66 % of cells below zero); FJComp-BUV661-A (no marker name, 98 % of cells below "
                    "zero). Tick a channel to use it all the same.")
