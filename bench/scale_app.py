"""The app on a large study: seconds until each page has drawn, and the server's memory, in Chromium.

Inputs: the first --cells cells of bench/scale.py's demo files (500,000 cells each; run bench/scale.py first),
imported once with ingest into bench/out/scale/app_<cells>/workspace (kept between runs). The app is started on that
workspace; the first open of the study draws and stores its working sample (timed on its own), then every page is
opened by URL in turn, twice: 'first' includes what the page computes and caches on its first open (transform of
the working sample, statistics), 'again' is a later visit. A page counts as drawn at its last change once no script
run is in progress and nothing has changed for 3 s (see drawn). Server RSS is sampled every 20 ms.
Run: nice .venv/bin/python bench/scale_app.py --cells 50000000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from browser import chromium_page, streamlit_server, wait_for_app  # noqa: E402
from upload_memory import PeakSampler, rss_mb, server_pid  # noqa: E402

OUT = ROOT / "bench" / "out" / "scale"
PAGES = ["", "explore", "map", "cluster", "label", "train", "results", "compare"]


def study(cells: int, per_file: int = 500_000) -> tuple[Path, str]:
    """The workspace holding the study (imported once) and its key."""
    from cytoauto_core.store.workspace import Workspace
    from cytoauto_core.study.ingest import ingest

    files = sorted((OUT / f"files_{per_file}").glob("*.fcs"))[: cells // per_file]
    if len(files) < cells // per_file:
        raise SystemExit("run bench/scale.py with at least --cells first: it writes the files")
    workspace = Workspace(OUT / f"app_{cells}" / "workspace")
    records = [r for r in workspace.list_datasets() if r.n_cells > cells // 2]
    if records:
        return workspace.root, records[0].key
    started = time.perf_counter()
    key = ingest([str(f) for f in files], workspace).key
    print(f"imported {len(files)} files in {time.perf_counter() - started:.0f} s")
    return workspace.root, key


def drawn(page, quiet_s: float = 3.0, timeout_s: float = 300.0) -> float:
    """When the page last changed (perf_counter time): its elements polled every 0.1 s until, with no script run in
    progress, nothing has changed for `quiet_s` (a page may draw its content after the title)."""
    probe = """() => [document.querySelector('[data-testid="stStatusWidget"]') !== null,
        [...document.querySelectorAll('[data-testid="stMain"] [data-testid]')].map(e => e.dataset.testid).join()]"""
    last, changed, deadline = None, time.perf_counter(), time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        running, layout = page.evaluate(probe)
        now = time.perf_counter()
        if running or layout != last:
            last, changed = layout, now
        elif now - changed >= quiet_s:
            return changed
        time.sleep(0.1)
    raise TimeoutError("the page kept changing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=10_000_000)
    args = ap.parse_args()
    root, key = study(args.cells)
    from cytoauto_core.store.workspace import Workspace
    drawn_before = "working_sample" in (Workspace(root).load_settings(key) or {})
    rows = []
    with streamlit_server(root, root.parent / "server.log") as url, chromium_page() as page:
        pid = server_pid(url)
        for visit in ("first", "again"):
            for name in PAGES:
                with PeakSampler(pid) as peak:
                    started = time.perf_counter()
                    page.goto(f"{url}/{name}?dataset={key}")
                    wait_for_app(page, settle=0.3)
                    seconds = drawn(page) - started
                rows.append((name or "data", visit, seconds, peak.peak, rss_mb(pid)))
                print(f"  {name or 'data':<8} {visit:<5} {seconds:6.1f} s  server peak {peak.peak / 1024:5.2f} GB",
                      flush=True)
    print(f"\n{args.cells:,}-cell study; " + ("its working sample was stored by an earlier run" if drawn_before else
                                           "the first 'data' visit draws and stores its working sample"))
    print("| page | visit | seconds to drawn | server peak RSS (GB) | server RSS after (GB) |\n|---|---|---:|---:|---:|")
    for name, visit, seconds, peak, after in rows:
        print(f"| {name} | {visit} | {seconds:.1f} | {peak / 1024:.2f} | {after / 1024:.2f} |")


if __name__ == "__main__":
    main()
