"""Seeded fuzzing of the FCS and CSV readers with damaged and hostile versions of real files.

Every mutated file is read in a worker subprocess under an address-space limit, with a per-read time
limit enforced from outside. A read must end in one of four ways: a clean refusal (CytoInputError,
one line naming the file, no control bytes); events identical to the unmutated file's; a load that
carries a warning; or a load that differs only where the mutation itself changed what the file says
(a flipped DATA byte's cell, or the channel whose $PnG/$PnE/$PnR/$PnN or $TIMESTEP value was edited,
which no reader can tell from a real setting; a CSV cut at a line break, which is a shorter table).
Anything else (another exception class, a hang, running out of memory, a silent difference) fails.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest

import fuzzing
from fuzzing import CONTROL, run_jobs
from tests.conftest import CORPUS, LEVINE

pytestmark = pytest.mark.timed  # a read past fuzzing.READ_LIMIT_S counts as a hang
SEED = 14
FCS_SOURCES = [  # small real files covering F/I data, FCS 2.0/3.0/3.1, both byte orders, gains, log channels, spillover
    "flowkit_2d_01.fcs", "flowio_B01 KC-A-W---91-US.fcs", "flowkit_index_sorted.fcs",
    "flowio_variable_int.fcs", "flowio_data1.fcs", "flowio_G11.fcs", "flowio_3FITC_4PE_004.fcs",
    "flowkit_test_comp_example.fcs", "flowio_coulter_multidataset.lmd",
]
SPILL_SOURCES = {"flowio_B01 KC-A-W---91-US.fcs", "flowkit_index_sorted.fcs", "flowio_G11.fcs", "flowkit_test_comp_example.fcs"}
CSV_ROWS = 600
MUST_REFUSE = {"par+1", "par-1", "tot+1", "tot-1", "par-huge", "begindata-in-text-only", "enddata-far-only"}
SCALE_KEY = re.compile(r"^\$P(\d+)([GERN])$")


@dataclass
class Case:
    """One mutated file and what its mutation changed, so the verdict knows which differences are explained."""

    kind: str
    source: str
    blob: bytes
    cells: list[tuple[int, int]] = field(default_factory=list)  # (row, column) cells whose bytes were flipped
    channels: set[int] = field(default_factory=set)  # 0-based channels whose scale keywords changed
    prefix_ok: bool = False  # a CSV cut at a line break: a shorter table is the right reading


@dataclass
class Layout:
    """The parts of a real FCS file the mutations need: TEXT keywords in order, where TEXT and DATA are."""

    version: str
    delim: str
    pairs: list[tuple[str, str]]
    text_span: tuple[int, int]
    data_span: tuple[int, int]
    widths: list[int]


# ---------------------------------------------------------------- the test's own small FCS parser and writer

def parse_layout(blob: bytes) -> Layout | None:
    """HEADER offsets, TEXT pairs (doubled delimiters kept literal) and DATA span; None if it cannot be parsed."""
    try:
        header = blob[:58]
        ts, te, ds, de = (int(header[i:i + 8].strip() or b"0") for i in range(10, 42, 8))
        text = blob[ts:te + 1].decode("latin-1").rstrip("\x00 \r\n")
        delim = text[0]
        tokens = text[1:].replace(delim * 2, "\uffff").split(delim)
        tokens = [t.replace("\uffff", delim) for t in tokens]
        if tokens and tokens[-1] == "":
            tokens.pop()
        pairs = list(zip(tokens[::2], tokens[1::2]))
        kw = {k.strip().upper(): v for k, v in pairs}
        if ds == 0 and "$BEGINDATA" in kw:
            ds, de = int(kw["$BEGINDATA"]), int(kw["$ENDDATA"])
        n_par = int(kw["$PAR"])
        if kw.get("$DATATYPE", "").strip().upper() == "I":
            widths = [int(kw[f"$P{i}B"]) // 8 for i in range(1, n_par + 1)]
        else:
            widths = [4 if kw.get("$DATATYPE", "").strip().upper() == "F" else 8] * n_par
        return Layout(header[3:6].decode("latin-1"), delim, pairs, (ts, te), (ds, de), widths)
    except (ValueError, KeyError, IndexError):
        return None


def keywords(blob: bytes) -> dict[str, str] | None:
    """A file's TEXT keywords by upper-case name, or None when the (mutated) file has no parseable TEXT."""
    layout = parse_layout(blob)
    return None if layout is None else {k.strip().upper(): v for k, v in layout.pairs}


def rebuild(layout: Layout, data: bytes, edits: dict[str, str], header_data: tuple[int, int] | None = None) -> bytes:
    """A consistent FCS file from `layout`'s keywords with `edits` applied (offsets recomputed unless edited)."""
    pairs = [(k, v) for k, v in layout.pairs if k.strip().upper() not in ("$BEGINDATA", "$ENDDATA")]
    upper = {k.strip().upper(): i for i, (k, _) in enumerate(pairs)}
    for key, value in edits.items():
        if key in ("$BEGINDATA", "$ENDDATA"):
            continue
        if key in upper:
            pairs[upper[key]] = (pairs[upper[key]][0], value)
        else:
            pairs.append((key, value))
    d = layout.delim

    def text_for(begin: int, end: int) -> bytes:
        offs = [("$BEGINDATA", edits.get("$BEGINDATA", f"{begin:020d}")), ("$ENDDATA", edits.get("$ENDDATA", f"{end:020d}"))]
        body = "".join(f"{k.replace(d, d * 2)}{d}{v.replace(d, d * 2)}{d}" for k, v in offs + pairs)
        return (d + body).encode("latin-1")

    n_text = len(text_for(0, 0))
    begin, end = 58 + n_text, 58 + n_text + len(data) - 1
    text = text_for(begin, end)
    if len(text) != n_text:  # an edited offset of another width: lay out again around the real TEXT length
        n_text = len(text)
        begin, end = 58 + n_text, 58 + n_text + len(data) - 1
        text = text_for(begin, end)
    hb, he = header_data if header_data is not None else (begin, end)
    header = f"FCS{layout.version}    " + "".join(f"{v:>8}" for v in (58, 57 + n_text, hb, he, 0, 0))
    return header.encode("latin-1") + text + data


def changed_channels(original: dict[str, str], mutated: dict[str, str] | None, time_index: int | None) -> set[int]:
    """0-based channels whose $PnG/$PnE/$PnR/$PnN (or, for Time, $TIMESTEP) differ between two TEXTs."""
    if mutated is None:
        return set()
    out: set[int] = set()
    for key in set(original) | set(mutated):
        if original.get(key) == mutated.get(key):
            continue
        m = SCALE_KEY.match(key)
        if m:
            out.add(int(m.group(1)) - 1)
        elif key == "$TIMESTEP" and time_index is not None:
            out.add(time_index)
    return out


# ---------------------------------------------------------------- mutations

def fcs_cases(source: str, rng: np.random.Generator) -> list[Case]:
    """Byte flips in HEADER, TEXT and DATA, truncations and keyword edits of one real FCS file."""
    blob = (CORPUS / source).read_bytes()
    layout = parse_layout(blob)
    assert layout is not None, source
    kw = {k.strip().upper(): v for k, v in layout.pairs}
    n_par = len(layout.widths)
    names = [kw.get(f"$P{i}N", "") for i in range(1, n_par + 1)]
    time_index = next((j for j, n in enumerate(names) if n.lower() == "time"), None)
    (ts, te), (ds, de) = layout.text_span, layout.data_span
    row = sum(layout.widths)
    starts = np.cumsum([0] + layout.widths[:-1])
    data = blob[ds:de + 1]
    cases: list[Case] = []

    def flipped(positions: list[int]) -> bytes:
        out = bytearray(blob)
        for p in positions:
            out[p] ^= 1 << int(rng.integers(8))
        return bytes(out)

    for _ in range(30):
        mutated = flipped([int(rng.integers(0, 58))])
        cases.append(Case("header-flip", source, mutated, channels=changed_channels(kw, keywords(mutated), time_index)))
    for _ in range(80):  # one to three flipped bytes: a parity-preserving damage of TEXT too
        mutated = flipped([int(rng.integers(ts, te + 1)) for _ in range(int(rng.integers(1, 4)))])
        cases.append(Case("text-flip", source, mutated, channels=changed_channels(kw, keywords(mutated), time_index)))
    for _ in range(30):
        positions = sorted(int(p) for p in rng.integers(ds, ds + len(data), int(rng.integers(1, 4))))
        cells = []
        for p in positions:
            r, within = divmod(p - ds, row)
            cells.append((r, int(np.searchsorted(starts, within, side="right") - 1)))
        cases.append(Case("data-flip", source, flipped(positions), cells=cells))
    for cut in [*rng.integers(1, len(blob), 10), len(blob) - 1, ds + row // 2]:
        cases.append(Case("truncate", source, blob[:int(cut)]))

    tot, par = int(kw["$TOT"]), int(kw["$PAR"])
    dtype = kw.get("$DATATYPE", "").strip().upper()
    int_ch = int(rng.integers(1, n_par + 1))
    edits: list[tuple[str, dict[str, str], tuple[int, int] | None]] = [
        ("rebuilt-unchanged", {}, None),
        ("par+1", {"$PAR": str(par + 1)}, None), ("par-1", {"$PAR": str(par - 1)}, None),
        ("tot+1", {"$TOT": str(tot + 1)}, None), ("tot-1", {"$TOT": str(tot - 1)}, None),
        ("par-huge", {"$PAR": "50000000"}, None),
        ("begindata-in-text", {"$BEGINDATA": str(58 + 10)}, None),
        ("begindata-in-text-only", {"$BEGINDATA": str(58 + 10)}, (0, 0)),
        ("enddata-far", {"$ENDDATA": str(100 * 10**9)}, None),
        ("enddata-far-only", {"$ENDDATA": str(100 * 10**9)}, (0, 0)),
        *[(f"datatype-{t}", {"$DATATYPE": t}, None) for t in "FDIA" if t != dtype],
        ("pnr-nan", {f"$P{int_ch}R": "nan"}, None), ("pnr-inf", {f"$P{int_ch}R": "inf"}, None),
        ("pne-nan", {f"$P{int_ch}E": "nan,0"}, None), ("pne-inf", {f"$P{int_ch}E": "inf,1"}, None),
        ("png-nan", {f"$P{int_ch}G": "nan"}, None), ("png-inf", {f"$P{int_ch}G": "inf"}, None),
        ("png-zero", {f"$P{int_ch}G": "0"}, None), ("png-3", {f"$P{int_ch}G": "3"}, None),
        ("timestep-nan", {"$TIMESTEP": "nan"}, None),
    ]
    spill_key = next((k for k in ("$SPILLOVER", "SPILL", "$SPILL", "SPILLOVER", "$COMP") if k in kw), None)
    if spill_key:
        tokens = kw[spill_key].split(",")
        tokens[-1] = "nan"
        edits.append(("spillover-nan", {spill_key: ",".join(tokens)}, None))
    for kind, edit, header_data in edits:
        mutated = rebuild(layout, data, edit, header_data)
        cases.append(Case(kind, source, mutated, channels=changed_channels(kw, keywords(mutated), time_index)))
    return cases


def csv_cases(text: str, rng: np.random.Generator) -> list[Case]:
    """Non-numeric cells, invalid UTF-8, ragged rows, truncations, byte flips and an empty file, of a real table."""
    lines = text.splitlines(keepends=True)
    blob = text.encode()
    n_cols = lines[0].count(",") + 1
    cases: list[Case] = []
    for k in range(15):
        out = list(lines)
        i = int(rng.integers(1, len(lines)))
        cells = out[i].rstrip("\n").split(",")
        cells[int(rng.integers(0, 32))] = ["x", "n.d.", "1.2.3", "--", "#REF!"][k % 5]
        out[i] = ",".join(cells) + "\n"
        cases.append(Case("csv-bad-cell", "csv", "".join(out).encode()))
    for _ in range(15):
        p = int(rng.integers(0, len(blob)))
        cases.append(Case("csv-invalid-utf8", "csv", blob[:p] + bytes([int(rng.choice([0x80, 0xC3, 0xFF, 0xFE]))]) + blob[p:]))
    for k in range(10):
        out = list(lines)
        i = int(rng.integers(1, len(lines)))
        cells = out[i].rstrip("\n").split(",")
        cells = cells + ["1.5"] if k % 2 else cells[:-int(rng.integers(1, n_cols - 1))]
        out[i] = ",".join(cells) + "\n"
        cases.append(Case("csv-ragged", "csv", "".join(out).encode()))
    for cut in rng.integers(1, len(blob), 6):
        cases.append(Case("csv-truncate", "csv", blob[:int(cut)], prefix_ok=blob[int(cut) - 1:int(cut)] == b"\n"))
    line_end = blob.index(b"\n", len(blob) // 2) + 1
    cases.append(Case("csv-truncate", "csv", blob[:line_end], prefix_ok=True))
    for _ in range(60):
        out = bytearray(blob)
        p = int(rng.integers(0, len(out)))
        out[p] ^= 1 << int(rng.integers(8))
        line_start = blob.rfind(b"\n", 0, p) + 1
        cell = (blob.count(b"\n", 0, line_start) - 1, blob.count(b",", line_start, p))  # (data row, column)
        cases.append(Case("csv-flip", "csv", bytes(out), cells=[cell]))
    cases.append(Case("csv-empty", "csv", b""))
    cases.append(Case("csv-header-only", "csv", lines[0].encode()))
    return cases


# ---------------------------------------------------------------- the worker and its supervisor

WORKER = r'''
import sys
import numpy as np
from cytoauto_core.io import read_file
from tests.fuzzing import attempt_read, pending_jobs, report

originals = {}
for i, job in pending_jobs(sys.argv):
    src = job["original"]
    if src not in originals:
        o = read_file(src)
        originals[src] = (o.events, o.channel_names, {w.replace(o.name, "<file>") for w in o.warnings})
    events, names, known = originals[src]
    out, ds = attempt_read(job["path"])
    if ds is not None:
        e = ds.events
        new = [w for w in ds.warnings if w.replace(ds.name, "<file>") not in known]  # the original's own don't count
        out |= {"warnings": new, "spillover": ds.spillover is not None, "same_names": ds.channel_names == names,
               "same_shape": e.shape == events.shape, "identical": e.shape == events.shape and bool(np.array_equal(e, events))}
        if out["same_shape"] and not out["identical"]:
            diff = np.argwhere(e != events)
            out["cells"] = diff[:500].tolist()
            out["n_cells"] = int(len(diff))
            out["cols"] = sorted(set(diff[:, 1].tolist()))
        if e.shape[0] < events.shape[0] and e.shape[1] == events.shape[1] and e.shape[0] > 0:
            out["prefix"] = bool(np.array_equal(e, events[:e.shape[0]]))
    report(i, out)
'''


def verdict(case: Case, fname: str, result: dict) -> str:
    """The outcome class of one read (see the module docstring)."""
    status = result["status"]
    if status != "loaded":
        if status == "refused":
            msg = result["message"]
            clean = f"'{fname}'" in msg and msg.endswith(".") and not CONTROL.search(msg) and "Traceback" not in msg
            return "refused" if clean else "bad-message"
        return status
    if any(CONTROL.search(w) for w in result["warnings"]):
        return "bad-message"
    if case.kind in MUST_REFUSE:
        return "loaded-not-refused"
    if result["identical"]:
        return "identical"
    if result["warnings"]:
        return "warned"
    if result["same_shape"]:
        if set(result["cols"]) <= case.channels:
            return "explained"
        cells = {tuple(c) for c in result["cells"]}
        if result["n_cells"] == len(cells) and all(c in set(case.cells) or c[1] in case.channels for c in cells):
            return "explained"
    if case.prefix_ok and result.get("prefix"):
        return "explained"
    return "silent-difference"


def test_fuzz_readers_refuse_cleanly_or_load_faithfully(tmp_path):
    rng = np.random.default_rng(SEED)
    cases: list[Case] = []
    for source in FCS_SOURCES:
        cases += fcs_cases(source, rng)
    csv_source = tmp_path / "levine_head.csv"
    csv_text = "".join((LEVINE / "Levine_32dim_labeled30k_arcsinh.csv").read_text().splitlines(keepends=True)[:CSV_ROWS + 1])
    csv_source.write_text(csv_text)
    cases += csv_cases(csv_text, rng)

    jobs, fnames = [], []
    for i, case in enumerate(cases):
        fname = f"case{i:04d}_{case.kind}.{'csv' if case.source == 'csv' else 'fcs'}"
        (tmp_path / fname).write_bytes(case.blob)
        jobs.append({"path": str(tmp_path / fname), "original": str(csv_source if case.source == "csv" else CORPUS / case.source)})
        fnames.append(fname)
    t0 = time.monotonic()
    results = run_jobs(jobs, tmp_path / "jobs.json", WORKER)
    elapsed = time.monotonic() - t0

    outcomes = [verdict(c, f, results[i]) for i, (c, f) in enumerate(zip(cases, fnames))]
    counts = Counter(outcomes)
    print(f"\nfuzz: {len(cases)} mutations in {elapsed:.0f} s: {counts['refused']} clean refusals, "
          f"{counts['identical']} loaded identical, {counts['warned']} loaded with a warning, "
          f"{counts['explained']} loaded differing only where the mutation changed the file's values or scales, "
          f"{counts['traceback'] + counts['crash']} tracebacks, {counts['hang']} hangs, {counts['oom']} out of memory, "
          f"{counts['silent-difference']} silent differences, {counts['bad-message']} unclean messages, "
          f"{counts['loaded-not-refused']} inconsistent layouts loaded")
    by_kind = Counter((c.kind.split("-")[0] if c.source != "csv" else c.kind, o) for c, o in zip(cases, outcomes))
    print("by kind:", dict(sorted(by_kind.items())))
    failures = [(fnames[i], o, results[i]) for i, o in enumerate(outcomes)
                if o not in ("refused", "identical", "warned", "explained")]
    assert not failures, "\n".join(f"{f}: {o}: {json.dumps(r)[:600]}" for f, o, r in failures[:20])
    assert len(cases) >= 400

    by_case = dict(zip(fnames, zip(cases, outcomes, (results[i] for i in range(len(cases))))))
    for fname, (case, outcome, result) in by_case.items():
        if case.kind == "rebuilt-unchanged":  # the test's own rebuilding must not change what a file says
            assert outcome == "identical" and result["warnings"] == [], fname
        if case.kind == "csv-bad-cell":  # the issue's bug: a damaged cell must not drop the channel
            assert outcome == "warned" and result["same_names"], fname
        if case.kind == "csv-invalid-utf8":
            assert outcome == "refused" and "is not UTF-8 text: line" in result["message"], fname
        if case.kind == "spillover-nan":  # never a NaN matrix; a file whose matrix loaded before must say why not now
            assert result["status"] == "loaded" and not result["spillover"], fname
            assert result["warnings"] or case.source not in SPILL_SOURCES, fname
    assert counts["refused"] >= 300 and counts["identical"] >= 300 and counts["warned"] >= 100


STUB_WORKER = r'''
import json, os, sys, time
import numpy as np
jobs = json.load(open(sys.argv[1]))
for i, job in enumerate(jobs):
    if i < int(sys.argv[2]):
        continue
    print("S", i, flush=True)
    if job["path"] == "hang":
        time.sleep(60)
    if job["path"] == "die":
        os.kill(os.getpid(), 9)
    try:
        np.ones((8 << 30) if job["path"] == "grow" else 1, np.uint8)
        out = {"status": "refused", "message": "ok"}
    except MemoryError:
        out = {"status": "oom"}
    print("R", i, json.dumps(out), flush=True)
'''


def test_fuzz_supervisor_catches_hangs_and_memory_blowups(tmp_path, monkeypatch):
    """The fuzz test's own machinery: a read that hangs, one that needs 8 GB and a killed worker are all caught."""
    monkeypatch.setattr(fuzzing, "READ_LIMIT_S", 2)
    jobs = [{"path": p, "original": ""} for p in ("a", "hang", "b", "grow", "die", "c")]
    got = {i: r["status"] for i, r in run_jobs(jobs, tmp_path / "jobs.json", STUB_WORKER).items()}
    assert got == {0: "refused", 1: "hang", 2: "refused", 3: "oom", 4: "oom", 5: "refused"}
