"""Sign-in (st.login) gives each user a workspace no other user can list or open, by page, URL or key; without
sign-in configured the app stays one shared local workspace. AppTest's `user` is Streamlit's test double of st.user."""
from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from conftest import ROOT
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import DEMO_CELLS, make_demo
from ui.state import USERS_DIR, user_root

ISSUER = "https://idp.lab.test"
ALICE = {"is_logged_in": True, "iss": ISSUER, "sub": "alice-0001", "email": "alice@lab.test", "name": "Alice"}
BOB = {"is_logged_in": True, "iss": ISSUER, "sub": "bob-0002", "email": "bob@lab.test", "name": "Bob"}


def _open(user: dict | None, url_key: str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if user is not None:
        at.user = user
    if url_key:
        at.query_params["dataset"] = url_key
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _cells(at: AppTest) -> str:
    return {m.label: m.value for m in at.metric}["Cells"]


def _listed(at: AppTest) -> list[str]:
    return next(sb for sb in at.selectbox if sb.label == "Dataset in the workspace").options


def test_each_signed_in_user_sees_only_their_own_datasets(workspace_dir):
    alices = Workspace(user_root(workspace_dir, f"{ISSUER}|{ALICE['sub']}"))
    private = alices.add_dataset(make_demo(1_000, seed=5))

    alice = _open(ALICE, private)
    assert _cells(alice) == "1,000" and alice.query_params["dataset"] == private
    assert any("1,000 cells" in option for option in _listed(alice))
    assert any(c.value == "Signed in as alice@lab.test" for c in alice.sidebar.caption)

    for intruder in (BOB, None):  # another signed-in user, and a visitor of the shared local workspace
        at = _open(intruder, private)
        assert _cells(at) == f"{DEMO_CELLS:,}", "a key from another workspace opens the demo"
        assert at.query_params["dataset"] != private
        at.switch_page("pages/data.py").run()
        assert not any("1,000 cells" in option for option in _listed(at))
        at.switch_page("pages/label.py").run()
        assert not at.exception
    bobs = [p for p in (workspace_dir / USERS_DIR).iterdir() if p != alices.root]
    assert len(bobs) == 1 and not Workspace(bobs[0]).has_dataset(private)
    assert [r.key for r in Workspace(workspace_dir).list_datasets()] != [private]
    assert not any("alice" in p.name or "bob" in p.name for p in (workspace_dir / USERS_DIR).iterdir())


def test_with_sign_in_configured_a_visitor_sees_only_the_sign_in_page(workspace_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "cytoauto", "client_secret": "s", "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Sign in"] and not at.metric
    assert not (workspace_dir / "datasets").exists() or not any((workspace_dir / "datasets").iterdir())


def test_a_background_job_works_in_the_workspace_of_the_user_who_started_it(workspace_dir):
    alice = _open(ALICE, page="pages/map.py")
    alice.selectbox[0].set_value("pca")
    next(b for b in alice.button if b.label == "Compute map").click().run()
    deadline = time.time() + 120
    alices = Workspace(user_root(workspace_dir, f"{ISSUER}|{ALICE['sub']}"))
    [demo] = [r.key for r in alices.list_datasets()]
    while not alices.list_arrays(demo, "embedding") and time.time() < deadline:
        time.sleep(0.5)
    assert alices.list_arrays(demo, "embedding"), "the map is saved in Alice's workspace"
    assert not Workspace(workspace_dir).list_datasets(), "nothing is written to the shared workspace"

    bob = _open(BOB, page="pages/map.py")
    assert not bob.progress and any("Compute map" == b.label for b in bob.button)
    bobs = Workspace(user_root(workspace_dir, f"{ISSUER}|{BOB['sub']}"))
    assert bobs.list_datasets()[0].key == demo and not bobs.list_arrays(demo, "embedding")
    assert not any(sb.label == "Map" for sb in bob.selectbox), "Bob has no map to pick"
    assert any(sb.label == "Map" for sb in _open(ALICE, page="pages/map.py").selectbox), "Alice has hers"
