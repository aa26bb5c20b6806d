"""ui/server.py's patches of Streamlit 1.67: MediaGuard serves a /media file (a download) only to a signed-in user whose
session made it, through Streamlit's own media route and signed cookies; a deep copy of an upload shares its bytes."""
from __future__ import annotations

import asyncio
import copy
import json
import logging

import httpx
import pytest
from starlette.applications import Starlette
from streamlit.runtime.media_file_storage import MediaFileKind
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec
from streamlit.web.server.starlette import starlette_websocket
from streamlit.web.server.starlette.starlette_app_utils import create_signed_value
from streamlit.web.server.starlette.starlette_routes import create_media_routes
from streamlit.web.server.starlette.starlette_server_config import USER_COOKIE_NAME

from ui import server

SECRET = "the-servers-cookie-secret"
ALICE = {"iss": "http://idp.test", "sub": "alice-0001", "email": "alice@lab.test", "name": "Alice"}
BOB = {"iss": "http://idp.test", "sub": "bob-0002", "email": "bob@lab.test", "name": "Bob"}


def cookie(user: dict, secret: str = SECRET) -> dict[str, str]:
    """The `_streamlit_user` cookie Streamlit's sign-in sets for `user`, signed with `secret`."""
    payload = json.dumps({**user, "origin": "http://testserver", "is_logged_in": True, "provider": "default"})
    return {USER_COOKIE_NAME: create_signed_value(secret, USER_COOKIE_NAME, payload).decode()}


def requester(app: Starlette):
    """`fetch(url, cookies, method)`: the app's response to one request carrying `cookies`."""

    def fetch(url: str, cookies: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                         cookies=cookies) as client:
                return await client.request(method, url)

        return asyncio.run(send())

    return fetch


@pytest.fixture
def media(monkeypatch):
    """Streamlit's media routes over a storage the guard watches, `fetch` for them, and `store(data, user)`: the
    URL path of `data` stored by a script run of `user` (None: outside a signed-in run)."""
    monkeypatch.setattr(starlette_websocket, "get_cookie_secret", lambda: SECRET)
    storage, guard = MemoryMediaFileStorage("/media"), server.MediaGuard()
    guard.watch(storage)
    routes = create_media_routes(storage, None)
    served = next(r for r in routes if "GET" in r.methods)
    served.app = guard.wrap(served.app)

    def store(data: bytes, user: dict | None) -> str:
        identity = None if user is None else server.user_identity({**user, "is_logged_in": True})
        monkeypatch.setattr(server, "_session_identity", lambda: identity)
        file_id = storage.load_and_get_id(data, "text/csv", MediaFileKind.DOWNLOADABLE, "labels.csv")
        return storage.get_url(file_id)

    return requester(Starlette(routes=routes)), store, storage, guard


def test_a_download_is_served_only_to_the_signed_in_user_who_made_it(media):
    fetch, store, _, _ = media
    url = store(b"cell,population\n0,Alice's T cells\n", ALICE)
    assert fetch(url, cookie(ALICE)).content == b"cell,population\n0,Alice's T cells\n"
    for cookies in (None, cookie(BOB), cookie(ALICE, secret="a-guessed-secret"),
                    {USER_COOKIE_NAME: json.dumps({**ALICE, "is_logged_in": True})}):  # unsigned
        refused = fetch(url, cookies)
        assert refused.status_code == 404 and b"Alice" not in refused.content
    assert fetch(url, method="HEAD").status_code == 404


def test_the_same_bytes_made_by_two_users_are_both_of_theirs(media):
    fetch, store, _, _ = media
    url = store(b"the demo's labels", ALICE)
    assert store(b"the demo's labels", BOB) == url, "Streamlit names a file by its content"
    assert fetch(url, cookie(ALICE)).status_code == 200
    assert fetch(url, cookie(BOB)).status_code == 200


def test_a_deleted_file_is_forgotten(media):
    fetch, store, storage, guard = media
    url = store(b"short-lived", ALICE)
    file_id = url.rsplit("/", 1)[1].split(".")[0]
    storage.delete_file(file_id)
    assert not guard.allows(file_id, server.user_identity({**ALICE, "is_logged_in": True}))
    assert fetch(url, cookie(ALICE)).status_code == 404


def test_a_file_made_outside_a_signed_in_run_is_served_to_nobody(media, caplog):
    fetch, store, _, _ = media
    with caplog.at_level(logging.WARNING, logger="ui.server"):
        url = store(b"made by a deferred callable", None)
    assert "will not be served" in caplog.text
    assert fetch(url, cookie(ALICE)).status_code == 404


def test_identity_is_issuer_and_subject_of_a_signed_in_user():
    assert server.user_identity({**ALICE, "is_logged_in": True}) == "http://idp.test|alice-0001"
    assert server.user_identity({"email": "carol@lab.test", "is_logged_in": True}) == "|carol@lab.test"
    assert server.user_identity(ALICE) is None, "not signed in"
    assert server.user_identity({"name": "Nobody", "is_logged_in": True}) is None


def test_sign_in_without_a_guard_refuses_every_page_and_says_why_in_the_log(monkeypatch, caplog):
    monkeypatch.setattr(server, "_sign_in_configured", lambda: True)
    monkeypatch.setattr(server, "_serving_http", lambda: True)

    def changed_streamlit(self) -> None:
        raise RuntimeError("expected one Streamlit /media route, found 0")

    monkeypatch.setattr(server.MediaGuard, "install", changed_streamlit)
    with caplog.at_level(logging.ERROR, logger="ui.server"):
        assert "Downloads could not be limited" in server._guard_media_files_when_signing_in()
    assert "could not be guarded" in caplog.text and "found 0" in caplog.text


def test_a_deep_copy_of_an_upload_shares_its_bytes_and_stays_independent():
    server._share_uploaded_bytes_on_deepcopy()
    data = bytes(range(256)) * 4096
    upload = UploadedFile(UploadedFileRec("id-1", "cells.fcs", "application/octet-stream", data), None)
    upload.seek(10)
    twin = copy.deepcopy(upload)
    assert twin.getvalue() is data and twin.tell() == 10 and (twin.file_id, twin.name) == ("id-1", "cells.fcs")
    twin.seek(0)
    twin.write(b"changed")
    assert upload.getvalue() is data and data[:7] != b"changed"
