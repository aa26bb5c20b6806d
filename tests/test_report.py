"""The study report: a six-sample demo study written as FCS, read back, labelled by LDA, compared and reported."""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.base.storage import read_json
from cytoauto_core.io import read_files, write_fcs
from cytoauto_core.prep.qc import MarkerReference, reference_from, sample_qc
from cytoauto_core.prep.transforms import TransformSpec, default_spec, transform_features
from cytoauto_core.study import samples
from cytoauto_core.study.abundance import CountTable, count_table
from cytoauto_core.study.demo import make_demo_study
from cytoauto_core.study.differential import Design, differential_abundance
from cytoauto_core.study.report import ModelSummary, study_report
from cytoauto_core.tools.models.bundle import ModelBundle, predict_dataset, save_bundle
from cytoauto_core.tools.training import build_model

SHIFTED = "Pre_B_cells"
DESIGN = Design("condition", "A", "B")


@dataclass
class Study:
    folder: Path
    dataset: Dataset
    metadata: pd.DataFrame
    cells: LabelledCells
    counts: CountTable
    spec: TransformSpec
    reference: MarkerReference
    model: ModelSummary


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    """Six demo files (Pre-B cells 4x as abundant in 'B') labelled by LDA trained on 10 annotated cells per
    population, as the app's Train page would."""
    folder = tmp_path_factory.mktemp("study")
    simulated = make_demo_study()
    for sample in simulated:
        write_fcs(folder / sample.name, sample.dataset)
    dataset = read_files([folder / s.name for s in simulated])
    truth = dataset.annotations["population"].to_numpy()
    populations = sorted(set(truth) - {"unassigned"})
    rng = np.random.default_rng(0)
    labels = np.full(dataset.n_cells, -1)
    for i, name in enumerate(populations):
        labels[rng.choice(np.flatnonzero(truth == name), 10, replace=False)] = i
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    model = build_model("LDA", seed=0).fit(x[labels >= 0], labels[labels >= 0], x[labels < 0])
    reference = reference_from(x, spec.features, dataset.sample_ids)
    bundle = ModelBundle(model, spec, list(range(len(populations))), populations, name="LDA on the demo",
                         params={**model.params_dict(), **reference.to_params()})
    prediction = predict_dataset(bundle, dataset.events, dataset.channel_names, dataset.spillover, 0.5)
    cells = LabelledCells(prediction.labels, dict(enumerate(populations)), prediction.confidence,
                          prediction.probabilities)
    sheet = "sample,condition\n" + "".join(f"{s.name},{s.condition}\n" for s in simulated)
    metadata = samples.read_table(sheet.encode(), "samples.csv", dataset.samples)
    save_bundle(bundle, str(folder / "bundle"))
    summary = ModelSummary.from_bundle(read_json(folder / "bundle" / "bundle.json"), 0.5)
    counts = count_table(cells.population_id, cells.names, dataset.sample_ids, dataset.samples)
    return Study(folder, dataset, metadata, cells, counts, spec, reference, summary)


def _tables(page: str) -> dict[str, pd.DataFrame]:
    """The report's tables by their class name."""
    return {re.search(r'class="dataframe ([a-z]+)"', table).group(1): pd.read_html(io.StringIO(table),
                                                                                   keep_default_na=False,
                                                                                   na_values=["NA"])[0]
            for table in re.findall(r"<table.*?</table>", page, flags=re.S) if 'class="dataframe ' in table}


def test_report_holds_the_design_the_shifted_population_qc_and_model(study):
    quality = sample_qc(study.dataset, study.cells, study.spec, study.reference)
    page = study_report("6 files", study.metadata, study.counts, DESIGN, quality, study.model,
                        created=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert "Compare condition &#x27;B&#x27; with &#x27;A&#x27;." in page
    assert "Reference &#x27;A&#x27;: 3 sample(s) (demo_A1.fcs, demo_A2.fcs, demo_A3.fcs)" in page
    tables = _tables(page)

    expected = differential_abundance(study.counts, study.metadata, DESIGN)
    reported = tables["differential"].set_index("population")
    assert reported.index.tolist() == expected["population"].tolist()
    np.testing.assert_allclose(reported["p_adjusted"], expected["p_adjusted"], rtol=1e-3)
    significant = reported.index[reported["p_adjusted"] < 0.05].tolist()
    assert significant == [SHIFTED] and reported.loc[SHIFTED, "log2_fold_change"] > 1
    assert f"<strong>1 of {len(reported)} population(s) changed at adjusted p &lt; 0.05: {SHIFTED}.</strong>" in page

    assert tables["quality"]["sample"].tolist() == study.dataset.samples
    assert tables["quality"]["mean_confidence"].between(0, 1).all() and not tables["quality"]["drift_flag"].any()
    assert "No sample is flagged" in page
    counts = tables["counts"].set_index("sample")
    assert counts["total"].tolist() == [int((study.dataset.sample_ids == i).sum()) for i in range(6)]
    shares = tables["percent"].set_index("sample")
    np.testing.assert_allclose(shares, 100 * counts[shares.columns].div(counts["total"], axis=0), rtol=1e-3)
    model = dict(zip(tables["model"]["what"], tables["model"]["value"].astype(str)))
    saved = read_json(study.folder / "bundle" / "bundle.json")
    assert model["bundle hash"] == saved["bundle_hash"] and model["seed"] == "0" and model["parameter: seed"] == "0"
    assert model["model"] == "LDA on the demo (lda)"
    assert model["how"] == "applied from the saved model 'LDA on the demo'"
    assert model["transform: features"] == json.dumps(study.spec.features)
    assert "marker_reference" not in page, "the training-data quantiles are no model parameter"


def test_report_opens_without_a_server_or_internet(study):
    page = study_report("6 files", study.metadata, study.counts, DESIGN, None, study.model, "no bundle")
    assert page.count("* plotly.js v") == 1, "plotly.js is inlined exactly once"
    assert not re.search(r"""<(script|link|img|iframe)[^>]*\s(src|href)=""", page), "nothing is fetched"
    rest = page.replace(get_plotlyjs(), "")
    assert "http" not in rest and "mathjax" not in rest.lower(), "no address outside plotly.js itself"
    assert len(re.findall(r'<div id="figure-\d"', page)) == 3, "box, bars and volcano"
    assert "<p>no bundle</p>" in page


def test_report_escapes_names_and_names_a_flagged_sample(study):
    metadata = study.metadata.assign(condition=["<b>ctrl</b>"] * 3 + ["treated & co"] * 3,
                                     patient=["p1", "p2", "p3"] * 2)
    design = Design("condition", "<b>ctrl</b>", "treated & co", "patient")
    shifted = study.dataset.events.copy()
    first = study.dataset.sample_ids == 0
    marker = study.dataset.channel_index([study.spec.features[0]])[0]
    shifted[first, marker] *= 2
    quality = sample_qc(Dataset(shifted, study.dataset.channels, study.dataset.samples, study.dataset.sample_ids),
                        study.cells, study.spec, study.reference)
    page = study_report("<script>alert(1)</script>", metadata, study.counts, design, quality, study.model)
    assert "<script>alert(1)</script>" not in page and "<b>ctrl</b>" not in page
    assert "Compare condition &#x27;treated &amp; co&#x27; with &#x27;&lt;b&gt;ctrl&lt;/b&gt;&#x27;, paired by " \
           "patient." in page
    assert "Flagged for marker drift out of the range of the training data: demo_A1.fcs." in page


def test_demo_study_makes_one_population_fold_times_as_abundant_in_b():
    study = make_demo_study(fold=4.0, seed=3)
    shares = pd.DataFrame([s.dataset.annotations["population"].value_counts(normalize=True) for s in study],
                          index=[s.condition for s in study])
    ratio = shares.loc["B"].mean() / shares.loc["A"].mean()
    assert [s.condition for s in study] == ["A"] * 3 + ["B"] * 3 and len({s.name for s in study}) == 6
    assert 3 < ratio[SHIFTED] < 5.5
    assert ratio.drop(SHIFTED).between(0.75, 1.33).all(), ratio
    with pytest.raises(ValueError, match="no population"):
        make_demo_study(population="Neutrophils")
