"""Every fenced code block in README.md and docs/*.md runs, and every relative link in them leads somewhere.

Blocks are found by scanning the files. A block carries its runner's name in an HTML comment on the line above it,
`<!-- test: NAME -->`; the README's `make` block is recognised by its commands. A block that no runner handles fails
`test_every_block_has_a_runner`, so a new block cannot go untested. Runners:
- ```python: executed in a temporary folder holding the files it names (demo files), then its results are checked;
- ```bash: run as one script (`bash -euo pipefail`, `.venv/bin/python` replaced by this interpreter) in such a
  folder, then its exit status and output files are checked; `make` lines are checked with `make -n` in the repo;
- ```toml and ```csv: parsed by what reads them in the app and compared with what the text around them says.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import anndata
import flowio
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED
from cytoauto_core.io import read_files, write_fcs
from cytoauto_core.study.demo import make_demo, make_demo_study

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, ROOT / "BENCHMARKS.md", ROOT / "bench" / "history.md"]  # files whose relative links must resolve
MARKER = re.compile(r"^\s*<!--\s*test:\s*([\w-]+)\s*-->\s*$")
SHIPPED_BUNDLE = ROOT / "models" / "demo_bone_marrow_vime"
BAL = SHARED / "devsuite" / "flowsom_mouse_bal_wsp"
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # the `<!-- test: NAME -->` above it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def key(self) -> str | None:
        """The runner's name: the marker, else 'make' for a bash block of make commands only."""
        if self.marker:
            return self.marker
        commands = [c for c in _commands(self.code) if not c.startswith("#")]
        if self.lang == "bash" and commands and all(c.startswith("make ") for c in commands):
            return "make"
        return None


def find_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file (``` or ~~~, indented or not), with the marker above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), None)
        assert end is not None, f"{path.relative_to(ROOT)}:{i + 1}: a code block is never closed"
        above = MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(Block(path, i + 1, lang, "\n".join(lines[i + 1:end]) + "\n", above.group(1) if above else None))
        i = end + 1
    return found


def _commands(code: str) -> list[str]:
    """A shell block's commands, continuation lines joined (comments kept as their own lines)."""
    return [c.strip() for c in code.replace("\\\n", " ").splitlines() if c.strip()]


BLOCKS = [b for path in DOCS for b in find_blocks(path)]


# ---------------------------------------------------------------- files the blocks name

def _demo_fcs(path: Path, n_cells: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fcs(path, make_demo(n_cells, seed=seed))
    return path


def _shipped_bundle(folder: Path) -> Path:
    """A copy of the project's VIME bundle at folder/models/demo_bone_marrow_vime, as it lies in the repository."""
    target = folder / "models" / SHIPPED_BUNDLE.name
    shutil.copytree(SHIPPED_BUNDLE, target)
    return target


def _demo_study(folder: Path) -> list:
    """The six demo study files of make_demo_study() in folder/study and their sample table as folder/samples.csv."""
    study = make_demo_study()
    (folder / "study").mkdir(parents=True, exist_ok=True)
    for sample in study:
        write_fcs(folder / "study" / sample.name, sample.dataset)
    (folder / "samples.csv").write_text("sample,condition\n" + "".join(f"{s.name},{s.condition}\n" for s in study))
    return study


def _labels_csv(path: Path, files: list[Path], per_population: int = 10) -> None:
    """A labels CSV (cell_index, population) naming `per_population` demo cells of each population across `files`."""
    truth = read_files(files).annotations["population"].to_numpy()
    rng = np.random.default_rng(0)
    rows = [(int(i), name) for name in sorted(set(truth) - {"unassigned"})
            for i in rng.choice(np.flatnonzero(truth == name), min(per_population, int((truth == name).sum())),
                                replace=False)]
    pd.DataFrame(sorted(rows), columns=["cell_index", "population"]).to_csv(path, index=False)


def _demo_csv(path: Path, n_cells: int, seed: int) -> None:
    """A demo sample as a CSV: one column per channel (named by marker) and a ground-truth `population` column."""
    demo = make_demo(n_cells, seed=seed)
    frame = pd.DataFrame(demo.events, columns=[c.label for c in demo.channels])
    frame["population"] = demo.annotations["population"].to_numpy()
    frame.to_csv(path, index=False)


# ---------------------------------------------------------------- running blocks

def _exec(block: Block, folder: Path, monkeypatch) -> dict:
    """Run a Python block in `folder`; its variables."""
    monkeypatch.chdir(folder)
    scope: dict = {"__name__": "__docs__"}
    exec(compile(block.code, block.where, "exec"), scope)
    return scope


def _run_shell(block: Block, folder: Path) -> subprocess.CompletedProcess:
    """Run a bash block as one script in `folder` (`.venv/bin/python` being this interpreter); exit status 0."""
    script = block.code.replace(".venv/bin/python", shlex.quote(sys.executable))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "CYTOAUTO_WORKSPACE": str(folder / "workspace")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-x", "-c", script], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, (f"{block.where}: exit status {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
                                  f"\n--- stderr\n{done.stderr[-5000:]}")
    return done


def _rows(path: Path) -> pd.DataFrame:
    assert path.is_file(), f"{path.name} was not written"
    return pd.read_csv(path)


# ---------------------------------------------------------------- runners, by the marker above each block

def run_make(block: Block, tmp_path: Path, monkeypatch) -> None:
    """`make run` / `make test`: a dry run from the repository root names the app and the test suite."""
    expected = {"run": "-m streamlit run app.py", "test": "-m pytest"}
    for command in _commands(block.code):
        if command.startswith("#"):
            continue
        target = shlex.split(command.split("#", 1)[0])[1]
        done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{block.where}: make -n {target}: {done.stderr}"
        assert expected[target] in done.stdout, f"{block.where}: make -n {target} does not run {expected[target]!r}"


def run_python_api(block: Block, tmp_path: Path, monkeypatch) -> None:
    """Read → transform → map → cluster → train → apply → export, on two demo files with a ground-truth column."""
    _demo_fcs(tmp_path / "sample.fcs", 3_000, seed=1)
    _demo_fcs(tmp_path / "next_sample.fcs", 2_000, seed=2)
    code_lines = [ln for ln in block.code.splitlines() if ln.strip() and not ln.startswith(("from ", "import "))]
    assert len(code_lines) <= 15, "the whole journey stays within 15 lines"
    scope = _exec(block, tmp_path, monkeypatch)

    assert scope["clusters"].shape == (3_000,) and 2 <= len(np.unique(scope["clusters"])) <= 20
    fcs = flowio.FlowData(str(tmp_path / "next_sample_labelled.fcs"))
    ids = fcs.as_array(preprocess=False)[:, fcs.pnn_labels.index("population_id")]
    np.testing.assert_array_equal(ids, scope["p"].labels)
    adata = anndata.read_h5ad(tmp_path / "sample_labelled.h5ad")
    assert adata.obsm["X_pca"].shape == (3_000, 2) and adata.n_vars == len(scope["spec"].features)
    truth = adata.obs["annotation_population"].astype(str).to_numpy()
    predicted = adata.obs["population"].astype(str).to_numpy()
    assert (predicted == truth)[truth != "unassigned"].mean() > 0.8, "10 labels per population label the demo well"


def run_python_clustering(block: Block, tmp_path: Path, monkeypatch) -> None:
    """FlowSOM on a transformed demo file: one int16 cluster per cell, at most the clusters asked for."""
    _demo_fcs(tmp_path / "sample.fcs", 3_000, seed=1)
    scope = _exec(block, tmp_path, monkeypatch)
    clusters = scope["result"].clusters
    assert clusters.shape == (3_000,) and clusters.dtype == np.int16
    assert 2 <= len(np.unique(clusters)) <= 20
    counts = np.bincount(clusters - clusters.min())
    assert (np.diff(counts[counts > 0]) <= 0).all(), "clusters are numbered by size, the largest first"


def run_python_batch(block: Block, tmp_path: Path, monkeypatch) -> None:
    """apply_to_files with the shipped bundle: every file labelled, as CSV and FCS, and the abundance table."""
    _shipped_bundle(tmp_path)
    inputs = [_demo_fcs(tmp_path / "data" / f"day{i}.fcs", 2_000, seed=10 + i) for i in (1, 2)]
    scope = _exec(block, tmp_path, monkeypatch)
    report = scope["report"]
    assert report.exit_code == 0 and not report.failed and report.cells == 4_000
    for path in inputs:
        for suffix in ("_labelled.csv", "_labelled.fcs", "_legend.csv"):
            assert (tmp_path / "results" / f"{path.stem}{suffix}").is_file(), f"{path.stem}{suffix}"
    assert sorted({Path(f).name for f in _rows(tmp_path / "results" / "abundance.csv")["file"]}) == [p.name for p in inputs]


def run_python_report(block: Block, tmp_path: Path, monkeypatch) -> None:
    """The study report of the demo study labelled by the shipped bundle: one offline HTML file holding the
    comparison of B with A, which finds the population the demo made 4x as abundant in B."""
    study = _demo_study(tmp_path)
    _shipped_bundle(tmp_path)
    scope = _exec(block, tmp_path, monkeypatch)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page == scope["html"]
    assert "Compare condition &#x27;B&#x27; with &#x27;A&#x27;." in page
    a_samples = ", ".join(s.name for s in study if s.condition == "A")
    assert f"Reference &#x27;A&#x27;: 3 sample(s) ({a_samples})" in page
    tables = {re.search(r'class="dataframe ([a-z]+)"', t).group(1): pd.read_html(io.StringIO(t), keep_default_na=False,
                                                                                 na_values=["NA"])[0]
              for t in re.findall(r"<table.*?</table>", page, flags=re.S) if 'class="dataframe ' in t}
    differential = tables["differential"].set_index("population")
    assert differential["p_adjusted"].idxmin() == "Pre_B_cells"
    assert differential.loc["Pre_B_cells", "p_adjusted"] < 0.05 and differential.loc["Pre_B_cells",
                                                                                      "log2_fold_change"] > 1
    assert tables["quality"]["sample"].tolist() == [s.name for s in study]
    model = dict(zip(tables["model"]["what"], tables["model"]["value"].astype(str)))
    saved = json.loads((tmp_path / "models" / SHIPPED_BUNDLE.name / "bundle.json").read_text())
    assert model["bundle hash"] == saved["bundle_hash"], "the report names the model that labelled the cells"
    assert page.count("* plotly.js v") == 1, "plotly.js is inlined once: the file opens without a server"


def run_cli_train(block: Block, tmp_path: Path, monkeypatch) -> None:
    """train from a labels CSV and from an annotation column, then apply the first bundle to a study."""
    files = [_demo_fcs(tmp_path / f"sample{i}.fcs", n, seed=i) for i, n in ((1, 3_000), (2, 2_000))]
    _labels_csv(tmp_path / "labels.csv", files)
    _demo_csv(tmp_path / "data.csv", 3_000, seed=3)
    study = [_demo_fcs(tmp_path / "study" / f"patient{i}.fcs", 2_000, seed=20 + i) for i in (1, 2)]
    done = _run_shell(block, tmp_path)
    for bundle in ("my_panel", "gt"):
        assert (tmp_path / "models" / bundle / "bundle.json").is_file(), f"models/{bundle} was not saved"
    assert done.stdout.count("applied model: LDA") == 2
    assert "cell index from column 'cell_index' (0-based), population from 'population'" in done.stdout
    for path in study:
        assert (tmp_path / "results" / f"{path.stem}_labelled.csv").is_file()
    assert sorted({Path(f).name for f in _rows(tmp_path / "results" / "abundance.csv")["file"]}) == [p.name for p in study]


def run_cli_train_wsp(block: Block, tmp_path: Path, monkeypatch) -> None:
    """train from three gates of the mouse BAL FlowJo workspace: the bundle's populations are those gates."""
    if not BAL.is_dir():
        pytest.skip(f"the dev suite's mouse BAL workspace is not at {BAL}")
    for name in ("gating.wsp", "68983.fcs"):
        shutil.copy(BAL / name, tmp_path / name)
    done = _run_shell(block, tmp_path)
    saved = json.loads((tmp_path / "models" / "gates" / "bundle.json").read_text())
    assert sorted(saved["class_names"]) == ["B cells", "NK cells", "T cells"], done.stdout
    assert "trained on 150 labelled cells" in done.stdout


def run_cli_apply(block: Block, tmp_path: Path, monkeypatch) -> None:
    """apply with the shipped bundle to a recursive pattern and a plain file, in every format."""
    _shipped_bundle(tmp_path)
    inputs = [_demo_fcs(tmp_path / "data" / "run1" / "day1.fcs", 2_000, seed=31),
              _demo_fcs(tmp_path / "data" / "run2" / "day2.fcs", 2_000, seed=32),
              _demo_fcs(tmp_path / "other.fcs", 2_000, seed=33)]
    _run_shell(block, tmp_path)
    for path in inputs:
        for suffix in ("_labelled.csv", "_labelled.fcs", "_labelled.h5ad", "_legend.csv"):
            assert (tmp_path / "results" / f"{path.stem}{suffix}").is_file(), f"{path.stem}{suffix}"
    abundance = _rows(tmp_path / "results" / "abundance.csv")
    assert sorted({Path(f).name for f in abundance["file"]}) == sorted(p.name for p in inputs)
    assert {"drift", "drift_marker", "drift_flag", "mean_confidence"} <= set(abundance.columns)


def run_cli_large_study(block: Block, tmp_path: Path, monkeypatch) -> None:
    """ingest a folder of files into a workspace, then label-study every cell: exact counts and one FCS per sample."""
    _shipped_bundle(tmp_path)
    files = [_demo_fcs(tmp_path / "data" / "study7" / f"s{i}.fcs", 2_000, seed=40 + i) for i in (1, 2, 3)]
    _run_shell(block, tmp_path)
    counts = pd.read_csv(tmp_path / "results" / "abundance.csv", index_col="sample")
    assert counts.index.tolist() == [p.name for p in files]
    assert counts.sum(axis=1).tolist() == [2_000] * 3, "every cell of every sample counted once"
    for path in files:
        assert (tmp_path / "results" / f"{path.stem}_labelled.fcs").is_file(), f"{path.stem}_labelled.fcs"


def run_auth_toml(block: Block, tmp_path: Path, monkeypatch) -> None:
    """The [auth] example has exactly the keys of the section the browser sign-in test serves the app with, and the
    redirect address Streamlit accepts."""
    from oidc_provider import Provider

    example = tomllib.loads(block.code)
    tested = tomllib.loads(Provider(issuer="https://login.example").auth_secrets("http://localhost:8501"))
    assert list(example) == ["auth"] and set(example["auth"]) == set(tested["auth"])
    assert example["auth"]["redirect_uri"].endswith("/oauth2callback")
    assert example["auth"]["server_metadata_url"].endswith("/.well-known/openid-configuration")


def run_marker_table(block: Block, tmp_path: Path, monkeypatch) -> None:
    """The marker table reads as written (1 / -1 / blank), and every marker matches a channel of the demo."""
    from cytoauto_core.io.marker_table import match_markers, read_marker_table

    table = read_marker_table(block.code.encode(), "table.csv")
    header, *rows = list(csv.reader(io.StringIO(block.code)))
    assert table.markers == header[1:] and table.populations == [r[0] for r in rows]
    expected = [[{"1": 1, "-1": -1, "": 0}[v] for v in r[1:]] for r in rows]
    np.testing.assert_array_equal(table.values, expected)
    match = match_markers(table, make_demo(1_000, seed=0))
    assert [m for m, _ in match.pairs] == table.markers and not match.notes


def run_labels_csv(block: Block, tmp_path: Path, monkeypatch) -> None:
    """The labels CSV example labels the rows it names in the two files of the train example, as it names them."""
    from cytoauto_core.run.train_command import labels_from_csv

    files = [_demo_fcs(tmp_path / f"sample{i}.fcs", n, seed=i) for i, n in ((1, 3_000), (2, 2_000))]
    (tmp_path / "labels.csv").write_text(block.code)
    labels = labels_from_csv(tmp_path / "labels.csv", read_files(files))
    example = pd.read_csv(io.StringIO(block.code))
    assert labels.counts() == dict(Counter(example["population"]))
    named = {int(i): labels.names[int(labels.labels[i])] for i in example["cell_index"]}
    assert named == dict(zip(example["cell_index"], example["population"]))


def run_sample_table(block: Block, tmp_path: Path, monkeypatch) -> None:
    """The sample table names every sample of the demo study once, with its condition."""
    from cytoauto_core.study import samples

    study = make_demo_study(n_cells=1_000)
    table = samples.read_table(block.code.encode(), "samples.csv", [s.name for s in study])
    assert dict(zip(table["sample"], table["condition"])) == {s.name: s.condition for s in study}


RUNNERS: dict[str, Callable[[Block, Path, object], None]] = {
    "make": run_make,
    "python-api": run_python_api,
    "python-clustering": run_python_clustering,
    "python-batch": run_python_batch,
    "python-report": run_python_report,
    "cli-train": run_cli_train,
    "cli-train-wsp": run_cli_train_wsp,
    "cli-apply": run_cli_apply,
    "cli-large-study": run_cli_large_study,
    "auth-toml": run_auth_toml,
    "marker-table": run_marker_table,
    "labels-csv": run_labels_csv,
    "sample-table": run_sample_table,
}
LANGUAGE = {"make": "bash", "python-api": "python", "python-clustering": "python", "python-batch": "python",
            "python-report": "python", "cli-train": "bash", "cli-train-wsp": "bash", "cli-apply": "bash",
            "cli-large-study": "bash", "auth-toml": "toml", "marker-table": "csv", "labels-csv": "csv",
            "sample-table": "csv"}


def test_every_block_has_a_runner():
    assert BLOCKS, "no code blocks found"
    unhandled = [f"{b.where} ({b.lang or 'no language'})" for b in BLOCKS if b.key not in RUNNERS]
    assert not unhandled, ("these blocks are run by no test; put `<!-- test: NAME -->` on the line above each and add "
                           f"a runner NAME to tests/test_docs.py: {unhandled}")
    wrong = [f"{b.where}: {b.lang} block marked {b.key}" for b in BLOCKS if LANGUAGE.get(b.key) != b.lang]
    assert not wrong, wrong
    assert set(RUNNERS) == set(LANGUAGE)
    unused = set(RUNNERS) - {b.key for b in BLOCKS}
    assert not unused, f"runners whose block is gone from the docs: {sorted(unused)}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.key in RUNNERS], ids=lambda b: f"{b.where}:{b.key}")
def test_block_runs(block: Block, tmp_path, monkeypatch):
    RUNNERS[block.key](block, tmp_path, monkeypatch)


# ---------------------------------------------------------------- links

def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|!\[[^\]]*\]\([^)]*\)", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: Counter = Counter()
    anchors = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        heading = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = _slug(heading.group(1))
            anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return anchors


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(path: Path):
    broken = []
    for link in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)}: {broken}"


def test_docs_use_the_layered_module_paths():
    """Docs name modules by their layer (cytoauto_core.prep.transforms, not cytoauto_core.transforms)."""
    layers = {"base", "prep", "io", "tools", "store", "study", "run"}
    stale = []
    for path in DOCS:
        for name in re.findall(r"cytoauto_core[./]([a-z_]+)", path.read_text(encoding="utf-8")):
            if name not in layers and name not in {"__main__", "py"}:
                stale.append(f"{path.relative_to(ROOT)}: cytoauto_core.{name}")
    assert not stale, stale


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150
    assert lines[2:6] == ["```bash", lines[3], lines[4], "```"] and lines[3].startswith("make run") \
        and lines[4].startswith("make test"), "the README starts with the two commands"
    assert "## Dependencies and why" in lines
