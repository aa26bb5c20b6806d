"""Benchmark every input kind, real and hostile: seconds and peak memory while reading or refusing one file.

Each read runs in a fresh interpreter that first does its set-up (imports, the dataset a session or label file
belongs to), then resets its peak RSS (VmHWM, through /proc/self/clear_refs) and reads; the table gives the file's
bytes on disk, what it really holds in memory once read (events, labels, arrays; 0 when refused), the outcome, and
the peak RSS increase with its multiple of the file's bytes. The hostile files are small files that declare or
inflate to gigabytes, the HDF5 routes out of a file, and archive bombs.

Run: .venv/bin/python bench/input_memory.py [--cells 500000] [--seed 0]. Files go to bench/out/input_memory/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "input_memory"
SHARED = ROOT.parent / "shared" / "data"
MiB = 1 << 20

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
kind, path, extra = {kind!r}, {path!r}, {extra!r}
from cytoauto_core.base.errors import CytoInputError

def status_kb(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

if kind == "read_file":
    from cytoauto_core.io import read_file
    def run():
        return read_file(path).events.nbytes
elif kind == "wsp":
    import flowkit  # imported before the read: its import is not the read's memory
    from cytoauto_core.io.flowjo import workspace_labels
    def run():
        return workspace_labels(path, [extra]).labels.nbytes
elif kind == "sample_table":
    from cytoauto_core.study.samples import read_table
    data = open(path, "rb").read()
    samples = json.loads(extra)
    def run():
        return int(read_table(data, path.rsplit("/", 1)[-1], samples).memory_usage(deep=True).sum())
elif kind == "bundle":
    from cytoauto_core.tools.models.bundle import load_bundle
    def run():
        load_bundle(path)
        return sum(p.stat().st_size for p in __import__("pathlib").Path(path).iterdir())
elif kind == "session":
    import tempfile
    from cytoauto_core.io import read_file
    from cytoauto_core.store.session import import_session
    from cytoauto_core.store.workspace import Workspace
    ws = Workspace(tempfile.mkdtemp())
    key = ws.add_dataset(read_file(extra))
    assert key == json.load(zipfile_open := __import__("zipfile").ZipFile(path).open("session.json"))["dataset"]["key"]
    def run():
        import_session(ws, __import__("pathlib").Path(path), path.rsplit("/", 1)[-1])
        return sum(i.file_size for i in __import__("zipfile").ZipFile(path).infolist())
open("/proc/self/clear_refs", "w").write("5")
before = status_kb("VmRSS:")
t = time.perf_counter()
try:
    held, outcome = run(), "loaded"
except CytoInputError as exc:
    held, outcome = 0, "refused: " + str(exc)
seconds = time.perf_counter() - t
print(json.dumps({{"seconds": seconds, "peak": (status_kb("VmHWM:") - before) * 1024, "held": held,
                   "outcome": outcome}}))
"""


def measure(kind: str, path: Path, extra: str = "") -> dict:
    """Run one read in a fresh interpreter; its seconds, peak RSS increase (bytes), bytes held and outcome."""
    code = CHILD.format(root=str(ROOT), kind=kind, path=str(path), extra=extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        return {"seconds": float("nan"), "peak": 0, "held": 0, "outcome": f"FAILED: {out.stderr.strip()[-300:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the files

def real_files(cells: int, seed: int) -> list[tuple[str, str, Path, str]]:
    """(label, kind, path, extra) of real inputs: demo FCS/CSV/h5ad of `cells` cells, real FCS, FlowJo, a table."""
    from cytoauto_core.io import write_fcs
    from cytoauto_core.io.export import write_labelled_h5ad
    from cytoauto_core.prep.transforms import default_spec
    from cytoauto_core.study.demo import make_demo

    fcs, csv, h5ad = (OUT / f"demo_{cells}_seed{seed}.{ext}" for ext in ("fcs", "csv", "h5ad"))
    if not (fcs.exists() and csv.exists() and h5ad.exists()):
        ds = make_demo(cells, seed)
        write_fcs(fcs, ds)
        frame = ds.annotations.copy()
        for i, name in enumerate(ds.channel_names):
            frame[name] = ds.events[:, i]
        frame.to_csv(csv, index=False)
        write_labelled_h5ad(h5ad, ds, default_spec(ds), None)
    bal = SHARED / "devsuite" / "flowsom_mouse_bal_wsp"
    table = OUT / "samples.csv"
    table.write_text("sample,condition\n" + "".join(f"s{i},{'a' if i % 2 else 'b'}\n" for i in range(100)))
    return [
        (f"FCS, demo {cells:,} cells", "read_file", fcs, ""),
        (f"CSV, demo {cells:,} cells", "read_file", csv, ""),
        (f"h5ad, demo {cells:,} cells (app export)", "read_file", h5ad, ""),
        ("FCS, Levine_32dim_10k (CyTOF)", "read_file", SHARED / "levine32" / "Levine_32dim_10k.fcs", ""),
        ("FlowJo .wsp and the FCS it gates (mouse BAL)", "wsp", bal / "gating.wsp", str(bal / "68983.fcs")),
        ("sample table, 100 samples", "sample_table", table, json.dumps([f"s{i}" for i in range(100)])),
    ]


def _edited_copy(source: Path, name: str, edit) -> Path:
    path = OUT / name
    path.write_bytes(source.read_bytes())
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def hostile_files(small_export: Path) -> list[tuple[str, str, Path, str]]:
    """(label, kind, path, extra) of crafted inputs: HDF5 routes out of the file and files that declare gigabytes."""
    secret = OUT / "server_secret.toml"
    secret.write_bytes(b"cookie_secret = 'x'\n" * 400)

    def sparse_bomb(f):
        del f["layers/raw"]
        g = f.create_group("layers/raw")
        g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (10_000, 200_000)})
        g["data"], g["indices"], g["indptr"] = np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(10_001)

    def unwritten(f):
        width = f["layers/raw"].shape[1]
        del f["layers/raw"]
        f.create_dataset("layers/raw", shape=(50_000_000, width), dtype="<f4", chunks=(1 << 15, width))

    def external_storage(f):
        width = f["layers/raw"].shape[1]
        rows = secret.stat().st_size // (4 * width)
        del f["layers/raw"]
        f.create_dataset("layers/raw", shape=(rows, width), dtype="<f4", external=[(str(secret), 0, rows * width * 4)])

    def external_link(f):
        del f["layers/raw"]
        f["layers/raw"] = h5py.ExternalLink(str(secret), "/x")

    sparse = _edited_copy(small_export, "sparse_bomb.h5ad", sparse_bomb)
    return [
        ("h5ad, empty sparse 10,000 × 200,000 X", "read_file", sparse, ""),
        ("h5ad, unwritten 50 M-row X", "read_file", _edited_copy(small_export, "unwritten.h5ad", unwritten), ""),
        ("h5ad, X in external storage", "read_file", _edited_copy(small_export, "external.h5ad", external_storage), ""),
        ("h5ad, X an external link", "read_file", _edited_copy(small_export, "link.h5ad", external_link), ""),
        ("FCS, $PAR 50,000,000", "read_file", _fcs_par_bomb(), ""),
    ]


def _fcs_par_bomb() -> Path:
    """A 1 KB FCS file declaring fifty million channels."""
    text = "/$PAR/50000000/$TOT/1000000/$DATATYPE/F/$MODE/L/$BYTEORD/1,2,3,4/$NEXTDATA/0/"
    header = f"FCS3.1    {58:>8}{57 + len(text):>8}{58 + len(text):>8}{58 + len(text) + 999:>8}{0:>8}{0:>8}"
    path = OUT / "par_bomb.fcs"
    path.write_bytes(header.encode() + text.encode() + b"\0" * 1000)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    from cytoauto_core.io.export import write_labelled_h5ad
    from cytoauto_core.prep.transforms import default_spec
    from cytoauto_core.study.demo import make_demo

    small = make_demo(2_000, args.seed)
    small_export = write_labelled_h5ad(OUT / "small_export.h5ad", small, default_spec(small), None)
    real = real_files(args.cells, args.seed)
    rows = real + hostile_files(small_export) + archive_files(real[0][2])
    print(f"seed {args.seed}; peak = RSS increase while reading (VmHWM reset before the read)")
    print("| input | file MiB | held MiB | outcome | seconds | peak MiB | peak / max(file, held) |")
    print("|---|---|---|---|---|---|---|")
    for label, kind, path, extra in rows:
        r = measure(kind, path, extra)
        size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())
        size += Path(extra).stat().st_size if kind == "wsp" else 0  # the workspace and the FCS file it gates
        outcome = r["outcome"] if len(r["outcome"]) < 90 else r["outcome"][:89] + "…"
        print(f"| {label} | {size / MiB:.2f} | {r['held'] / MiB:.1f} | {outcome} | {r['seconds']:.2f} | "
              f"{r['peak'] / MiB:.0f} | {r['peak'] / max(size, r['held'], 1):.1f} |", flush=True)


def archive_files(demo_fcs: Path) -> list[tuple[str, str, Path, str]]:
    """Session zips and model bundles, real and bombs (built as tests/test_archive_bombs.py builds them)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import tempfile

    from test_archive_bombs import deflated_zeros, entry, npy_bytes, npy_header, raw_zip, resigned, stored

    from cytoauto_core.io import read_file
    from cytoauto_core.prep.transforms import TransformSpec
    from cytoauto_core.store.labels import LabelStore
    from cytoauto_core.store.session import export_session
    from cytoauto_core.store.workspace import Workspace
    from cytoauto_core.tools.models.baselines import LogisticRegressionModel
    from cytoauto_core.tools.models.bundle import ModelBundle, save_bundle

    ds = read_file(demo_fcs)
    ws = Workspace(Path(tempfile.mkdtemp()))
    key = ws.add_dataset(ds)
    store = LabelStore(ws.labels_dir(key), ds.n_cells)
    truth = ds.annotations["population"].to_numpy() if "population" in ds.annotations else None
    for name in sorted(set(truth))[:5] if truth is not None else []:
        store.assign(np.flatnonzero(truth == name)[:50], store.create_population(str(name)))
    ws.save_array(key, "umap", np.random.default_rng(0).normal(size=(ds.n_cells, 2)).astype(np.float32), {})
    session = OUT / "session.zip"
    session.write_bytes(export_session(ws, key, ds))

    manifest = {"format": 1, "dataset": {"key": key, "name": ds.name, "n_cells": ds.n_cells}, "settings": {},
                "populations": [], "arrays": {}, "clustering": None, "bundle": "b"}
    bomb = deflated_zeros(512 << 20)
    session_bomb = OUT / "session_bomb.zip"
    session_bomb.write_bytes(raw_zip(
        [stored("session.json", json.dumps(manifest).encode()),
         stored("labels.npy", npy_bytes(np.full(ds.n_cells, -1, np.int64)))]
        + [entry(f"bundle/part{i}.bin", bomb, declared=512 << 20, crc=0) for i in range(6)]))

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 8)).astype(np.float32), np.repeat(np.arange(3), 200)
    model = LogisticRegressionModel().fit(x + y[:, None], y, x)
    saved = OUT / "bundle_lr"
    if saved.exists():
        __import__("shutil").rmtree(saved)
    save_bundle(ModelBundle(model, TransformSpec(features=[f"CD{i}" for i in range(8)]), model.classes_.tolist(),
                            [f"pop{c}" for c in model.classes_]), str(saved))
    n = (3 << 30) // 8
    coef = entry("coef.npy", deflated_zeros(3 << 30, npy_header((n,))), declared=len(npy_header((n,))) + 8 * n, crc=0)
    with np.load(saved / "linear.npz") as z:
        rest = [stored(f"{k}.npy", npy_bytes(z[k])) for k in ("intercept", "classes")]
    bomb_folder = OUT / "bundle_bomb"
    if bomb_folder.exists():
        __import__("shutil").rmtree(bomb_folder)
    bomb_folder.mkdir()
    npz_bomb = resigned(saved, bomb_folder, {"linear.npz": raw_zip([coef] + rest)})
    return [
        (f"session zip, {ds.n_cells:,} cells, labels and a map", "session", session, str(demo_fcs)),
        ("session zip, six entries of 512 MB zeros", "session", session_bomb, str(demo_fcs)),
        ("model bundle, shipped demo VIME", "bundle", ROOT / "models" / "demo_bone_marrow_vime", ""),
        ("model bundle, linear.npz inflating to 3 GB", "bundle", npz_bomb, ""),
    ]


if __name__ == "__main__":
    main()
