"""Two people sign in through a real OpenID Connect flow (a local provider, tests/oidc_provider.py) in two
browsers: each sees only their own datasets, and a dataset key copied from one URL opens nothing of it for the other;
a download's URL gives nothing to a request without her cookie or with his (ui/server.py MediaGuard)."""
from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from browser import chromium_page, streamlit_server, upload_files, wait_for_app
from conftest import CORPUS
from oidc_provider import oidc_provider

pytestmark = pytest.mark.browser
ALICE = {"sub": "alice-0001", "email": "alice@lab.test", "name": "Alice"}
BOB = {"sub": "bob-0002", "email": "bob@lab.test", "name": "Bob"}
UPLOAD = "flowkit_index_sorted.fcs"  # 384 cells


def sign_in(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^" + re.escape(url)))
    wait_for_app(page)


def metric(page, label: str) -> str:
    texts = page.get_by_test_id("stMetric").all_inner_texts()
    return next(t for t in texts if t.startswith(label)).split("\n")[-1]


def listed(page) -> str:
    page.get_by_test_id("stSelectbox").filter(has_text="Dataset in the workspace").first.click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return "\n".join(options)


def download_session_file(page) -> tuple[str, bytes]:
    """Prepare and download the open dataset's session file on the Data page: its /media URL and its bytes."""
    page.get_by_text("Session: save or open settings").click()
    page.get_by_role("button", name="Prepare session file").click()
    wait_for_app(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download session (.zip)").click()
    return download.value.url, Path(download.value.path()).read_bytes()


def fetched_without_cookies(url: str) -> tuple[int, bytes]:
    """Status and body of a plain GET with no cookie at all (a URL that leaked to someone else)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_two_signed_in_users_cannot_see_each_others_datasets(tmp_path):
    with oidc_provider() as provider:
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(provider.auth_secrets("http://127.0.0.1:{port}"))
        with streamlit_server(tmp_path / "ws", tmp_path / "server.log", ("--secrets.files", str(secrets))) as url:
            with chromium_page() as alice:
                alice.goto(url)
                wait_for_app(alice)
                assert alice.get_by_role("button", name="Sign in").is_visible() and not alice.get_by_test_id("stMetric").count()
                provider.user = ALICE
                sign_in(alice, url)
                assert alice.get_by_text("Signed in as alice@lab.test").is_visible()
                upload_files(alice, [CORPUS / UPLOAD])
                alice.get_by_role("button", name="Load files").click()
                wait_for_app(alice)
                alice.get_by_test_id("stSidebar").get_by_text(UPLOAD).wait_for()  # the load reruns into the dataset
                wait_for_app(alice)
                assert metric(alice, "Cells") == "384"
                alice_key = re.search(r"dataset=([0-9a-f]+)", alice.url).group(1)

                media_url, hers = download_session_file(alice)
                assert "/media/" in media_url and hers.startswith(b"PK"), "her browser downloads with her cookie"
                assert alice.request.get(media_url).body() == hers
                status, body = fetched_without_cookies(media_url)
                assert status == 404 and hers not in body, "no cookie, no download"
                bob_early = alice.context.browser.new_context().new_page()
                provider.user = BOB
                sign_in(bob_early, url)
                stolen = bob_early.request.get(media_url)
                assert stolen.status == 404 and hers not in stolen.body(), "Bob's cookie opens none of her files"
                bob_early.context.close()

            with chromium_page() as bob:
                provider.user = BOB
                sign_in(bob, url)
                assert bob.get_by_text("Signed in as bob@lab.test").is_visible()
                assert UPLOAD not in listed(bob)
                bob.goto(f"{url}/?dataset={alice_key}")
                wait_for_app(bob)
                assert metric(bob, "Cells") == "20,000", "Alice's key opens Bob's demo, not her file"
                assert alice_key not in bob.url and UPLOAD not in listed(bob)

            with chromium_page() as alice_again:
                provider.user = ALICE
                sign_in(alice_again, url)
                assert UPLOAD in listed(alice_again), "Alice's dataset is still hers after Bob's visit"
    assert len(list((tmp_path / "ws" / "users").iterdir())) == 2, "one workspace per person"
    shared = tmp_path / "ws" / "datasets"
    assert not shared.exists() or not any(shared.iterdir()), "nothing lands in the shared workspace"
