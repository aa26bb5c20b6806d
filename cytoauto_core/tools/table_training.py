"""Train from a marker table and clicked cells together: the table names every population, the clicks correct it.

The applied model blends, per cell, the clicked-cell model (VIME) with the table's annotator (taught by the table's
clearest cells and by every clicked cell, which win over the table): probabilities ∝ p_clicks · p_table ** weight,
the weight growing with how well the table alone agrees with the clicks. A population with no clicked cell takes the
table's probability alone. Where the clicked cells of a population contradict its table row (their median near what
the table names the other side of one of its markers), that marker is set blank for it and the user is told. Chosen
on every dev-suite set with a table (bench/marker_table.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..base.archive import read_npz
from ..base.labelled import name_key
from ..io.marker_table import EXPRESSED, MarkerTable
from ..prep.transforms import Scaler
from .models import Progress, ShouldStop, check_stop, report
from .models.kinds import classifier_types
from .table_annotation import LEVEL_FIELDS, MarkerLevels, TableAnnotator, TableDiscriminant

# exponent of the table's probabilities in the blend where it agrees with every click (0.1–1 tried)
TABLE_WEIGHT = 0.3
# the table counts only as far as its own call agrees with the clicked cells beyond this share (linearly up to all of
# them): on five sets at 10 clicks per population a fixed weight cost up to 0.02 where the table is weaker than clicks
TRUSTED_FROM = 0.8
MIN_CLICKS_TO_CONTRADICT = 3  # a population's clicked cells can contradict its row from this many on
CONTRADICTED_AT = 0.2  # a marker is contradicted when the clicked cells' median sits this near the other level
# (0: at it, 1: at the row's own level); a dim marker between the two levels is not a contradiction
CONTRADICTED_SHARE = 0.75  # ... and at least this share of them lies on the other side of the marker's threshold
FLOOR = 1e-6


@dataclass
class Contradiction:
    """Clicked cells of a population on the other side of one of its table markers."""

    population: str
    marker: str
    expressed: bool  # what the table says
    clicked: int
    against: int  # clicked cells on the other side

    @property
    def sentence(self) -> str:
        said, seen = ("+", "−") if self.expressed else ("−", "+")
        return (f"The {self.clicked} cells you labelled {self.population} are mostly {self.marker}{seen} "
                f"({self.against} of {self.clicked}), but the marker table says {self.marker}{said}; your labels win, "
                f"so {self.marker} no longer decides {self.population}.")


def find_contradictions(annotator: TableAnnotator, x_clicked: np.ndarray, rows: np.ndarray) -> list[Contradiction]:
    """For each clicked population, the marker of its row its clicked cells contradict most clearly, if any (`rows`:
    each clicked cell's table row, -1 for a population the table lacks); the annotator's levels must be found. One per
    population: a wrong marker also misplaces what the table names on its other markers' sides."""
    found = []
    lv = annotator.levels
    for p in np.unique(rows[rows >= 0]):
        members = x_clicked[rows == p]
        if len(members) < MIN_CLICKS_TO_CONTRADICT:
            continue
        worst: tuple[float, Contradiction] | None = None
        for k in np.flatnonzero(annotator.values[p]):
            v = members[:, annotator.columns[k]]
            position = (np.median(v) - lv.named_low[k]) / max(lv.named_high[k] - lv.named_low[k], 1e-6)  # 0: −, 1: +
            expressed = bool(annotator.values[p, k] == EXPRESSED)
            against = int(np.sum((v > lv.threshold[k]) != expressed))
            beyond = -position if expressed else position - 1  # how far past the row's own side; > −CONTRADICTED_AT
            clear = beyond > -CONTRADICTED_AT and against >= CONTRADICTED_SHARE * len(v)
            if clear and (worst is None or beyond > worst[0]):
                worst = beyond, Contradiction(annotator.populations[p], annotator.markers[k], expressed, len(members),
                                              against)
        if worst is not None:
            found.append(worst[1])
    return found


class TableBlendModel:
    """A marker table's annotator blended with a clicked-cell model, behind the fit/predict_proba contract.

    `population_ids` is each table row's class id (its label id; -1 to leave a row out). Clicked classes the table
    lacks are learnt from their clicks alone."""

    kind = "table_blend"

    def __init__(self, table: MarkerTable, columns: list[int], population_ids: list[int], base=None, seed: int = 0,
                 weight: float = TABLE_WEIGHT) -> None:
        self.table, self.columns, self.population_ids = table, list(columns), [int(i) for i in population_ids]
        self.base, self.seed, self.weight = base, seed, weight
        self.classes_ = np.empty(0, np.int64)
        self.annotator: TableAnnotator | None = None
        self.contradictions: list[Contradiction] = []
        self.agreement = 1.0  # share of the clicked cells (of populations in the table) the table alone names so
        self.weight_ = weight  # the weight used: `weight` scaled by the agreement
        self.provenance: list[str] = []

    def fit(self, x_labeled: np.ndarray, y: np.ndarray, x_unlabeled: np.ndarray | None = None,
            progress: Progress | None = None, should_stop: ShouldStop | None = None) -> "TableBlendModel":
        """Find the table's levels on every cell, check the clicks against the rows, teach the annotator with the
        table's clearest cells and the clicks, and fit the clicked-cell model when two or more classes are clicked."""
        y = np.asarray(y, np.int64)
        x_all = x_labeled if x_unlabeled is None or not len(x_unlabeled) else np.concatenate([x_unlabeled, x_labeled])
        table, row_ids = self._named_rows()
        self.classes_ = np.union1d(row_ids, np.unique(y))
        outputs = {c: i for i, c in enumerate(row_ids)}
        for c in self.classes_:
            outputs.setdefault(int(c), len(outputs))
        self.annotator = TableAnnotator(table, self.columns, self.seed)
        report(progress, 0.02, "marker table: finding each marker's levels")
        sample = self.annotator.fit_sample(x_all)  # the cells annotate() finds the levels on
        self.annotator.fit_levels(sample)
        index = np.array([outputs[int(c)] for c in y], np.int64)
        rows = np.where(index < len(row_ids), index, -1)
        self.contradictions = find_contradictions(self.annotator, np.asarray(x_labeled, np.float32), rows)
        values = self.annotator.values.copy()
        for c in self.contradictions:
            values[table.populations.index(c.population), self.annotator.markers.index(c.marker)] = 0
        self.annotator.set_values(values)
        check_stop(should_stop)
        taught = self.annotator.teaching(sample)
        self.agreement = self._agreement(x_all, taught, np.asarray(x_labeled, np.float32), rows)
        self.weight_ = self.weight * float(np.clip((self.agreement - TRUSTED_FROM) / (1 - TRUSTED_FROM), 0, 1))
        self.annotator.fit(x_all, lambda f, m: report(progress, 0.05 + 0.15 * f, f"marker table: {m}"), should_stop,
                           extra=(np.asarray(x_labeled, np.float32), index), outputs=len(outputs), taught=taught)
        self._order = np.array([outputs[int(c)] for c in self.classes_], np.int64)
        clicked = np.unique(y)
        if self.base is not None and clicked.size >= 2:
            self.base.fit(x_labeled, y, x_unlabeled, progress=lambda f, m: report(progress, 0.2 + 0.8 * f, m),
                          should_stop=should_stop)
        else:
            self.base = None
        self.provenance = self._provenance(table, row_ids, y)
        report(progress, 1.0, "marker table and clicks: done")
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n × classes, float32): the clicked-cell model's, where it knows the class, times the
        table annotator's to the power `weight`; a class it does not know takes the annotator's share alone."""
        q = np.maximum(self.annotator.predict_proba(x)[:, self._order], FLOOR)
        if self.base is None:
            return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)
        known = np.isin(self.classes_, self.base.classes_)
        share = q / q.sum(axis=1, keepdims=True)
        p = np.empty_like(q)
        p[:, known] = self.base.predict_proba(x)[:, np.searchsorted(self.base.classes_, self.classes_[known])]
        p[:, known] *= 1.0 - share[:, ~known].sum(axis=1, keepdims=True)
        p[:, ~known] = share[:, ~known]
        blended = np.log(np.maximum(p, FLOOR)) + self.weight_ * np.log(q)
        blended = np.exp(blended - blended.max(axis=1, keepdims=True))
        return (blended / blended.sum(axis=1, keepdims=True)).astype(np.float32)

    def _named_rows(self) -> tuple[MarkerTable, np.ndarray]:
        """The table's rows that name a class (population_ids ≥ 0) and those classes' ids."""
        keep = [i for i, c in enumerate(self.population_ids) if c >= 0]
        table = MarkerTable([self.table.populations[i] for i in keep], self.table.markers, self.table.values[keep])
        return table, np.array([self.population_ids[i] for i in keep], np.int64)

    def _agreement(self, x_all: np.ndarray, taught: tuple, x_clicked: np.ndarray, rows: np.ndarray) -> float:
        """How many clicked cells of the table's populations the table alone (no clicks; `taught`: the annotator's
        teaching cells) names as they were named."""
        known = rows >= 0
        if not known.any():
            return 1.0
        plain = TableAnnotator(self.annotator.table, self.columns, self.seed)
        plain.levels, plain.values = self.annotator.levels, self.annotator.values
        plain.fit(x_all, taught=taught)
        return float(np.mean(plain.predict_proba(x_clicked[known]).argmax(axis=1) == rows[known]))

    def _provenance(self, table: MarkerTable, row_ids: np.ndarray, y: np.ndarray) -> list[str]:
        """What came from the table and what from clicks, in sentences."""
        clicked = np.unique(y)
        from_table = [p for p, c in zip(table.populations, row_ids) if c not in clicked]
        both = [p for p, c in zip(table.populations, row_ids) if c in clicked]
        lines = [f"From the marker table: {len(table.populations)} populations named by {len(self.annotator.markers)} "
                 f"markers; {len(from_table)} of them from the table alone"
                 + (f" ({', '.join(from_table[:6])}{', …' if len(from_table) > 6 else ''})." if from_table else ".")]
        extra = len(clicked) - len(both)
        lines.append(f"From your clicks: {len(y):,} labelled cells in {_count(len(clicked), 'population')}"
                     + (f" ({len(both)} also in the table, {extra} the table lacks)." if len(clicked) else "."))
        if self.base is not None:
            lines.append(f"The table alone names {100 * self.agreement:.0f} % of your clicked cells as you did, so it "
                         + ("counts fully beside your clicks." if self.weight_ >= self.weight else
                            "does not change the call of the populations you clicked." if self.weight_ == 0 else
                            "counts partly beside your clicks."))
        return lines + [c.sentence for c in self.contradictions]

    def params_dict(self) -> dict:
        return {"seed": self.seed, "weight": self.weight, "weight_used": self.weight_, "agreement": self.agreement,
                "table": self.table.to_dict(), "columns": self.columns,
                "population_ids": self.population_ids}

    def save_state(self, directory: str) -> dict:
        """The annotator's levels and discriminant in table.npz, the clicked-cell model's own files beside them."""
        d = self.annotator.discriminant  # None when the table's teaching cells were all one population
        learnt = {} if d is None else {"coef": d.coef_, "intercept": d.intercept_, "classes": d.classes_}
        np.savez(os.path.join(directory, "table.npz"), order=self._order, classes_out=self.classes_, **learnt)
        base = None if self.base is None else {"kind": self.base.kind, "config": self.base.save_state(directory)}
        return {"params": self.params_dict(), "scaler": None if d is None else d.scaler.to_dict(),
                "outputs": self.annotator.outputs, "levels": self.annotator.levels.to_dict(),
                "values": self.annotator.values.tolist(), "base": base}

    @classmethod
    def load_state(cls, directory: str, config: dict) -> "TableBlendModel":
        """Rebuild from table.npz and the JSON config (bounded reads, no pickle)."""
        p = config["params"]
        model = cls(MarkerTable.from_dict(p["table"]), p["columns"], p["population_ids"], None, int(p["seed"]),
                    float(p["weight"]))
        z = read_npz(os.path.join(directory, "table.npz"))
        model.annotator = TableAnnotator(model._named_rows()[0], model.columns, model.seed)
        model.annotator.set_values(np.asarray(config["values"], np.int8))
        lv = config["levels"]
        model.annotator.levels = MarkerLevels(lv["markers"], lv["columns"],
                                              *(np.asarray(lv[k], np.float64) for k in LEVEL_FIELDS))
        model.annotator.outputs = int(config["outputs"])
        if config["scaler"] is not None:
            d = TableDiscriminant(model.seed)
            d.coef_, d.intercept_, d.classes_ = z["coef"], z["intercept"], z["classes"]
            d.scaler = Scaler.from_dict(config["scaler"])
            model.annotator.discriminant = d
        model._order, model.classes_ = z["order"], z["classes_out"]
        model.weight_, model.agreement = float(p["weight_used"]), float(p["agreement"])
        if config["base"] is not None:
            model.base = classifier_types()[config["base"]["kind"]].load_state(directory, config["base"]["config"])
        return model


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def table_population_ids(table: MarkerTable, names: dict[int, str]) -> list[int]:
    """Each table row's label id: the population of the same name (labelled.name_key), -1 where there is none."""
    by_key = {name_key(n): i for i, n in names.items()}
    return [by_key.get(name_key(p), -1) for p in table.populations]

