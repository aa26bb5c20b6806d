"""Server memory of a browser upload: the Streamlit server's RSS while Chromium uploads a file on the Data page, while
it holds it, while "Load files" reads it, and after.

Usage: nice python bench/upload_memory.py [--sizes 300 1000] [--kind refused|fcs]
Data: a generated file of each size (MB): `refused` is random bytes named .fcs (the page refuses it: the uploader's
own memory, no dataset made), `fcs` a valid FCS 3.1 file of random events (32 float32 channels) that loads.
Each size runs on a fresh server (`streamlit run app.py`, as tests/browser.py starts it) so peaks do not carry over.
Columns: the server's resident memory (VmRSS, MiB) at rest once its warm-up has ended, its peak while uploading, at
rest with the upload held, its peak while "Load files" runs, at rest after; in brackets the anonymous part (RssAnon:
without the pages of memory-mapped files such as a stored dataset's events, which the kernel can drop).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import chromium_page, streamlit_server, upload_files, wait_for_app  # noqa: E402

MB = 1024 * 1024
CHANNELS = 32


def make_file(folder: Path, size_mb: int, kind: str) -> Path:
    """A file of about `size_mb` MB: random bytes named .fcs (refused on load) or a valid FCS file."""
    path = folder / f"upload_{size_mb}mb_{kind}.fcs"
    if kind == "refused":
        rng, chunk = np.random.default_rng(0), 16 * MB
        with open(path, "wb") as out:
            for start in range(0, size_mb * MB, chunk):
                out.write(rng.bytes(min(chunk, size_mb * MB - start)))
        return path
    from cytoauto_core.io import write_fcs

    events = np.random.default_rng(0).gamma(2.0, 200.0, (size_mb * MB // (4 * CHANNELS), CHANNELS)).astype(np.float32)
    return write_fcs(path, events, [f"Ch{i}" for i in range(CHANNELS)])


def server_pid(url: str) -> int:
    """The process id of the Streamlit server listening on `url`'s port."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(args) and port.encode() in args:
            return int(proc.name)
    raise RuntimeError(f"no streamlit process on port {port}")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of `pid` now, in MB: all of it (VmRSS) or its anonymous part (RssAnon: not the pages of
    memory-mapped files, such as a stored dataset's events, which the kernel can drop)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


class PeakSampler:
    """The highest RSS of a process over a stretch of time, sampled every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settled_rss(pid: int, quiet_s: float = 6.0, timeout_s: float = 240.0) -> float:
    """RSS once it has moved less than 20 MB for `quiet_s` seconds (the server's background warm-up has ended)."""
    start, low, high, since = time.time(), rss_mb(pid), rss_mb(pid), time.time()
    while time.time() - start < timeout_s:
        time.sleep(0.5)
        now = rss_mb(pid)
        low, high = min(low, now), max(high, now)
        if high - low > 20:
            low = high = now
            since = time.time()
        elif time.time() - since >= quiet_s:
            return now
    return rss_mb(pid)


def measure(path: Path, tmp: Path) -> dict[str, float | str]:
    """One fresh server: RSS settled, peak while uploading, held after, peak while loading, settled after."""
    row: dict[str, float | str] = {"file_mb": path.stat().st_size / MB}
    with streamlit_server(tmp / f"ws_{path.stem}", tmp / "server.log") as url, chromium_page() as page:
        pid = server_pid(url)
        page.goto(url)
        wait_for_app(page)
        row["before"] = settled_rss(pid)
        with PeakSampler(pid) as upload:
            upload_files(page, [path])
        row["upload_peak"] = upload.peak
        row["held"], row["held_anon"] = settled_rss(pid, quiet_s=3.0), rss_mb(pid, "RssAnon")
        with PeakSampler(pid) as load:
            page.get_by_role("button", name="Load files").click()
            row["outcome"] = outcome(page)
        row["load_peak"] = load.peak
        row["after"], row["after_anon"] = settled_rss(pid, quiet_s=3.0), rss_mb(pid, "RssAnon")
    return row


def outcome(page, timeout_s: float = 900.0) -> str:
    """Wait until the Data page has read the upload: "loaded" (the uploader emptied) or the error it showed."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        wait_for_app(page)
        errors = page.get_by_test_id("stAlertContentError")
        if errors.count():
            return "refused: " + errors.first.inner_text().splitlines()[0][:90]
        if not page.get_by_test_id("stFileChip").count():
            return "loaded"
        time.sleep(1)
    raise TimeoutError("the upload was neither loaded nor refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300], help="file sizes in MB")
    parser.add_argument("--kind", choices=["refused", "fcs"], default="refused")
    args = parser.parse_args()
    print("| file MB | server RSS before MB | peak while uploading | held after upload (anon) | peak while loading | "
          "RSS after (anon) | outcome |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = make_file(Path(tmp), size, args.kind)
            r = measure(path, Path(tmp))
            path.unlink()
            print(f"| {r['file_mb']:.0f} | {r['before']:.0f} | {r['upload_peak']:.0f} | "
                  f"{r['held']:.0f} ({r['held_anon']:.0f}) | {r['load_peak']:.0f} | "
                  f"{r['after']:.0f} ({r['after_anon']:.0f}) | {r['outcome']} |", flush=True)


if __name__ == "__main__":
    main()
