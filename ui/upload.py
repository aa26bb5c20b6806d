"""Turning browser uploads into workspace datasets without holding copies in memory."""
from __future__ import annotations

import gc
import hashlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study import samples

CHUNK = 16 * 1024 * 1024
GENERATION = "uploader_generation"


def store_uploads(ws: Workspace, uploads: list[tuple[str, BinaryIO]],
                  release: Callable[[], None] = lambda: None) -> str:
    """Stream each upload to a temp file, then call `release` (also when streaming failed: the uploads' bytes are
    not needed any more, so parsing does not hold them too), parse all files as one dataset, store it with each
    sample's file keywords (for naming samples on the Compare page), delete the temps."""
    paths: list[Path] = []
    try:
        try:
            for name, handle in uploads:
                path = ws.new_upload_path(Path(name).suffix.lower())
                handle.seek(0)
                with open(path, "wb") as out:
                    shutil.copyfileobj(handle, out, CHUNK)
                paths.append(path)
        finally:
            release()
        dataset, keywords = samples.read_study(paths, [name for name, _ in uploads])
        key = ws.add_dataset(dataset)
        samples.save_keywords(ws, key, keywords)
        return key
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


@contextmanager
def saved_upload(upload: UploadedFile) -> Iterator[Path]:
    """An upload (a FlowJo workspace) as a temporary file under its own name, for readers that take a path and
    name it in their messages (FlowKit); deleted after."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(upload.name).name or "workspace.wsp")
        path.write_bytes(upload.getvalue())
        yield path


def distinct_uploads(files: Sequence[UploadedFile]) -> tuple[list[UploadedFile], list[str]]:
    """The uploads with a file added twice (same name and bytes) kept once, and the names of those added twice; files
    that share only a name are different samples and are all kept."""
    names = Counter(f.name for f in files)
    seen: set[tuple[str, str]] = set()
    kept, repeated = [], []
    for f in files:  # only files sharing a name are hashed
        identity = (f.name, hashlib.blake2b(f.getbuffer(), digest_size=16).hexdigest() if names[f.name] > 1 else "")
        if identity in seen:
            repeated.append(f.name)
        else:
            seen.add(identity)
            kept.append(f)
    return kept, list(dict.fromkeys(repeated))


def uploader_key() -> str:
    """The file uploader's widget key: a new one after each load, so the browser drops the files the server let go."""
    return f"uploader-{st.session_state.setdefault(GENERATION, 0)}"


def release_uploads(files: Sequence[UploadedFile]) -> None:
    """Let go of the uploader's files (read or refused). Streamlit 1.67 keeps each upload whole in server memory
    until its session ends: in the runtime's uploaded-file manager, and shared by every UploadedFile made of it (the
    widget's value in session state for this run and the last, the page's copies of this run and of earlier runs not
    yet collected). The record is removed, every such file closed, and the uploader gets a new key."""
    ids = {f.file_id for f in files}
    ctx = get_script_run_ctx()
    if ctx is not None:
        for file_id in ids:
            ctx.uploaded_file_mgr.remove_file(ctx.session_id, file_id)
    for obj in gc.get_objects():
        if isinstance(obj, UploadedFile) and obj.file_id in ids:
            obj.close()
    st.session_state[GENERATION] += 1
