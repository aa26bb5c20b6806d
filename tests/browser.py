"""Helpers for browser tests: a live Streamlit server on a free port and Debian Chromium via Playwright."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(workspace: Path, log: Path, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start `streamlit run app.py` (plus `extra_args`) against `workspace`; yield its URL once healthy; stop it after."""
    port = free_port()
    env = {**os.environ, "CYTOAUTO_WORKSPACE": str(workspace), "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", *extra_args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early; see {log}")
        else:
            raise RuntimeError(f"streamlit did not become healthy; see {log}")
        try:
            yield url
        except Exception:
            _dump_threads(proc, log)
            raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def click_when_still(locator, timeout: float = 20.0) -> None:
    """Scroll `locator` into view and click it once its box has stopped moving for 0.3 s. Playwright's own check
    looks at two animation frames; under load an expander still opening, or the page scrolling with it, moved the
    button between mouse-down and mouse-up, and the page saw no click (about 1 run in 7 with three busy cores)."""
    locator.scroll_into_view_if_needed()
    deadline = time.time() + timeout
    box = locator.bounding_box()
    while time.time() < deadline:
        time.sleep(0.3)
        now = locator.bounding_box()
        if now == box:
            break
        box = now
    locator.click()


def _dump_threads(proc: subprocess.Popen, log: Path) -> None:
    """Print the server's log with every thread's stack at the moment a test failed (faulthandler writes them on
    SIGABRT), so a job that never ends in CI says where it was."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    print("--- the server's log, last 20,000 characters ---\n" + log.read_text(errors="replace")[-20_000:])


def _body_text(page) -> str:
    """The page's visible text, or why it could not be read (the page may be gone with the failure)."""
    try:
        return page.inner_text("body", timeout=5_000)
    except PlaywrightError as exc:
        return f"(the page could not be read: {exc})"


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A Playwright page in Debian's Chromium (never a downloaded browser)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for browser tests (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            try:
                yield page
            except Exception:
                print("--- what the page showed when the test failed ---\n" + _body_text(page))
                raise
        finally:
            browser.close()


def wait_for_app(page, settle: float = 1.0) -> None:
    """Wait until Streamlit has finished the script run and drawn every element (no status widget, no skeletons)."""
    page.wait_for_selector("[data-testid='stApp']")
    script = """() => !document.querySelector('[data-testid="stStatusWidget"]')
        && !document.querySelector('[data-testid="stSkeleton"]')
        && document.querySelector('[data-testid="stMain"] h1') !== null"""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            page.wait_for_function(script, timeout=120_000)
            time.sleep(settle)
            if page.evaluate(script):
                return
        except PlaywrightError as exc:  # a redirect (sign-in) replaced the page while we looked: look again
            if "context was destroyed" not in str(exc):
                raise
            page.wait_for_load_state()
    raise TimeoutError("the app did not finish rendering")


def upload_files(page, paths: list[Path], label: str | None = None) -> None:
    """Put `paths` into the page's first file uploader (or the one showing `label`) and wait until every upload has
    finished and the page has rerun: a click that comes while files are still uploading can be lost to the rerun the
    next finished upload starts."""
    uploaders = page.get_by_test_id("stFileUploader")
    uploader = (uploaders.filter(has_text=label) if label else uploaders).first
    uploader.locator("input[type=file]").set_input_files([str(p) for p in paths])
    chips, spinners = uploader.get_by_test_id("stFileChip"), uploader.get_by_test_id("stFileChipIconSpinner")
    deadline = time.time() + 120
    while chips.count() < len(paths) or spinners.count():
        if time.time() > deadline:
            raise TimeoutError(f"{len(paths)} file(s) did not finish uploading")
        time.sleep(0.2)
    wait_for_app(page)


def label_demo_cells(page, workspace: Path, names, per_population: int = 10):
    """The open demo dataset's key, workspace and label store, with the first `per_population` cells of each named
    demo population labelled in the store the app reads (as an earlier session of the user would have left them)."""
    from urllib.parse import parse_qs, urlparse

    import numpy as np

    from cytoauto_core.store.labels import LabelStore
    from cytoauto_core.store.workspace import Workspace
    from cytoauto_core.study.demo import DEMO_CELLS, make_demo

    key = parse_qs(urlparse(page.url).query)["dataset"][0]
    ws = Workspace(workspace)
    store = LabelStore(ws.labels_dir(key), DEMO_CELLS)
    truth = make_demo().annotations["population"].to_numpy()
    for name in names:
        store.assign(np.flatnonzero(truth == name)[:per_population], store.create_population(name))
    return key, ws, store, truth


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`: typed to filter (a long list renders only the options in
    view), and opened again if a re-render closed it."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    for _ in range(5):
        box.click()
        page.keyboard.type(option)
        item = page.get_by_role("option", name=option, exact=True)
        try:
            item.wait_for(timeout=5_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            continue
        item.click()
        wait_for_app(page)
        return
    raise AssertionError(f"the selectbox {label!r} did not offer {option!r}")


def table_text(page, *expected: str, timeout: float = 60.0) -> str:
    """Text of the page's first table once it holds every expected word (the grid draws on a canvas and fills
    its accessible copy, which holds the text, a moment after the script run ends)."""
    table = page.get_by_test_id("stDataFrame").first
    table.wait_for()
    deadline = time.time() + timeout
    text = table.text_content() or ""
    while not all(word in text for word in expected) and time.time() < deadline:
        time.sleep(0.25)
        text = table.text_content() or ""
    return text
