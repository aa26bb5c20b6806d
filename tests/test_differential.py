"""Differential abundance: calibrated under the null, powerful on known shifts, NA with a reason when it cannot
judge, and correct on the real COVID-19 study counts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.differential import covid_null_studies, simulate_study
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.study.abundance import CountTable, by_condition, count_table
from cytoauto_core.study.differential import Design, confounding, differential_abundance, plan
from tests.conftest import SHARED

COVID = SHARED / "devsuite" / "covid19_flow_wsp"
GATED = ["CD3+/CD4", "CD3+/CD8", "CD14 monocytes", "CD19"]
UNPAIRED = Design("condition", "A", "B")
PAIRED = Design("condition", "A", "B", pair_by="patient")


@pytest.mark.parametrize("scenario, design", [("gamma", UNPAIRED), ("dirichlet", UNPAIRED), ("paired", PAIRED)])
def test_null_studies_are_calibrated(scenario, design):
    rng = np.random.default_rng(11)
    results = [differential_abundance(s.table, s.metadata, design) for s in
               (simulate_study(rng, scenario) for _ in range(40))]
    raw = np.concatenate([r["p_value"].to_numpy() for r in results])
    adjusted = np.concatenate([r["p_adjusted"].to_numpy() for r in results])
    assert not np.isnan(raw).any()
    assert (adjusted < 0.05).mean() <= 0.05
    assert 0.02 <= (raw < 0.05).mean() <= 0.08  # 800 tests: 5 % ± 3.9 standard errors


def test_known_shifts_are_found_and_intervals_cover_the_truth():
    rng = np.random.default_rng(12)
    studies = [simulate_study(rng, "gamma", shifted=True) for _ in range(30)]
    results = [differential_abundance(s.table, s.metadata, UNPAIRED) for s in studies]
    truth = np.log2(studies[0].fold_change)
    estimate = np.array([r["log2_fold_change"] for r in results])
    low, high = (np.array([r[c] for r in results]) for c in ("ci_low", "ci_high"))
    called = np.array([r["p_adjusted"] for r in results]) < 0.05
    threefold = np.isclose(np.abs(truth), np.log2(3))
    assert called[:, threefold].mean() >= 0.8
    assert called[:, truth == 0].mean() <= 0.05
    assert ((low <= truth) & (truth <= high)).mean() >= 0.92
    assert np.abs(np.median(estimate[:, threefold], axis=0) - truth[threefold]).max() < 0.15


def test_pairing_recovers_power_that_patient_variation_hides():
    rng = np.random.default_rng(13)
    studies = [simulate_study(rng, "paired", shifted=True) for _ in range(20)]
    twofold = np.isclose(np.abs(np.log2(studies[0].fold_change)), 1)
    power = {d.pair_by: np.mean([differential_abundance(s.table, s.metadata, d)["p_adjusted"].to_numpy()[twofold]
                                 < 0.05 for s in studies]) for d in (UNPAIRED, PAIRED)}
    assert power["patient"] >= 0.9
    assert power["patient"] > power[None] + 0.2


def _table(counts: dict[str, list[int]], totals: list[int]) -> CountTable:
    samples = [f"s{i}" for i in range(len(totals))]
    return CountTable(pd.DataFrame(counts, index=pd.Index(samples, name="sample")), pd.Series(totals, index=samples))


def _metadata(conditions: list[str], patients: list[str | None] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"sample": [f"s{i}" for i in range(len(conditions))], "condition": conditions})
    if patients is not None:
        frame["patient"] = patients
    return frame.astype(object)


def test_degenerate_populations_get_na_with_a_reason_and_the_rest_is_tested():
    rng = np.random.default_rng(3)
    totals = [20_000] * 6
    table = _table({"absent": [0] * 6, "only in B": [0, 0, 0, 40, 55, 61],
                    "present": list(rng.poisson([400, 380, 420, 800, 760, 850]))}, totals)
    result = differential_abundance(table, _metadata(["A"] * 3 + ["B"] * 3), UNPAIRED).set_index("population")
    assert result.loc["absent", "note"] == "no cells of this population in any compared sample"
    assert "absent from every 'A' sample" in result.loc["only in B", "note"]
    assert result.loc[["absent", "only in B"], ["log2_fold_change", "p_value", "p_adjusted"]].isna().all().all()
    present = result.loc["present"]
    assert present["note"] == "" and present["p_adjusted"] == present["p_value"]  # BH over the one tested
    assert present["ci_low"] < present["log2_fold_change"] < present["ci_high"]
    assert 0.8 < present["log2_fold_change"] < 1.2


def test_fewer_than_two_samples_per_condition_is_na_for_every_population():
    table = _table({"x": [10, 12, 30]}, [1000] * 3)
    result = differential_abundance(table, _metadata(["A", "A", "B"]), UNPAIRED)
    assert result["p_value"].isna().all()
    assert result["note"].iloc[0] == "at least 2 samples per condition are needed ('B' has 1)"


def test_pairing_leaves_out_samples_without_a_partner_and_says_so():
    metadata = _metadata(["A", "B", "A", "B", "A", "B", "A"], ["p1", "p1", "p2", "p2", "p3", "p3", "p4"])
    layout = plan(PAIRED, metadata)
    assert layout.samples == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert layout.notes == ["1 sample(s) left out: their patient has no sample in the other condition (s6)."]
    counts = {"x": [100, 210, 150, 290, 80, 170, 500]}
    result = differential_abundance(_table(counts, [10_000] * 7), metadata, PAIRED)
    assert result.attrs["notes"] == layout.notes
    assert result.attrs["design"] == "Compare condition 'B' with 'A', paired by patient."
    assert 0.8 < result.loc[0, "log2_fold_change"] < 1.2 and result.loc[0, "p_value"] < 0.01


@pytest.mark.parametrize("design, message", [
    (Design("condition", "A", "A"), "Choose two different conditions to compare."),
    (Design("treatment", "A", "B"), "The sample table has no column 'treatment' to compare by."),
    (Design("condition", "A", "C"), "No sample has condition 'C' in the sample table."),
    (Design("condition", "A", "B", "condition"), "Pair samples by a column other than the one holding the conditions."),
])
def test_impossible_designs_are_one_sentence(design, message):
    with pytest.raises(CytoInputError, match=f"^{message.replace('(', '.').replace(')', '.')}$"):
        plan(design, _metadata(["A", "A", "B", "B"]))


def _covid_study() -> tuple[CountTable, pd.DataFrame, pd.DataFrame]:
    """Counts per gated population of the 18 real samples (from their per-event labels), their sample table
    (group ICU/W from the FlowJo sample name, batch = acquisition day) and the published per-sample counts."""
    published = pd.read_csv(COVID / "samples.csv")
    ids, sample_ids = [], []
    for i, labels_file in enumerate(published["labels_file"]):
        labels = pd.read_csv(COVID / "labels" / labels_file, usecols=["label"])["label"]
        ids.append(labels.map({name: k for k, name in enumerate(GATED)}).fillna(-1).to_numpy(np.int32))
        sample_ids.append(np.full(len(labels), i, np.int32))
    samples = published["fcs_file"].tolist()
    table = count_table(np.concatenate(ids), dict(enumerate(GATED)), np.concatenate(sample_ids), samples)
    metadata = pd.DataFrame({"sample": samples, "condition": published["group_in_wsp_name"],
                             "batch": published["batch_in_filename"]}).astype(object)
    return table, metadata, published


def test_real_covid_study_counts_and_comparison():
    table, metadata, published = _covid_study()
    assert (table.counts.to_numpy() == published[GATED].to_numpy()).all()
    assert (table.totals.to_numpy() == published["events"].to_numpy()).all()
    forward = differential_abundance(table, metadata, Design("condition", "W", "ICU"))
    backward = differential_abundance(table, metadata, Design("condition", "ICU", "W"))
    assert forward["note"].eq("").all() and forward["p_value"].between(0, 1).all()
    np.testing.assert_allclose(forward["log2_fold_change"], -backward["log2_fold_change"], atol=1e-6)
    np.testing.assert_allclose(forward["p_value"], backward["p_value"], rtol=1e-5)
    share = published[GATED].to_numpy() / published[["events"]].to_numpy()
    icu = (metadata["condition"] == "ICU").to_numpy()
    np.testing.assert_allclose(forward["mean_percent_target"], 100 * share[icu].mean(axis=0))
    long = by_condition(table, metadata, "condition")
    assert long["condition"].tolist() == sorted(long["condition"], key=["ICU", "W"].index)
    assert len(long) == 18 * len(GATED)
    np.testing.assert_allclose(long.groupby("sample")["percent"].sum().loc[published["fcs_file"]],
                               100 * published[GATED].sum(axis=1) / published["events"])


def test_random_splits_of_the_real_study_rarely_give_a_call():
    """6 vs 6 of the 18 real samples drawn at random: no population truly differs, the variation is real."""
    results = [differential_abundance(s.table, s.metadata, UNPAIRED)
               for s in covid_null_studies(np.random.default_rng(5), 100)]
    adjusted = np.array([r["p_adjusted"].to_numpy() for r in results])
    assert not np.isnan(adjusted).any()
    assert (adjusted < 0.05).mean() <= 0.05


def test_counts_with_no_extra_variation_are_tested_as_poisson():
    table = _table({"exact": [100, 100, 100, 200, 200, 200]}, [10_000] * 6)
    row = differential_abundance(table, _metadata(["A"] * 3 + ["B"] * 3), UNPAIRED).iloc[0]
    assert row["note"] == "" and row["alpha"] == 0
    assert row["log2_fold_change"] == pytest.approx(1, abs=1e-6) and row["p_value"] < 0.01


def test_a_run_day_holding_one_condition_each_is_named_as_confounded():
    metadata = pd.DataFrame({"sample": [f"s{i}" for i in range(6)], "condition": ["A", "A", "B", "B", "C", "C"],
                             "run day": ["Mon", "Mon", "Tue", "Tue", "Tue", "Mon"], "patient": list("pqpqpq")})
    [note] = confounding(Design("condition", "A", "B"), metadata)
    assert note == ("Condition and run day split the compared samples identically (every 'A' sample has run day "
                    "'Mon', every 'B' sample has run day 'Tue'), so this comparison cannot tell an effect of condition "
                    "from an effect of run day; to separate them, the study needs samples of more than one run day in "
                    "each condition.")
    assert confounding(Design("condition", "A", "C"), metadata) == [], "C ran on both days"
    assert confounding(Design("condition", "A", "B", pair_by="patient"), metadata) == [note]
