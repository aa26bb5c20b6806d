"""Seeded fuzzing of the .h5ad reader with damaged and hostile versions of real exports.

Sources: the app's own exports of real flow and mass cytometry files (spillover, samples, annotations, results, maps)
and a scanpy-style file (X only, categorical, nullable and text obs columns), dense and sparse. Mutations: byte flips
in the data of the arrays the reader uses and anywhere else in the file, truncations, and edits an attacker or a
broken tool would make (shapes, types, NaN, sparse parts, spillover, channel table, categorical codes, bombs and the
HDF5 routes out of the file). Every read parses the file as read_h5ad's child process does (read_contained under
h5ad_worker.capped, in the same process: a process per read would cost 0.6 s each; tests/test_h5ad_hostile.py reads
through that child) in a worker under an address-space limit and a time limit
(tests/fuzzing.py), and must end in one of four ways: a clean refusal (one line naming the file); the same cells as
the source; a load that carries a warning; or a load equal to what anndata itself reads from the mutated bytes, or
differing from the source only in the cells whose bytes were flipped. Anything else (another exception, a hang,
running out of memory, peak memory beyond the reader's stated bound, a silent difference) fails.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd

from conftest import CORPUS, LEVINE
from cytoauto_core.base.dataset import Dataset
from cytoauto_core.base.labelled import LabelledCells
from cytoauto_core.io import read_file
from cytoauto_core.io.export import write_labelled_h5ad
from cytoauto_core.io.h5ad_reader import allowance
from cytoauto_core.prep.transforms import default_spec
from cytoauto_core.study.demo import make_demo
from fuzzing import CONTROL, run_jobs

# Not marked timed: a read past fuzzing.READ_LIMIT_S (20 s) counts as a hang, and every read here takes well under a
# second even beside the other test worker, so it runs in the parallel phase.
SEED = 31
CELLS = 1500
FLIPS = 30
MiB = 1 << 20


@dataclass
class Case:
    """One mutated file, what must happen to it, and the (row, field) cells whose stored bytes were flipped."""

    kind: str
    source: str
    blob: bytes
    expect: str = "any"  # "refuse": must be refused; "same": must load the source's cells; "any": any clean outcome
    cells: list[tuple[int, str]] = field(default_factory=list)


# ---------------------------------------------------------------- sources

def _head(ds: Dataset, n: int) -> Dataset:
    """The first `n` cells of a dataset (every sample kept as a name)."""
    return Dataset(events=ds.events[:n], channels=ds.channels, samples=ds.samples, sample_ids=ds.sample_ids[:n],
                   annotations=ds.annotations.iloc[:n].reset_index(drop=True), spillover=ds.spillover,
                   metadata=ds.metadata, name=ds.name)


def sources(folder: Path, rng: np.random.Generator) -> dict[str, Path]:
    """Real exports written by the app, and a scanpy-style file dense and sparse."""
    out: dict[str, Path] = {}
    flow = _head(read_file(CORPUS / "flowkit_test_comp_example.fcs"), CELLS)
    out["flow"] = write_labelled_h5ad(folder / "flow.h5ad", flow, default_spec(flow), None)
    mass = _head(read_file(LEVINE / "Levine_32dim_10k.fcs"), CELLS)
    ids = rng.integers(-2, 4, CELLS)
    cells = LabelledCells(ids, {0: "T cells", 1: "B cells", 2: "NK cells", 3: "Monocytes"},
                          rng.random(CELLS).astype(np.float32), novelty=rng.random(CELLS).astype(np.float32))
    out["mass"] = write_labelled_h5ad(folder / "mass.h5ad", mass, default_spec(mass), cells,
                                      maps={"X_umap": rng.normal(size=(CELLS, 2)).astype(np.float32)},
                                      provenance={"model": "VIME", "seed": 0})
    demo = make_demo(CELLS, seed=3)
    out["demo"] = write_labelled_h5ad(folder / "demo.h5ad", demo, default_spec(demo), None)
    x = np.abs(rng.normal(size=(CELLS, 6))).astype(np.float32)
    x[x < 0.8] = 0
    with pd.option_context("future.infer_string", False):
        obs = pd.DataFrame({
            "leiden": pd.Categorical(rng.integers(0, 4, CELLS).astype(str)),
            "n_counts": rng.integers(0, 50, CELLS).astype(np.float64),
            "donor": pd.array(np.where(rng.random(CELLS) < 0.1, None, "d1"), dtype=object),
            "batch": pd.array(rng.integers(0, 3, CELLS), dtype="Int64"),
            "passed_qc": rng.random(CELLS) < 0.9,
        }, index=pd.Index([f"cell{i}" for i in range(CELLS)], dtype=object))
        obs["donor"] = obs["donor"].fillna("unknown").astype(object)
        var = pd.DataFrame(index=pd.Index(["CD3", "CD4", "CD8", "CD19", "CD14", "CD56"], dtype=object))
        for name, matrix in (("scanpy", x), ("sparse", None)):
            import scipy.sparse
            adata = anndata.AnnData(scipy.sparse.csr_matrix(x) if matrix is None else matrix, obs=obs, var=var)
            adata.write_h5ad(folder / f"{name}.h5ad")
            out[name] = folder / f"{name}.h5ad"
    return out


# ---------------------------------------------------------------- mutations

Region = tuple[int, int, object]  # (file offset, size in bytes, element's byte offset → the (row, field) it holds)


def _regions(path: Path) -> list[Region]:
    """Where the data of every contiguous, unfiltered numeric dataset lies in the file, and which cell each of its
    bytes belongs to: a matrix column by its channel (dense, or through a sparse matrix's indices), an obs column
    (or its codes, values or mask) or an obsm frame's column by its name, anything else by its own path."""
    found: list[Region] = []
    with h5py.File(path, "r") as f:
        names = _var_names(f)

        def visit(key: str, obj) -> None:
            if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "iufb" or obj.id.get_offset() is None:
                return
            item, parts = obj.dtype.itemsize, key.split("/")
            if key in ("X", "layers/raw"):
                width = obj.shape[1]
                where = lambda b: (b // item // width, names[b // item % width])  # noqa: E731
            elif parts[-1] == "data" and "/".join(parts[:-1]) in ("X", "layers/raw"):
                indptr, indices = obj.parent["indptr"][:], obj.parent["indices"][:]
                where = lambda b: (int(np.searchsorted(indptr, b // item, "right")) - 1,  # noqa: E731
                                   names[int(indices[b // item])])
            elif parts[0] in ("obs", "obsm") and len(parts) >= 2 and obj.ndim == 1:
                column = parts[-1] if parts[0] == "obsm" else parts[1]
                where = lambda b: (b // item, column)  # noqa: E731
            else:
                where = lambda b: (b // item, key)  # noqa: E731
            found.append((obj.id.get_offset(), obj.id.get_storage_size(), where))
        f.visititems(visit)
    return found


def _var_names(f: h5py.File) -> list[str]:
    var = f["var"]
    key = "channel" if "channel" in var else var.attrs.get("_index", "_index")
    return [str(v) for v in var[key].asstr()[:]]


def flip_cases(source: str, path: Path, rng: np.random.Generator) -> list[Case]:
    """Byte flips in the arrays' data (the flipped cells are known) and anywhere in the file, and truncations."""
    blob = path.read_bytes()
    regions = [r for r in _regions(path) if r[1] > 0]
    cases = []

    def flipped(positions: list[int]) -> bytes:
        out = bytearray(blob)
        for p in positions:
            out[p] ^= 1 << int(rng.integers(8))
        return bytes(out)

    def cells_at(positions: list[int]) -> list[tuple[int, str]]:
        return [where(p - offset) for p in positions for offset, size, where in regions if offset <= p < offset + size]

    for _ in range(FLIPS):  # inside the arrays' data: each flipped byte changes one known cell
        offset, size, _ = regions[int(rng.integers(len(regions)))]
        positions = [offset + int(w) for w in rng.integers(0, size, int(rng.integers(1, 4)))]
        cases.append(Case("data-flip", source, flipped(positions), cells=cells_at(positions)))
    for _ in range(FLIPS):  # anywhere: headers, B-trees, heaps, attributes, and data too
        positions = [int(rng.integers(0, len(blob))) for _ in range(int(rng.integers(1, 4)))]
        cases.append(Case("any-flip", source, flipped(positions), cells=cells_at(positions)))
    for cut in [*rng.integers(1, len(blob), 6), len(blob) - 1, 512]:
        cases.append(Case("truncate", source, blob[:int(cut)], expect="refuse"))
    return cases


def _with(blob: bytes, folder: Path, edit) -> bytes:
    """`blob` with `edit(h5py.File, folder)` applied (folder: where a route out of the file may point)."""
    path = folder / "edit.h5ad"
    path.write_bytes(blob)
    with h5py.File(path, "a") as f:
        edit(f, folder)
    return path.read_bytes()


def _matrix_key(f: h5py.File) -> str:
    return "layers/raw" if "layers/raw" in f else "X"


def _rewrite(f: h5py.File, key: str, data=None, **kwargs) -> None:
    attrs = dict(f[key].attrs)
    del f[key]
    f.create_dataset(key, data=data, **kwargs).attrs.update(attrs)


def edits(f_kind: str) -> list[tuple[str, str, object]]:
    """(kind, expectation, edit) of the structural mutations; f_kind 'sparse' for sources whose X is sparse."""
    def matrix(f):
        return f[_matrix_key(f)]

    def dense_only(edit):
        return None if f_kind == "sparse" else edit

    def sparse_only(edit):
        return edit if f_kind == "sparse" else None

    def sparse_part(part, fn):
        def edit(f, folder):
            g = matrix(f)
            values = fn(g[part][:])
            del g[part]
            g[part] = values
        return edit

    def replaced(fn, **kwargs):  # the dense matrix rewritten as fn(its values), with h5py's create_dataset `kwargs`
        return dense_only(lambda f, d: _rewrite(f, _matrix_key(f), fn(matrix(f)[:]), **kwargs))

    def huge_row(values):
        return np.where(np.arange(len(values))[:, None] == 5, 1e300, values.astype(np.float64))

    def unwritten(f, folder):
        width = matrix(f).shape[1]
        _rewrite(f, _matrix_key(f), shape=(40_000_000, width), dtype="<f4", chunks=(1 << 15, width))

    out = [
        ("rewritten-gzip", "same", replaced(lambda m: m, compression="gzip")),
        ("float64", "same", replaced(lambda m: m.astype(np.float64))),
        ("as-csr", "same", dense_only(_as_sparse("csr"))),
        ("as-csc", "same", dense_only(_as_sparse("csc"))),
        ("nan-cells", "any", dense_only(lambda f, d: matrix(f).__setitem__((slice(3, 9), 1), np.nan))),
        ("huge-float64", "any", replaced(huge_row)),
        ("text-matrix", "refuse", replaced(lambda m: np.full(m.shape, b"1.5"))),
        ("one-dimensional", "refuse", replaced(np.ravel)),
        ("extra-row", "refuse", replaced(lambda m: np.vstack([m, m[:1]]))),
        ("extra-column", "refuse", replaced(lambda m: np.hstack([m, m[:, :1]]))),
        ("unwritten-huge", "refuse", dense_only(unwritten)),
        ("sparse-bomb", "refuse", _sparse_bomb),
        ("indptr-decreasing", "refuse", sparse_only(sparse_part("indptr", lambda v: v[::-1].copy()))),
        ("indices-outside", "refuse", sparse_only(sparse_part("indices", lambda v: v + 1000))),
        ("data-short", "refuse", sparse_only(sparse_part("data", lambda v: v[:-3]))),
        ("sparse-shape-huge", "refuse", sparse_only(lambda f, d: matrix(f).attrs.__setitem__("shape", (10**9, 10**6)))),
        ("encoding-junk", "refuse", lambda f, d: f["obs"].attrs.__setitem__("encoding-type", "dataframe-v99")),
        ("obs-missing", "refuse", lambda f, d: f.__delitem__("obs")),
        ("var-missing", "refuse", lambda f, d: f.__delitem__("var")),
        ("obs-index-short", "refuse", lambda f, d: _rewrite(f, f"obs/{f['obs'].attrs['_index']}",
                                                         f[f"obs/{f['obs'].attrs['_index']}"][:-1])),
        ("categorical-codes-outside", "any", _first_categorical(lambda codes: codes + 100)),
        ("categorical-codes-missing", "any",
         _first_categorical(lambda codes: np.where(np.arange(len(codes)) % 7 == 0, -1, codes))),
        ("column-short", "any", _first_numeric_obs(lambda v: v[:-1])),
        ("column-text", "any", _first_numeric_obs(lambda v: np.full(len(v), b"x"))),
        ("spillover-nan", "any", _spill(lambda m: np.where(np.eye(len(m), dtype=bool), np.nan, m))),
        ("spillover-row", "any", _spill(lambda m: np.vstack([m, m[:1]]))),
        ("spillover-singular", "any", _spill(lambda m: np.zeros_like(m))),
        ("channel-table-short", "any", _channel_table(lambda v: v[:-1])),
        ("external-storage", "refuse", dense_only(_external_storage)),
        ("external-link", "refuse", lambda f, d: _replace_by_link(f, h5py.ExternalLink(str(d / "other.h5"), "/x"))),
        ("soft-link", "refuse", lambda f, d: _replace_by_link(f, h5py.SoftLink("/var"))),
        ("virtual-dataset", "refuse", dense_only(_virtual)),
        ("hard-link-loop", "refuse", lambda f, d: f["uns"].__setitem__("loop", f["uns"])),
    ]
    return [(kind, expect, edit) for kind, expect, edit in out if edit is not None]


def _as_sparse(fmt: str):
    def edit(f, folder):
        import scipy.sparse
        key = _matrix_key(f)
        values = f[key][:]
        del f[key]
        m = scipy.sparse.csr_matrix(values) if fmt == "csr" else scipy.sparse.csc_matrix(values)
        g = f.create_group(key)
        g.attrs.update({"encoding-type": f"{fmt}_matrix", "encoding-version": "0.1.0", "shape": values.shape})
        g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr
    return edit


def _sparse_bomb(f, folder):
    key = _matrix_key(f)
    del f[key]
    g = f.create_group(key)
    g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (10_000, 200_000)})
    g["data"], g["indices"], g["indptr"] = np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(10_001, np.int64)


def _first_categorical(fn):
    def edit(f, folder):
        for key, node in f["obs"].items():
            if isinstance(node, h5py.Group) and "codes" in node:
                codes = node["codes"][:].astype(np.int64)
                del node["codes"]
                node["codes"] = fn(codes).astype(np.int64)
                return
    return edit


def _first_numeric_obs(fn):
    def edit(f, folder):
        for key, node in f["obs"].items():
            if isinstance(node, h5py.Dataset) and node.dtype.kind == "f":
                _rewrite(f, f"obs/{key}", fn(node[:]))
                return
    return edit


def _spill(fn):
    def edit(f, folder):
        if "uns/spillover" in f:
            _rewrite(f, "uns/spillover/matrix", fn(f["uns/spillover/matrix"][:]))
    return edit


def _channel_table(fn):
    def edit(f, folder):
        if "uns/channels/kind" in f:
            _rewrite(f, "uns/channels/kind", fn(f["uns/channels/kind"][:]), dtype=h5py.string_dtype())
    return edit


def _external_storage(f, folder):
    key = _matrix_key(f)
    target = folder / "secret.bin"
    target.write_bytes(b"\x01" * (f[key].size * 4))
    attrs, shape = dict(f[key].attrs), f[key].shape
    del f[key]
    external = [(str(target), 0, int(np.prod(shape)) * 4)]
    f.create_dataset(key, shape=shape, dtype="<f4", external=external).attrs.update(attrs)


def _replace_by_link(f, link):
    key = _matrix_key(f)
    del f[key]
    f[key] = link


def _virtual(f, folder):
    key = _matrix_key(f)
    shape = f[key].shape
    with h5py.File(folder / "other.h5", "w") as g:
        g["x"] = np.ones(shape, np.float32)
    layout = h5py.VirtualLayout(shape=shape, dtype="<f4")
    layout[:] = h5py.VirtualSource(str(folder / "other.h5"), "x", shape=shape)
    del f[key]
    f.create_virtual_dataset(key, layout)


# ---------------------------------------------------------------- the worker and the verdict

WORKER = r'''
import sys, warnings
from pathlib import Path
import numpy as np
warnings.filterwarnings("ignore")
from cytoauto_core.io import read_file
from cytoauto_core.io.h5ad_reader import allowance, read_contained
from cytoauto_core.io.h5ad_worker import capped
from tests.fuzzing import attempt_read, pending_jobs, report

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False

def cells(ds):
    """Every cell's values by field: channels by name, the sample and each annotation column."""
    out = {name: ds.events[:, j] for j, name in enumerate(ds.channel_names)}
    out["sample"] = np.asarray([s.replace(ds.name, "<file>") for s in ds.samples], object)[ds.sample_ids]
    for c in ds.annotations.columns:
        out[str(c)] = ds.annotations[c].astype(str).to_numpy(object)
    return out

def oracle(path):
    """What anndata itself reads from the file, as the same fields (None when anndata cannot read it)."""
    import anndata, pandas as pd
    try:
        a = anndata.read_h5ad(path)
        m = a.layers["raw"] if "raw" in a.layers else a.X
        m = np.asarray(m.toarray() if hasattr(m, "toarray") else m, np.float32)
        names = [str(v) for v in (a.var["channel"] if "channel" in a.var else a.var.index)]
        out = {n: m[:, j] for j, n in enumerate(names)}
        other = a.obsm.get("other_channels")
        if isinstance(other, pd.DataFrame):
            out.update({str(c): other[c].to_numpy(np.float32) for c in other.columns})
        obs = a.obs.drop(columns=[c for c in ("event_id", "population_id", "confidence", "novelty") if c in a.obs]
                         ) if "cytoauto" in a.uns else a.obs
        if "sample" not in obs:  # a file without samples is one sample, named after the file
            out["sample"] = np.full(a.n_obs, "<file>", object)
        for c in obs.columns:
            col = obs[c]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) and c != "sample":
                out[str(c)] = col.to_numpy(np.float32, na_value=np.nan)
            else:
                out[str(c)] = col.astype(object).where(col.notna(), "").astype(str).to_numpy(object)
        return out
    except Exception:
        return None

def differences(got, want, keys):
    diff = []
    for k in keys:
        a, b = got[k], want[k]
        if a.dtype.kind == "f":
            bad = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
        else:
            bad = np.flatnonzero(a != b)
        diff += [(int(r), k) for r in bad[:200]]
    return diff

originals = {}
for i, job in pending_jobs(sys.argv):
    src = job["original"]
    if src not in originals:
        o = read_file(src)
        originals[src] = (cells(o), o.n_cells, {w.replace(o.name, "<file>") for w in o.warnings})
    want, n, known = originals[src]
    measured = reset_peak()
    before = rss("VmRSS:")
    path = Path(job["path"])
    with capped(allowance(path.stat().st_size)):  # as read_h5ad's worker process is
        out, ds = attempt_read(path, lambda p: read_contained(p, p.name))
    if ds is not None:
        got = cells(ds)
        new = [w for w in ds.warnings if w.replace(ds.name, "<file>") not in known]
        out |= {"warnings": new, "same_fields": sorted(got) == sorted(want), "rows": ds.n_cells,
               "spillover": ds.spillover is not None}
        if out["same_fields"] and ds.n_cells == n:
            out["diff"] = differences(got, want, sorted(got))
        out["peak_extra"] = rss("VmHWM:") - before if measured else None
        seen = oracle(job["path"])
        if seen is not None and sorted(seen) == sorted(got) and all(len(v) == ds.n_cells for v in seen.values()):
            out["oracle_diff"] = differences(got, seen, sorted(got))
    out.setdefault("peak_extra", rss("VmHWM:") - before if measured else None)
    report(i, out)
'''


def allowed_peak(size: int) -> int:
    """The reader's stated bound: what a file may ask for (EXPANSION × its size, at least FLOOR_BYTES), read once
    into the events and once in transit, plus the interpreter's own working memory."""
    return 2 * allowance(size) + 64 * MiB


def verdict(case: Case, fname: str, result: dict) -> str:
    """The outcome class of one read (see the module docstring)."""
    status = result["status"]
    if result.get("peak_extra") is not None and result["peak_extra"] > allowed_peak(len(case.blob)):
        return "memory-blow-up"
    if status != "loaded":
        if status == "refused":
            msg = result["message"]
            clean = msg.startswith(f"'{fname}'") and msg.endswith(".") and not CONTROL.search(msg) and len(msg) < 400
            return "refused" if clean else "bad-message"
        return status
    if any(CONTROL.search(w) for w in result["warnings"]):
        return "bad-message"
    if case.expect == "refuse":
        return "loaded-not-refused"
    if result.get("diff") == []:
        return "identical"
    if case.expect == "same":
        return "not-the-same"
    if result["warnings"]:
        return "warned"
    if result.get("oracle_diff") == []:
        return "as-anndata-reads-it"
    if result.get("diff") is not None and {tuple(c) for c in result["diff"]} <= set(case.cells):
        return "explained"
    return "silent-difference"


def test_fuzz_h5ad_refuses_cleanly_or_loads_faithfully(tmp_path):
    rng = np.random.default_rng(SEED)
    folder = tmp_path / "sources"
    folder.mkdir()
    cases: list[Case] = []
    originals: dict[str, Path] = sources(folder, rng)
    for source, path in originals.items():
        cases += flip_cases(source, path, rng)
        blob = path.read_bytes()
        for kind, expect, edit in edits("sparse" if source == "sparse" else "dense"):
            routes = tmp_path / f"routes-{source}-{kind}"
            routes.mkdir()
            cases.append(Case(kind, source, _with(blob, routes, edit), expect=expect))

    jobs, fnames = [], []
    for i, case in enumerate(cases):
        fname = f"case{i:04d}_{case.kind}.h5ad"
        path = tmp_path / "cases" / f"{i:04d}" / fname  # a folder each: routes out of a file point beside it
        path.parent.mkdir(parents=True)
        path.write_bytes(case.blob)
        jobs.append({"path": str(path), "original": str(originals[case.source])})
        fnames.append(fname)
    t0 = time.monotonic()
    results = run_jobs(jobs, tmp_path / "jobs.json", WORKER)
    elapsed = time.monotonic() - t0

    outcomes = [verdict(c, f, results[i]) for i, (c, f) in enumerate(zip(cases, fnames))]
    counts = Counter(outcomes)
    peaks = [r["peak_extra"] for r in results.values() if r.get("peak_extra") is not None]
    print(f"\nh5ad fuzz: {len(cases)} mutations in {elapsed:.0f} s: " + ", ".join(
        f"{counts[k]} {k}" for k in ("refused", "identical", "warned", "as-anndata-reads-it", "explained")) +
        f"; {sum(counts[k] for k in ('traceback', 'crash'))} tracebacks, {counts['hang']} hangs, "
        f"{counts['oom'] + counts['memory-blow-up']} memory blow-ups, "
        f"{counts['silent-difference'] + counts['not-the-same'] + counts['loaded-not-refused']} silent damage, "
        f"{counts['bad-message']} unclean messages; peak extra memory per read {max(peaks, default=0) / MiB:.0f} MiB")
    print("by kind:", dict(sorted(Counter((c.kind, o) for c, o in zip(cases, outcomes)).items())))
    good = ("refused", "identical", "warned", "as-anndata-reads-it", "explained")
    failures = [(fnames[i], o, results[i]) for i, o in enumerate(outcomes) if o not in good]
    assert not failures, "\n".join(f"{f}: {o}: {json.dumps(r)[:600]}" for f, o, r in failures[:20])
    assert len(cases) >= 400 and counts["refused"] >= 100 and counts["identical"] >= 100
    by_kind = {c.kind: o for c, o in zip(cases, outcomes)}
    assert all(by_kind[k] == "refused" for k in ("external-storage", "external-link", "virtual-dataset", "sparse-bomb"))
    for case, outcome, result in zip(cases, outcomes, (results[i] for i in range(len(cases)))):
        if case.kind.startswith("spillover-") and case.source == "flow":  # never a broken matrix, never silently
            assert result["status"] == "loaded" and not result["spillover"], case.kind
            assert any("spillover matrix" in w for w in result["warnings"]), case.kind
