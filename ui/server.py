"""Once per server process: keep Streamlit's between-runs clean-up off background jobs, bound threads, warm up numba;
keep each upload in memory once, not once per script run; with sign-in on, serve media files only to their owners.

A page that shows a running job reruns its progress fragment every second. After every run Streamlit (1.67) calls
`keras.backend.clear_session()` whenever keras is imported — a full garbage collection (~0.45 s with this app's
modules loaded) plus a flush of TensorFlow's kernel cache under a training that is using it — while holding the GIL;
`runner.postScriptGC` (off in .streamlit/config.toml) adds another full collection. Together they held the GIL for
about 0.9 s of every second, so a watched training or map ran several times slower than an unwatched one. The app
builds no Keras model in a script run (training runs in JobManager threads), so the Keras clean-up is skipped;
matplotlib's is kept.
"""
from __future__ import annotations

import gc
import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from cytoauto_core.run import threads, warmup

log = logging.getLogger(__name__)
_started = threading.Lock()
_done = False
_refusal: str | None = None  # why this server refuses to run (set when sign-in is on but downloads cannot be guarded)

Scope = MutableMapping[str, Any]
AsgiApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def start_once() -> None:
    """Apply the process-wide settings, the first time any session runs app.py; raise in every run when sign-in is
    on and the media guard could not be installed (no signed-in user's file is served unguarded)."""
    global _done, _refusal
    with _started:
        if not _done:
            _done = True
            _skip_keras_clear_session()
            _share_uploaded_bytes_on_deepcopy()
            _refusal = _guard_media_files_when_signing_in()
            log.info("threads bounded to %d core(s)", threads.bound_threads())
    if _refusal:
        raise RuntimeError(_refusal)


def warm_up_after_the_page() -> None:
    """Start the warm-up thread (once per process) at the end of a script run: importing TensorFlow and compiling the
    map code beside the first run of a fresh server made its first page take 15–20 s instead of 3 s (both threads
    want the GIL). Every job starts in a later run than a session's first, so none starts before the warm-up does
    and none imports TensorFlow beside it."""
    if not warmup.started():
        log.info("warming up compiled code in the background")
        warmup.start()


def _skip_keras_clear_session() -> None:
    """Replace Streamlit's after-run clean-up with one that only closes matplotlib figures."""
    from streamlit.runtime.scriptrunner import script_runner

    if not hasattr(script_runner, "_clean_problem_modules"):
        log.warning("Streamlit no longer has _clean_problem_modules; its after-run clean-up is left as it is")
        return

    def close_matplotlib_figures() -> None:
        plt: Any = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close("all")

    script_runner._clean_problem_modules = close_matplotlib_figures


def _share_uploaded_bytes_on_deepcopy() -> None:
    """Let a deep copy of an uploaded file share its bytes. Streamlit 1.67's `register_widget` returns a deep copy of
    every widget value in every script run, and copying an `UploadedFile` (a BytesIO) copies its bytes: a page with
    a file uploader held each upload twice between runs and three times during the run that read it (measured by
    bench/upload_memory.py). The bytes are immutable and BytesIO copies on write, so the copies stay independent."""
    from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

    if getattr(vars(UploadedFile).get("__deepcopy__"), "__name__", "") == "shared_copy":
        return
    if ("__deepcopy__" in vars(UploadedFile) or UploadedFileRec._fields != ("file_id", "name", "type", "data")
            or list(inspect.signature(UploadedFile).parameters) != ["record", "file_urls"]):
        log.warning("Streamlit's UploadedFile is not the one of 1.67; each script run copies every upload again")
        return

    def shared_copy(self: UploadedFile, memo: dict[int, Any]) -> UploadedFile:
        copy = UploadedFile(UploadedFileRec(self.file_id, self.name, self.type, self.getvalue()), self._file_urls)
        copy.seek(self.tell())
        return copy

    UploadedFile.__deepcopy__ = shared_copy


def _guard_media_files_when_signing_in() -> str | None:
    """With sign-in on, install MediaGuard on Streamlit's /media route; return why not when Streamlit's internals
    no longer allow it (None when installed, or when sign-in is off and every file is the one local user's)."""
    if not (_sign_in_configured() and _serving_http()):
        return None
    try:
        MediaGuard().install()
    except Exception:
        log.exception("sign-in is on but media files (downloads) could not be guarded; every page refuses to run")
        return "Downloads could not be limited to the people who made them on this Streamlit version; see the log."
    log.info("media files (downloads) are served only to the signed-in user whose session made them")
    return None


def _sign_in_configured() -> bool:
    """Whether .streamlit/secrets.toml has an [auth] section (as ui/state.py asks; importing it here would load numba
    before the threads are bounded)."""
    import streamlit as st

    return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)


def _serving_http() -> bool:
    """Whether Streamlit's server runs this app (AppTest runs it on a mock runtime, and nothing is served)."""
    from streamlit.runtime import Runtime

    return Runtime.exists() and type(Runtime.instance()) is Runtime


def user_identity(info: Mapping[str, Any]) -> str | None:
    """Who a session's user info or a sign-in cookie's payload names, as ui/state.py names workspaces (issuer and
    subject, or e-mail without a subject); None for anyone not signed in."""
    subject = info.get("sub") or info.get("email")
    if not info.get("is_logged_in") or not subject:
        return None
    return f"{info.get('iss', '')}|{subject}"


def _session_identity() -> str | None:
    """The signed-in user of the script run on this thread (None outside a script run or before sign-in)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return None if ctx is None else user_identity(ctx.user_info)


def cookie_identity(cookies: Mapping[str, str]) -> str | None:
    """The signed-in user a request's `_streamlit_user` cookie names, when Streamlit's signature on it holds."""
    from streamlit.web.server.starlette.starlette_server_config import USER_COOKIE_NAME
    from streamlit.web.server.starlette.starlette_websocket import _get_signed_cookie_with_chunks

    raw = _get_signed_cookie_with_chunks(dict(cookies), USER_COOKIE_NAME)
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        return None
    return user_identity(payload) if isinstance(payload, dict) else None


class MediaGuard:
    """Serves Streamlit's media files (download-button data, images) only to a signed-in user whose session made them.

    Streamlit 1.67 serves `/media/<id>` to any client that has the URL, with no cookie, and its ids are hashes of the
    content, so a URL that leaks (browser history, a proxy log, a shared screen) leaks the data. This records, as each
    file is stored in the runtime's MemoryMediaFileStorage (`load_and_get_id`, called under a script run), the
    identity of the signed-in user of that run, forgets it when the file is deleted (`delete_file`), and wraps the
    ASGI app of the `/media/{file_id}` route so that a request whose signed `_streamlit_user` cookie does not name an
    owner gets 404. Two users who made the same bytes both own the file. A file stored outside a script run (a
    deferred `st.download_button` callable, which this app does not use) has no owner and is refused, with a warning.
    The route is found among live objects because the server builds it before any script runs and keeps no handle to
    it; `install` raises if it is not exactly one route, or if the storage lacks the two methods.
    """

    def __init__(self) -> None:
        self._owners: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        """Watch the runtime's media storage and guard the server's /media route (once per process)."""
        from starlette.routing import Route
        from streamlit.runtime import Runtime

        routes = [o for o in gc.get_objects()
                  if isinstance(o, Route) and getattr(o.endpoint, "__name__", "") == "_media_endpoint"]
        if len(routes) != 1:
            raise RuntimeError(f"expected one Streamlit /media route, found {len(routes)}")
        self.watch(Runtime.instance().media_file_mgr._storage)
        routes[0].app = self.wrap(routes[0].app)

    def watch(self, storage: Any) -> None:
        """Record the owner of each file `storage` stores, and forget it when the file is deleted."""
        store, delete = storage.load_and_get_id, storage.delete_file

        def load_and_get_id(*args: Any, **kwargs: Any) -> str:
            file_id = store(*args, **kwargs)
            identity = _session_identity()
            if identity is None:
                log.warning("media file %s was stored outside a signed-in script run; it will not be served", file_id)
            else:
                with self._lock:
                    self._owners.setdefault(file_id, set()).add(identity)
            return file_id

        def delete_file(file_id: str) -> None:
            delete(file_id)
            with self._lock:
                self._owners.pop(file_id, None)

        storage.load_and_get_id, storage.delete_file = load_and_get_id, delete_file

    def allows(self, file_id: str, identity: str | None) -> bool:
        """Whether the user `identity` made the file `file_id` (nobody who is not signed in did)."""
        with self._lock:
            return identity is not None and identity in self._owners.get(file_id, ())

    def wrap(self, app: AsgiApp) -> AsgiApp:
        """The media route's ASGI app, answering 404 (as for a missing file) unless the cookie names an owner."""
        from starlette.requests import HTTPConnection
        from starlette.responses import PlainTextResponse

        async def guarded(scope: Scope, receive: Any, send: Any) -> None:
            file_id = os.path.splitext(scope["path_params"]["file_id"])[0]
            if self.allows(file_id, cookie_identity(HTTPConnection(scope).cookies)):
                await app(scope, receive, send)
            else:
                await PlainTextResponse("File not found", status_code=404)(scope, receive, send)

        return guarded
