"""The study's figures and a one-file HTML report of a comparison of conditions.

The report holds the design in plain words, the sample table, abundance plots and counts, the differential
abundance table and volcano plot, per-sample QC and the model that labelled the cells (parameters, bundle hash,
seed). Figures are Plotly with plotly.js inlined once, so the file opens in any browser without a server or
internet. The Compare page draws the same figures from the same functions.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from ..prep.qc import PARAMS_KEY
from .abundance import CountTable, by_condition
from .differential import Design, confounding, differential_abundance, plan
from .samples import SAMPLE, short_names

SIGNIFICANT = 0.05
CHANGED, UNCHANGED = f"adjusted p < {SIGNIFICANT}", "not significant"
CALL_COLORS = {CHANGED: "#d62728", UNCHANGED: "#7f7f7f"}
METHOD = ("Per population, a negative-binomial GLM of its cells per sample with the sample's total cells as "
          "offset{pair} (overdispersion estimated from the samples by the moment method); log2 fold change of the population's "
          "share with a 95 % interval (t distribution); p-values adjusted across populations by Benjamini–Hochberg.")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}.meta{color:#666}"""


@dataclass
class ModelSummary:
    """What labelled the cells: enough to name the model and rebuild its result."""

    name: str
    kind: str
    bundle_hash: str
    seed: int
    threshold: float
    origin: str
    parameters: dict = field(default_factory=dict)
    transform: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    @classmethod
    def from_result(cls, result_meta: dict, bundle_meta: dict | None, threshold: float) -> ModelSummary:
        """From the stored result's metadata and, when the bundle is still there, its bundle.json."""
        bundle = bundle_meta or {}
        origin = (f"applied from the saved model '{result_meta['applied_from']}'" if result_meta.get("applied_from")
                  else f"trained on {int(result_meta.get('n_labelled', 0)):,} labelled cells")
        config = bundle.get("model", {})
        parameters = {**{k: v for k, v in bundle.get("params", {}).items() if k != PARAMS_KEY},
                      **config.get("params", {}), **({"architecture": config["architecture"]}
                                                      if "architecture" in config else {})}
        return cls(bundle.get("name", result_meta["model"]), bundle.get("kind", result_meta["model"]),
                   result_meta["bundle_hash"], int(result_meta["seed"]), threshold, origin, parameters,
                   bundle.get("spec", {}), bundle.get("versions", {}))


    @classmethod
    def from_bundle(cls, bundle_meta: dict, threshold: float) -> ModelSummary:
        """From a saved bundle's bundle.json alone, as a script applying it has."""
        return cls.from_result({"model": bundle_meta["kind"], "bundle_hash": bundle_meta["bundle_hash"],
                                "seed": bundle_meta["seed"], "applied_from": bundle_meta["name"]}, bundle_meta,
                               threshold)


def abundance_box(long: pd.DataFrame, column: str, names: dict[str, str] | None = None) -> go.Figure:
    """Each sample's share of every population, one box per condition (every sample drawn as a point, named by
    `names` (sample → short name) when given)."""
    points = long.assign(name=long[SAMPLE].map(names) if names else long[SAMPLE])
    return px.box(points, x="population", y="percent", color=column, points="all", hover_name="name",
                  hover_data=[SAMPLE, "cells"], category_orders={column: list(dict.fromkeys(long[column].dropna()))},
                  title=f"Share of each sample's cells (%), by {column}")


def abundance_bars(long: pd.DataFrame, column: str, names: dict[str, str] | None = None) -> go.Figure:
    """Stacked population shares, one bar per sample labelled by its condition and short name (`names`: sample →
    short name, else the sample itself), samples ordered by condition."""
    shown = long[SAMPLE].map(names) if names else long[SAMPLE]
    bars = long.assign(bar=long[column].fillna("—") + " · " + shown)
    return px.bar(bars, x="bar", y="percent", color="population", hover_data=[SAMPLE, "cells"],
                  category_orders={"bar": list(dict.fromkeys(bars["bar"]))},
                  title=f"Population share per sample, ordered by {column} (%)").update_xaxes(title=None)


def volcano(differential: pd.DataFrame, design: Design) -> go.Figure | None:
    """log2 fold change against −log10 adjusted p of every tested population; None when none could be tested."""
    tested = differential.dropna(subset=["p_adjusted"])
    if tested.empty:
        return None
    points = tested.assign(minus_log10_p=-np.log10(tested["p_adjusted"].clip(lower=1e-300)),
                           call=np.where(tested["p_adjusted"] < SIGNIFICANT, CHANGED, UNCHANGED))
    return px.scatter(points, x="log2_fold_change", y="minus_log10_p", color="call", hover_name="population",
                      color_discrete_map=CALL_COLORS, title="Volcano plot",
                      labels={"log2_fold_change": f"log2 fold change ({design.target} / {design.reference})",
                              "minus_log10_p": "−log10 adjusted p"}).add_hline(y=-np.log10(SIGNIFICANT),
                                                                              line_dash="dot")


def method_sentence(design: Design) -> str:
    """How the differential abundance was tested, in one sentence."""
    return METHOD.format(pair=f" and one term per {design.pair_by}" if design.pair_by else "")


def design_paragraph(design: Design, metadata: pd.DataFrame) -> str:
    """The design in plain words: the comparison, which samples are in each condition, who is left out."""
    layout = plan(design, metadata)
    groups = [f"'{value}': {len(names)} sample(s) ({', '.join(names)})" for value, names in
              ((design.reference, [s for s, t in zip(layout.samples, layout.is_target) if not t]),
               (design.target, [s for s, t in zip(layout.samples, layout.is_target) if t]))]
    text = f"{design.sentence()} Reference {groups[0]}; compared {groups[1]}."
    if design.pair_by:
        text += f" Each {design.pair_by} has a sample in both conditions, so the change is measured within them."
    return " ".join([text, *layout.notes, *([f"No population can be tested: {layout.problem}."]
                                            if layout.problem else [])])


def study_report(dataset_name: str, metadata: pd.DataFrame, counts: CountTable, design: Design,
                 quality: pd.DataFrame | None, model: ModelSummary, quality_note: str = "",
                 created: datetime | None = None) -> str:
    """The whole study as one self-contained HTML page (str). `quality` is qc.sample_qc's table, or None with
    `quality_note` saying why there is none."""
    long = by_condition(counts, metadata, design.column)
    differential = differential_abundance(counts, metadata, design)
    names = short_names(list(counts.counts.index), metadata)
    figures = [abundance_box(long, design.column, names), abundance_bars(long, design.column, names),
               volcano(differential, design)]
    box, bars, volcano_html = (_figure(f, f"figure-{i}") for i, f in enumerate(figures))
    significant = differential.loc[differential["p_adjusted"] < SIGNIFICANT, "population"].tolist()
    finding = (f"{len(significant)} of {len(differential)} population(s) changed at adjusted p < {SIGNIFICANT}: "
               f"{', '.join(significant)}." if significant else
               f"No population changed at adjusted p < {SIGNIFICANT} among {len(differential)}.")
    shares = long.pivot(index=SAMPLE, columns="population", values="percent").reindex(counts.counts.index)
    when = (created or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Study report: {_e(dataset_name)}</h1>",
        f"<p class='meta'>Made by CytoAutoCluster on {when}. {len(counts.counts)} samples, "
        f"{int(counts.totals.sum()):,} cells, {counts.counts.shape[1]} populations.</p>",
        "<h2>Design</h2>", f"<p class='design'>{_e(design_paragraph(design, metadata))}</p>",
        *[f"<p class='warning'><strong>{_e(note)}</strong></p>" for note in confounding(design, metadata)],
        f"<p>{_e(method_sentence(design))}</p>",
        "<h3>Samples</h3>", _table(metadata),
        "<h2>Differential abundance</h2>", f"<p class='finding'><strong>{_e(finding)}</strong></p>",
        *[f"<p>{_e(note)}</p>" for note in differential.attrs["notes"]],
        volcano_html or "<p>No population could be tested, so there is no volcano plot.</p>",
        _table(differential.rename(columns={"mean_percent_reference": f"mean % {design.reference}",
                                            "mean_percent_target": f"mean % {design.target}"}), "differential"),
        f"<h2>Abundance by {_e(design.column)}</h2>", box, bars,
        "<h3>Cells per sample and population</h3>",
        _table(counts.counts.assign(total=counts.totals).reset_index(), "counts"),
        "<h3>Share of each sample's cells (%)</h3>", _table(shares.rename_axis(columns=None).reset_index(), "percent"),
        "<h2>Per-sample quality</h2>",
        _quality(quality, quality_note),
        "<h2>Model</h2>", _model_table(model),
    ]
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Study report: "
            f"{_e(dataset_name)}</title><style>{STYLE}</style>\n<script type='text/javascript'>{get_plotlyjs()}"
            f"</script></head>\n<body>\n" + "\n".join(sections) + "\n</body></html>\n")



def _e(text: object) -> str:
    return html.escape(str(text))


def _figure(figure: go.Figure | None, div_id: str) -> str:
    """A figure as a div; plotly.js itself is in the page head once."""
    if figure is None:
        return ""
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def _table(frame: pd.DataFrame, name: str = "") -> str:
    """A table with NA for missing values and four significant digits, every cell HTML-escaped."""
    return frame.to_html(index=False, na_rep="NA", float_format=lambda v: f"{v:.4g}", classes=name or None,
                         border=0, escape=True)


def _quality(quality: pd.DataFrame | None, note: str) -> str:
    """The QC table with the samples it flags named first, or why there is none."""
    if quality is None:
        return f"<p>{_e(note)}</p>"
    flagged = quality.loc[quality["drift_flag"].fillna(False).astype(bool), SAMPLE].tolist()
    verdict = (f"Flagged for marker drift out of the range of the training data: {', '.join(flagged)}."
               if flagged else "No sample is flagged for marker drift from the training data.")
    return (f"<p>{_e(verdict)} Drift: how far the sample's worst marker distribution moved from the training "
            "data's (mean quantile shift in units of its 2–98 % range).</p>" + _table(quality, "quality"))


def _model_table(model: ModelSummary) -> str:
    rows = {"model": f"{model.name} ({model.kind})", "how": model.origin, "bundle hash": model.bundle_hash,
            "seed": model.seed, "confidence threshold": f"{model.threshold:g} (cells below it are unassigned)",
            **{f"parameter: {k}": json.dumps(v) if isinstance(v, (dict, list)) else v
               for k, v in model.parameters.items()},
            **{f"transform: {k}": json.dumps(v) if isinstance(v, (dict, list)) else v
               for k, v in model.transform.items()},
            **{f"version: {k}": v for k, v in model.versions.items()}}
    return _table(pd.DataFrame({"what": list(rows), "value": [str(v) for v in rows.values()]}), "model")
