"""Differential abundance between two conditions: a negative-binomial GLM per population on sample counts.

Per population, counts y_i of the compared samples are modelled as NB(mu_i, alpha) with
log mu_i = log(total_i) + b·[sample i is in the target condition] (+ one term per patient when paired),
so exp(b) is the fold change of the population's share of cells. alpha (between-sample overdispersion) is
the moment estimate that makes the Pearson χ² equal the residual degrees of freedom (as MASS's theta.mm),
which, unlike the maximum-likelihood one, is not biased low in studies of a dozen samples; tests and 95 %
intervals use the t distribution on the residual degrees of freedom. p-values are adjusted across
populations by Benjamini–Hochberg. A population the model cannot judge gets NA and a reason.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import brentq
from statsmodels.stats.multitest import multipletests
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from ..base.errors import CytoInputError
from .abundance import CountTable
from .samples import SAMPLE, confounded

MIN_PER_GROUP = 2
COLUMNS = ["population", "log2_fold_change", "ci_low", "ci_high", "p_value", "p_adjusted", "alpha",
           "mean_percent_reference", "mean_percent_target", "note"]


@dataclass(frozen=True)
class Design:
    """A comparison in plain words: `target` against `reference` in metadata column `column`, maybe paired."""

    column: str
    reference: str
    target: str
    pair_by: str | None = None

    def sentence(self) -> str:
        """E.g. "Compare condition 'B' with 'A', paired by patient"."""
        paired = f", paired by {self.pair_by}" if self.pair_by else ""
        return f"Compare {self.column} '{self.target}' with '{self.reference}'{paired}."


@dataclass
class Plan:
    """The samples a design compares, their model matrix, and what was left out and why."""

    samples: list[str]
    is_target: np.ndarray
    pairs: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None


def plan(design: Design, metadata: pd.DataFrame) -> Plan:
    """Select the samples of the two conditions (with a partner when paired); a design the table cannot
    support raises CytoInputError, too few samples become the `problem` every population reports."""
    for column in filter(None, (design.column, design.pair_by)):
        if column not in metadata.columns or column == SAMPLE:
            raise CytoInputError(f"The sample table has no column '{column}' to compare by.")
    if design.pair_by == design.column:
        raise CytoInputError("Pair samples by a column other than the one holding the conditions.")
    if design.reference == design.target:
        raise CytoInputError("Choose two different conditions to compare.")
    present = set(metadata[design.column].dropna())
    for value in (design.reference, design.target):
        if value not in present:
            raise CytoInputError(f"No sample has {design.column} '{value}' in the sample table.")
    chosen = metadata[metadata[design.column].isin([design.reference, design.target])]
    notes = []
    if design.pair_by:
        unpaired = chosen[design.pair_by].isna() | (chosen.groupby(design.pair_by)[design.column]
                                                    .transform("nunique").fillna(0) < 2)
        if unpaired.any():
            notes.append(f"{int(unpaired.sum())} sample(s) left out: their {design.pair_by} has no sample in the "
                         f"other condition ({', '.join(chosen.loc[unpaired, SAMPLE].head(3))}"
                         f"{', …' if unpaired.sum() > 3 else ''}).")
        chosen = chosen[~unpaired]
    is_target = (chosen[design.column] == design.target).to_numpy()
    result = Plan(chosen[SAMPLE].tolist(), is_target,
                  chosen[design.pair_by].to_numpy() if design.pair_by else None, notes)
    sizes = {design.reference: int((~is_target).sum()), design.target: int(is_target.sum())}
    small = [f"'{value}' has {n}" for value, n in sizes.items() if n < MIN_PER_GROUP]
    if small:
        result.problem = (f"at least {MIN_PER_GROUP} samples per condition are needed "
                          f"({' and '.join(small)}{' with a partner' if design.pair_by else ''})")
    return result


def confounding(design: Design, metadata: pd.DataFrame) -> list[str]:
    """One warning per grouping column that splits the compared samples exactly as the design's conditions do (a batch
    or run day holding one condition each): the comparison cannot tell the condition from it."""
    compared = metadata[metadata[design.column].isin([design.reference, design.target])]
    notes = []
    for other in confounded(compared, design.column):
        match = compared.drop_duplicates(design.column).set_index(design.column)[other]
        pairs = ", ".join(f"every '{value}' sample has {other} '{match[value]}'"
                          for value in (design.reference, design.target))
        notes.append(f"{design.column[:1].upper()}{design.column[1:]} and {other} split the compared samples "
                     f"identically ({pairs}), so this comparison cannot tell an effect of {design.column} from an "
                     f"effect of {other}; to separate them, the study needs samples of more than one {other} in each "
                     f"{design.column}.")
    return notes


def differential_abundance(table: CountTable, metadata: pd.DataFrame, design: Design) -> pd.DataFrame:
    """One row per population: log2 fold change (target / reference) with its 95 % CI, p and BH-adjusted p."""
    layout = plan(design, metadata)
    counts = table.counts.loc[layout.samples]
    totals = table.totals.loc[layout.samples].to_numpy(dtype=float)
    share = 100 * counts.to_numpy(dtype=float) / np.where(totals > 0, totals, np.nan)[:, None]
    rows = []
    for j, population in enumerate(counts.columns):
        fit = (_na(layout.problem) if layout.problem else
               fit_population(counts[population].to_numpy(dtype=float), totals, layout.is_target, layout.pairs,
                               design))
        rows.append({"population": population, **fit,
                     "mean_percent_reference": np.nanmean(share[~layout.is_target, j]) if (~layout.is_target).any()
                     else np.nan,
                     "mean_percent_target": np.nanmean(share[layout.is_target, j]) if layout.is_target.any()
                     else np.nan})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    tested = frame["p_value"].notna()
    frame["p_adjusted"] = np.nan
    if tested.any():
        frame.loc[tested, "p_adjusted"] = multipletests(frame.loc[tested, "p_value"], method="fdr_bh")[1]
    frame.attrs["notes"] = layout.notes
    frame.attrs["design"] = design.sentence()
    return frame


def fit_population(y: np.ndarray, totals: np.ndarray, is_target: np.ndarray, pairs: np.ndarray | None,
                    design: Design) -> dict:
    """The NB GLM of one population's counts, or NA with the reason it cannot be judged."""
    if y.sum() == 0:
        return _na("no cells of this population in any compared sample")
    for in_group, name in ((~is_target, design.reference), (is_target, design.target)):
        if y[in_group].sum() == 0:
            return _na(f"absent from every '{name}' sample, so the fold change has no finite estimate")
    keep = totals > 0
    if pairs is not None:  # a patient with no cells of it anywhere says nothing about the change
        kept_pairs = pd.Series(y).groupby(pairs).transform("sum").to_numpy() > 0
        keep &= kept_pairs
    y, totals, is_target = y[keep], totals[keep], is_target[keep]
    if is_target.sum() < 1 or (~is_target).sum() < 1:
        return _na("no sample with cells of it is left in one condition")
    columns = [is_target.astype(float)]
    if pairs is None:
        columns.append(np.ones(len(y)))
    else:
        levels = pd.unique(pairs[keep])
        columns += [(pairs[keep] == level).astype(float) for level in levels]
    x = np.column_stack(columns)
    df = len(y) - np.linalg.matrix_rank(x)
    if df < 1:
        return _na("too few samples to estimate the between-sample variation")
    try:
        result, alpha = _fit(y, x, np.log(totals), df)
    except _NoFit as exc:
        return _na(str(exc))
    b = float(result.params[0])
    low, high = result.conf_int(0.05)[0]
    return {"log2_fold_change": b / math.log(2), "ci_low": low / math.log(2), "ci_high": high / math.log(2),
            "p_value": float(result.pvalues[0]), "alpha": alpha, "note": ""}


class _NoFit(Exception):
    """The GLM did not give usable estimates; the message is the reason shown."""


def _fit(y: np.ndarray, x: np.ndarray, offset: np.ndarray, df: int, max_rounds: int = 25):
    """Alternate NB fits and the moment estimate of alpha until alpha settles; returns (result, alpha)."""
    alpha, start = 0.0, None
    for _ in range(max_rounds):
        result = _glm(y, x, offset, alpha, start)
        start = result.params
        new = _moment_alpha(y, result.fittedvalues, df)
        if abs(new - alpha) <= 1e-4 * (1 + alpha):
            return _glm(y, x, offset, new, start), new
        alpha = new
    raise _NoFit("the overdispersion estimate did not settle")


def _glm(y, x, offset, alpha, start):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # counts an offset model fits exactly are no separation here: absent groups are refused before any fit
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        try:
            result = sm.GLM(y, x, family=sm.families.NegativeBinomial(alpha=max(alpha, 1e-10)),
                            offset=offset).fit(start_params=start, scale=1.0, use_t=True)
        except (Warning, ValueError, np.linalg.LinAlgError) as exc:
            raise _NoFit(f"the model did not converge ({type(exc).__name__})") from exc
    if not (np.all(np.isfinite(result.params)) and np.all(np.isfinite(result.bse))):
        raise _NoFit("the model gave no finite estimate")
    return result


def _moment_alpha(y: np.ndarray, mu: np.ndarray, df: int) -> float:
    """The alpha ≥ 0 at which Σ (y − mu)² / (mu + alpha·mu²) = df; 0 when the counts vary no more than Poisson."""
    r2 = (y - mu) ** 2

    def excess(alpha: float) -> float:
        return float(np.sum(r2 / (mu + alpha * mu ** 2))) - df

    if excess(0.0) <= 0:
        return 0.0
    high = 1.0
    while excess(high) > 0:
        high *= 10
        if high > 1e8:
            raise _NoFit("the counts are too variable to estimate the overdispersion")
    return brentq(excess, 0.0, high, xtol=1e-10, rtol=1e-8)


def _na(reason: str) -> dict:
    return {"log2_fold_change": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "alpha": np.nan,
            "note": reason}
