"""Validate differential abundance on simulated studies: false positives under the null, power per fold change.

Each study has 6 vs 6 samples (default) and 20 populations whose shares fall geometrically from 22 % to 0.2 %;
each sample has 10,000–100,000 cells (log-uniform). Between-sample variation, three scenarios:
- gamma: each population's share in each sample is multiplied by Gamma noise of CV 30 % (then renormalised),
  i.e. negative-binomial-like counts;
- dirichlet: shares drawn Dirichlet(500 · base), i.e. Dirichlet-multinomial counts (CV 8 % for the largest
  population, 95 % for the rarest);
- paired: the samples are 6 patients before/after; a patient effect (CV 30 %) is shared by both samples, each
  sample adds its own (CV 15 %).
Cells are then drawn multinomially. Shifted studies multiply 6 mid-abundance populations (shares 5.1–1.5 %)
by 1.5, 2 and 3 (one up, one down each) in the target condition, and the largest population gives up the
cells they gain (its fold 0.73, counted neither as a shift nor as a null), so every other population keeps
its share exactly: a call on one of them is a false one. A fourth, real, null: 6 vs 6 of the 18 COVID-19
samples of ../shared/data/devsuite/covid19_flow_wsp drawn at random, counts of their 4 gated populations from
the FlowJo gates (samples.csv). Methods, each with Benjamini–Hochberg over the populations: the NB GLM of
cytoauto_core.study.differential (paired by patient in the paired scenario), and t-tests and Wilcoxon tests on
per-sample proportions (Student / rank-sum; paired / signed-rank when paired).
Run: nice .venv/bin/python bench/differential.py [--studies 200] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cytoauto_core.study.abundance import CountTable  # noqa: E402
from cytoauto_core.study.differential import Design, differential_abundance  # noqa: E402

N_POPULATIONS = 20
COVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "devsuite" / "covid19_flow_wsp"
COVID_POPULATIONS = ["CD3+/CD4", "CD3+/CD8", "CD14 monocytes", "CD19"]
SHIFTED = {6: 1.5, 7: 1 / 1.5, 8: 2.0, 9: 1 / 2.0, 10: 3.0, 11: 1 / 3.0}
SCENARIOS = ("gamma", "dirichlet", "paired")
LEVEL = 0.05


@dataclass
class Study:
    """Simulated counts with the metadata the app would hold and the true fold change of each population."""

    table: CountTable
    metadata: pd.DataFrame
    fold_change: np.ndarray


def base_shares(n_populations: int = N_POPULATIONS) -> np.ndarray:
    """Shares falling geometrically over a 100-fold range, summing to 1."""
    raw = np.exp(-np.arange(n_populations) * np.log(100) / (n_populations - 1))
    return raw / raw.sum()


def simulate_study(rng: np.random.Generator, scenario: str = "gamma", shifted: bool = False,
                   n_per_group: int = 6, cv: float = 0.3) -> Study:
    """One study of `n_per_group` reference ('A') and target ('B') samples drawn as the module docstring says."""
    base = base_shares()
    fold = np.ones(len(base))
    if shifted:
        for k, f in SHIFTED.items():
            fold[k] = f
        fold[0] = (1 - (base[1:] * fold[1:]).sum()) / base[0]
    n = 2 * n_per_group
    is_target = np.arange(n) >= n_per_group
    patients = np.tile(np.arange(n_per_group), 2)
    shares = base[None, :] * np.where(is_target[:, None], fold[None, :], 1.0)
    if scenario == "gamma":
        shares = shares * _gamma_noise(rng, cv, shares.shape)
    elif scenario == "paired":
        patient_effect = _gamma_noise(rng, cv, (n_per_group, len(base)))
        shares = shares * patient_effect[patients] * _gamma_noise(rng, cv / 2, shares.shape)
    elif scenario == "dirichlet":
        shares = np.array([rng.dirichlet(500 * row / row.sum()) for row in shares])
    else:
        raise ValueError(scenario)
    shares /= shares.sum(axis=1, keepdims=True)
    totals = np.round(np.exp(rng.uniform(np.log(10_000), np.log(100_000), n))).astype(np.int64)
    counts = np.array([rng.multinomial(t, p) for t, p in zip(totals, shares)])
    samples = [f"s{i:02d}" for i in range(n)]
    table = CountTable(pd.DataFrame(counts, index=pd.Index(samples, name="sample"),
                                    columns=[f"pop{k:02d}" for k in range(len(base))]),
                       pd.Series(totals, index=samples, name="total"))
    metadata = pd.DataFrame({"sample": samples, "condition": np.where(is_target, "B", "A"),
                             "patient": [f"p{p}" for p in patients]}).astype(object)
    return Study(table, metadata, fold)


def _gamma_noise(rng: np.random.Generator, cv: float, shape: tuple[int, ...]) -> np.ndarray:
    return rng.gamma(1 / cv ** 2, cv ** 2, shape)


def glm_pvalues(study: Study, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw and BH-adjusted p of the NB GLM, per population."""
    design = Design("condition", "A", "B", "patient" if paired else None)
    result = differential_abundance(study.table, study.metadata, design)
    return result["p_value"].to_numpy(), result["p_adjusted"].to_numpy()


def proportion_pvalues(study: Study, paired: bool, test: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw and BH-adjusted p of a t-test or Wilcoxon test on per-sample proportions, per population."""
    share = study.table.counts.to_numpy(float) / study.table.totals.to_numpy(float)[:, None]
    is_target = (study.metadata["condition"] == "B").to_numpy()
    a, b = share[~is_target], share[is_target]  # rows in patient order in both groups
    if test == "t-test":
        p = stats.ttest_rel(b, a, axis=0).pvalue if paired else stats.ttest_ind(b, a, axis=0).pvalue
    else:
        p = np.array([(stats.wilcoxon(b[:, k], a[:, k]) if paired else stats.mannwhitneyu(b[:, k], a[:, k])).pvalue
                      for k in range(share.shape[1])])
    return p, multipletests(p, method="fdr_bh")[1]


METHODS = {
    "NB GLM (cytoauto_core.study.differential)": lambda s, paired: glm_pvalues(s, paired),
    "t-test on proportions": lambda s, paired: proportion_pvalues(s, paired, "t-test"),
    "Wilcoxon on proportions": lambda s, paired: proportion_pvalues(s, paired, "wilcoxon"),
}


def covid_null_studies(rng: np.random.Generator, n_studies: int) -> list[Study]:
    """Null studies from real counts: 6 vs 6 of the 18 COVID-19 samples drawn at random, so no population truly
    differs, with the real between-sample variation and the real totals (680 to 29,363 cells)."""
    published = pd.read_csv(COVID / "samples.csv")
    counts = published[COVID_POPULATIONS].set_axis(published["short_id"]).rename_axis("sample")
    totals = published["events"].set_axis(published["short_id"])
    studies = []
    for _ in range(n_studies):
        chosen = rng.choice(len(published), 12, replace=False)
        names = published["short_id"].to_numpy()[chosen]
        metadata = pd.DataFrame({"sample": names, "condition": ["A"] * 6 + ["B"] * 6}).astype(object)
        studies.append(Study(CountTable(counts.loc[names], totals.loc[names]), metadata,
                             np.ones(len(COVID_POPULATIONS))))
    return studies


def evaluate(scenario: str, null_studies: list[Study], shifted_studies: list[Study]) -> list[dict]:
    """Per method: raw p < 0.05 rate and false-positive rate under the null (a well-calibrated test has 0.05 and
    less), the share of null studies with any call, power per fold change, false share of calls when shifted."""
    paired = scenario == "paired"
    rows = []
    for method, pvalues in METHODS.items():
        started = time.perf_counter()
        null_raw, null_adjusted = map(np.array, zip(*(pvalues(s, paired) for s in null_studies)))
        null_calls = null_adjusted < LEVEL
        row = {"scenario": scenario, "method": method, "raw p < 0.05 (null)": (null_raw < LEVEL).mean(),
               "FPR (null)": null_calls.mean(), "studies with a false call (null)": null_calls.any(axis=1).mean()}
        if shifted_studies:
            shifted_calls = np.array([pvalues(s, paired)[1] < LEVEL for s in shifted_studies])
            fold = shifted_studies[0].fold_change
            for f in (1.5, 2.0, 3.0):
                row[f"power FC {f:g}"] = shifted_calls[:, np.isclose(np.abs(np.log(fold)), np.log(f))].mean()
            calls = shifted_calls.sum()
            row["false share of calls (shifted)"] = shifted_calls[:, fold == 1].sum() / calls if calls else np.nan
        row["ms per study"] = 1000 * (time.perf_counter() - started) / (len(null_studies) + len(shifted_studies))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200, help="null and shifted studies per scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for i, scenario in enumerate(SCENARIOS):
        rng = np.random.default_rng(args.seed + i)
        null_studies = [simulate_study(rng, scenario) for _ in range(args.studies)]
        rows += evaluate(scenario, null_studies, [simulate_study(rng, scenario, shifted=True)
                                                  for _ in range(args.studies)])
    rows += evaluate("COVID-19 real counts, null", covid_null_studies(np.random.default_rng(args.seed + len(SCENARIOS)),
                                                                      args.studies), [])
    table = pd.DataFrame(rows)
    print(f"{args.studies} null + {args.studies} shifted studies per simulated scenario ({N_POPULATIONS} populations), "
          f"{args.studies} real null studies (4 populations), 6 vs 6 samples, calls at BH-adjusted p < {LEVEL}, "
          f"seed {args.seed}\n")
    print(markdown(table))


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table with three decimals (no tabulate dependency for one table)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


if __name__ == "__main__":
    main()
