"""Transforms: arcsinh with per-channel cofactors, linear scatter/time, compensation, default features."""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import CORPUS, LEVINE, ROOT, SHARED
from cytoauto_core.base.dataset import Dataset, Spillover, make_channels
from cytoauto_core.study.demo import make_demo
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file
from cytoauto_core.prep.transforms import (
    COFACTOR_FLOW, COFACTOR_MASS, Scaler, TransformSpec, default_spec, detect_scale, suggest_cofactors,
    transform_events, transform_features,
)

COVID_FCS = (SHARED / "devsuite/covid19_flow_wsp/fcs"
             / "export_COVID19 samples 21_04_20_ST3_COVID19_ICU_005_A ST3 210420_080_Live_cells.fcs")
HIMC_CD4_EM = SHARED / "devsuite/himc_ctrl_cytof/fcs/02Feb18_Helios2_Plate3_Sample1_HIMCctrl_CD4-EM.fcs"


def test_arcsinh_cofactors_and_linear_channels():
    events = np.random.default_rng(0).normal(0, 500, (40_000, 5)).astype(np.float32)
    spec = TransformSpec(features=["c", "a", "d"], cofactor=5, cofactors={"d": 150}, linear=["a"])
    out = transform_events(events, list("abcde"), spec)
    expected = np.column_stack([np.arcsinh(events[:, 2] / 5), events[:, 0], np.arcsinh(events[:, 3] / 150)])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32


def test_missing_channel_is_one_sentence():
    with pytest.raises(CytoInputError, match="lacks channel 'CD3'"):
        transform_events(np.zeros((3, 1), np.float32), ["CD4"], TransformSpec(features=["CD3"]))


def test_compensation_inverts_the_spillover():
    rng = np.random.default_rng(1)
    true = rng.uniform(0, 1000, (1000, 2)).astype(np.float32)
    spill = np.array([[1.0, 0.2], [0.1, 1.0]])
    observed = (true @ spill).astype(np.float32)
    spec = TransformSpec(features=["A", "B"], arcsinh=False, compensate=True)
    out = transform_events(observed, ["A", "B"], spec, Spillover(["A", "B"], spill))
    np.testing.assert_allclose(out, true, rtol=1e-4, atol=1e-2)


def test_defaults_for_raw_mass_and_flow_files():
    demo = default_spec(make_demo(1_000))
    assert demo.arcsinh and demo.cofactor == COFACTOR_MASS and len(demo.features) == 32 and not demo.compensate
    cytof = read_file(HIMC_CD4_EM)  # a raw Helios CyTOF export
    spec = default_spec(cytof)
    assert spec.arcsinh and spec.cofactor == COFACTOR_MASS and not detect_scale(cytof).transformed
    flow = read_file(CORPUS / "flowio_100715.fcs")  # a raw FACSAria file with a spillover matrix
    spec = default_spec(flow)
    assert spec.arcsinh and spec.cofactor == COFACTOR_FLOW and spec.compensate, "raw flow is compensated, cofactor 150"
    assert not any(name.lower().startswith(("fsc", "ssc", "time")) for name in spec.features)


@pytest.mark.parametrize("path", [LEVINE / "Levine_32dim_10k.fcs", LEVINE / "Levine_32dim_labeled30k_arcsinh.csv"])
def test_arcsinh_data_is_not_transformed_again(path):
    dataset = read_file(path)
    spec = default_spec(dataset)
    guess = detect_scale(dataset)
    assert guess.transformed and not spec.arcsinh
    assert "arcsinh" in guess.reason and "no further transform" in guess.reason and "\n" not in guess.reason
    features = transform_features(dataset, spec)
    assert np.quantile(features, 0.999) > 5, "values keep their arcsinh scale (0–8), not squeezed to 0–0.6"


def test_logicle_flow_export_is_neither_transformed_nor_compensated():
    dataset = read_file(CORPUS / "flowsom_ff.fcs")  # fluorescence written by flowCore on a logicle scale (0–4.5)
    spec = default_spec(dataset)
    guess = detect_scale(dataset)
    assert not spec.arcsinh and not spec.compensate
    assert "flowCore" in guess.reason and "4.5" in guess.reason and "spillover" in guess.reason


def test_suggested_cofactor_follows_the_negative_population_spread():
    rng = np.random.default_rng(3)
    negative = rng.normal(0, 100, (30_000, 1))  # compensation spread of the negative population: SD 100
    positive = rng.lognormal(8, 0.5, (10_000, 1))
    events = np.vstack([negative, positive]).astype(np.float32)
    dataset = Dataset(events, make_channels(["FL1-A"], ["CD3"]), ["tube"], np.zeros(len(events), np.int32))
    [suggestion] = suggest_cofactors(dataset, TransformSpec(features=["FL1-A"], cofactor=5))
    assert suggestion.negative_spread == pytest.approx(100, rel=0.05)
    assert suggestion.cofactor == pytest.approx(300, rel=0.1)


def test_suggested_cofactors_fit_the_instrument():
    demo = make_demo(5_000)
    mass = suggest_cofactors(demo, default_spec(demo))
    assert mass and all(COFACTOR_MASS <= s.cofactor <= 2 * COFACTOR_MASS for s in mass)
    flow = read_file(COVID_FCS)
    suggestions = suggest_cofactors(flow, default_spec(flow))
    assert len(suggestions) >= 10
    assert 50 <= float(np.median([s.cofactor for s in suggestions])) <= 1_000, "compensated flow: cofactors near 150"
    assert suggest_cofactors(flow, TransformSpec(features=flow.feature_names, arcsinh=False)) == []


def test_scaler_round_trips_as_json():
    x = np.random.default_rng(2).normal(3, 2, (5_000, 4)).astype(np.float32)
    scaler = Scaler("standard").fit(x)
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_allclose(again.transform(x).mean(axis=0), 0, atol=1e-4)
    minmax = Scaler("minmax").fit(x).transform(x)
    assert np.quantile(minmax, 0.005) == pytest.approx(0, abs=1e-2) and np.quantile(minmax, 0.995) == pytest.approx(1, abs=1e-2)


def test_data_page_says_why_levine_is_not_transformed_again(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.info and any("arcsinh(x / 5)" in m.value for m in at.markdown), "the demo's raw counts: arcsinh 5"
    at.file_uploader[0].set_value(("Levine_32dim_10k.fcs", (LEVINE / "Levine_32dim_10k.fcs").read_bytes(),
                                   "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Load files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("no further transform" in i.value and "flowCore" in i.value for i in at.info)
    assert any("none (data used as is)" in m.value for m in at.markdown)
    assert not next(c for c in at.checkbox if c.label == "Apply arcsinh").value


def test_data_page_suggests_cofactors_for_a_compensated_flow_file(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.file_uploader[0].set_value((COVID_FCS.name, COVID_FCS.read_bytes(), "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Load files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(m.value.startswith("**Transform:** arcsinh(x / 150)") for m in at.markdown)
    assert any(e.label.startswith("Suggested cofactors for") for e in at.expander)
    assert next(b for b in at.button if b.label.startswith("Use the suggested cofactor")).disabled, "nothing accepted"
