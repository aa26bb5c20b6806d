"""The labelled data sets of ../shared/data/devsuite (and Levine_32dim), each as model-ready float32 features.

Every loader follows its set's README: the transform it names, its markers, and which rows are scorable.
Cells that are not scorable (ungated, ambiguous, populations of a handful of cells) stay in the unlabelled pool:
a user's sample holds them too. Split: stratified 50/50 on the scorable cells with random_state=0 (the README's
default), except Levine_32dim, which keeps the train/test split the project has always reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEVSUITE = SHARED / "devsuite"
UNSCORABLE = ""  # label of cells that are pooled but never labelled or scored


@dataclass
class DevSet:
    """One labelled set: features, labels ('' where unscorable), and which rows are train (label/pool) or test."""

    name: str
    kind: str
    x: np.ndarray  # n × d float32
    y: np.ndarray  # n population names; UNSCORABLE for pooled-only cells
    train: np.ndarray  # row indices: labels are drawn here, the rest of them (and every unscorable cell) is the pool
    test: np.ndarray  # scorable row indices held out for scoring
    markers: list[str]

    @property
    def pool_extra(self) -> np.ndarray:
        """Unscorable rows (ungated and the like): unlabelled pool only."""
        return np.flatnonzero(self.y == UNSCORABLE)

    def describe(self) -> str:
        scorable = self.y[self.y != UNSCORABLE]
        _, counts = np.unique(scorable, return_counts=True)
        return (f"{self.name} ({self.kind}): {len(self.y):,} cells, {self.x.shape[1]} markers, {len(counts)} populations "
                f"(smallest {counts.min()}), {len(self.pool_extra):,} unscorable in the pool")


def _split(name: str, kind: str, x: np.ndarray, y: np.ndarray, markers: list[str]) -> DevSet:
    """Stratified 50/50 split of the scorable rows (random_state=0)."""
    scorable = np.flatnonzero(y != UNSCORABLE)
    train, test = train_test_split(scorable, test_size=0.5, stratify=y[scorable], random_state=0)
    return DevSet(name, kind, np.ascontiguousarray(x, np.float32), y, np.sort(train), np.sort(test), markers)


def levine32() -> DevSet:
    """Levine_32dim (Levine et al. 2015): 32 arcsinh markers, 14 populations, the CSV's own train/test split."""
    df = pd.read_csv(SHARED / "levine32" / "Levine_32dim_labeled30k_arcsinh.csv")
    markers = [c for c in df.columns if c not in ("label", "population", "split")]
    y = df["population"].astype(str).to_numpy()
    split = df["split"].to_numpy()
    return DevSet("levine32", "mass, bone marrow", df[markers].to_numpy(np.float32), y,
                  np.flatnonzero(split == "train"), np.flatnonzero(split == "test"), markers)


def hipc() -> DevSet:
    """HIPC Lyoplate T cells (Finak et al. 2016): 6 markers already on a 0–4096 display scale, 10 populations."""
    df = pd.read_csv(DEVSUITE / "hipc_lyoplate_tcell" / "HIPC_Tcell_labeled.csv.gz")
    markers = ["CCR7", "CD4", "CD45RA", "HLADR", "CD38", "CD8"]
    return _split("hipc_tcell", "flow, T cells", df[markers].to_numpy(np.float32) / 4096.0,
                  df["population"].astype(str).to_numpy(), markers)


def hipc_rare() -> DevSet:
    """The HIPC file as a rare-population task: HLA-DR+CD38+ activated CD8 T cells (0.9 %) against all other T cells."""
    full = hipc()
    y = np.where(full.y == "CD8_activated", "CD8_activated", "other T cells")
    return _split("hipc_rare_activated", "flow, rare vs rest", full.x, y, full.markers)


def himc() -> DevSet:
    """HIMC control CyTOF (cyDefine): 37 arcsinh(x/5) markers (CD45 barcodes left out), 28 populations."""
    df = pd.read_csv(DEVSUITE / "himc_ctrl_cytof" / "himc_ctrl_labeled_arcsinh5.csv.gz")
    df = df[df["event_in_two_files"] == 0]
    skip = {"label", "fcs_file", "row_in_fcs", "event_in_two_files"}
    markers = [c for c in df.columns if c not in skip and not c.startswith("CD45BC")]
    return _split("himc_cytof", "mass, blood", df[markers].to_numpy(np.float32), df["label"].astype(str).to_numpy(), markers)


def _asinh_table(path: Path, name: str, kind: str, drop: set[str]) -> DevSet:
    """A microbial table: asinh(x) (cofactor 1) on every parameter but `drop` and the bookkeeping columns."""
    df = pd.read_csv(path)
    skip = drop | {"label", "species", "run_date", "source_file", "row_in_source", "replicate"}
    markers = [c for c in df.columns if c not in skip]
    x = np.arcsinh(df[markers].to_numpy(np.float32))
    return _split(name, kind, x, df["species"].astype(str).to_numpy(), markers)


def sgier() -> DevSet:
    """Phytoplankton species (Sgier et al. 2016): 36 scatter/autofluorescence parameters, asinh, 6 species."""
    return _asinh_table(DEVSUITE / "sgier2016_phytoplankton" / "sgier2016_labeled_3000perSpecies.csv.gz",
                        "sgier_phytoplankton", "flow, algae", {"Time"})


def rubbens() -> DevSet:
    """Bacterial species (Rubbens et al. 2017): 12 scatter/fluorescence parameters, asinh, 9 species."""
    return _asinh_table(DEVSUITE / "rubbens2017_bacteria" / "rubbens2017_labeled_3000perSpecies.csv.gz",
                        "rubbens_bacteria", "flow, bacteria", {"Time", "Width"})


def _fcs_features(path: Path) -> tuple[np.ndarray, list[str]]:
    """An FCS file through the project's own reader and transform (compensation, arcsinh 150 on stained detectors,
    scatter linear); detectors without a stain and Time are left out."""
    from cytoauto_core.io import read_file
    from cytoauto_core.prep.transforms import default_spec, transform_features

    ds = read_file(path)
    spec = default_spec(ds)
    scatter = [c.name for c in ds.channels if c.kind == "scatter"]
    stained = [c.name for c in ds.channels if c.is_feature and c.marker != c.name and c.marker.strip("-– ")]
    spec.features, spec.linear = scatter + stained, scatter
    markers = {c.name: c.marker for c in ds.channels}
    return transform_features(ds, spec), [markers[f] for f in spec.features]


def flowsom_bal() -> DevSet:
    """Mouse BAL (FlowSOM package's FlowJo example): compensated, 11 fluorescence + scatter, 7 scorable leaf gates;
    DP T cells (6) and ungated events stay in the pool."""
    folder = DEVSUITE / "flowsom_mouse_bal_wsp"
    x, markers = _fcs_features(folder / "68983.fcs")
    labels = pd.read_csv(folder / "68983.labels.csv.gz")["label"].astype(str).to_numpy()
    y = np.where(np.isin(labels, ["ungated", "DP T cells"]), UNSCORABLE, labels)
    return _split("flowsom_bal", "flow, mouse lung", x, y, markers)


COVID_SAMPLES = ("W_012_O ST3 230420_031", "ICU_013_A ST3 210420_078", "ICU_003_A ST3 230420_049")


def covid() -> DevSet:
    """Three COVID-19 FACSymphony samples (both run days; W_012_O has 72 CD19 B cells): 25 stains + scatter,
    4 gated populations; ungated and ambiguous events stay in the pool."""
    folder = DEVSUITE / "covid19_flow_wsp"
    samples = pd.read_csv(folder / "samples.csv").set_index("short_id")
    xs, ys, markers = [], [], []
    for sid in COVID_SAMPLES:
        row = samples.loc[sid]
        x, markers = _fcs_features(folder / "fcs" / row["fcs_file"])
        labels = pd.read_csv(folder / "labels" / row["labels_file"])["label"].astype(str).to_numpy()
        xs.append(x)
        ys.append(np.where(np.isin(labels, ["ungated", "ambiguous"]), UNSCORABLE, labels))
    return _split("covid_flow", "flow, blood, 3 samples", np.concatenate(xs), np.concatenate(ys), markers)


LOADERS = {"levine32": levine32, "hipc_tcell": hipc, "hipc_rare_activated": hipc_rare, "himc_cytof": himc,
           "sgier_phytoplankton": sgier, "rubbens_bacteria": rubbens, "flowsom_bal": flowsom_bal, "covid_flow": covid}
FAST = ("hipc_tcell", "flowsom_bal")


def load(name: str) -> DevSet:
    """A set by name (see LOADERS)."""
    return LOADERS[name]()
