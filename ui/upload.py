"""Turning browser uploads into workspace datasets without holding copies in memory."""
from __future__ import annotations

import gc
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

from cytoauto_core.io import read_files
from cytoauto_core.workspace import Workspace

CHUNK = 16 * 1024 * 1024
GENERATION = "uploader_generation"


def store_uploads(ws: Workspace, uploads: list[tuple[str, BinaryIO]],
                  release: Callable[[], None] = lambda: None) -> str:
    """Stream each upload to a temp file, then call `release` (also when streaming failed: the uploads' bytes are
    not needed any more, so parsing does not hold them too), parse all files as one dataset, store it, delete the
    temps."""
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
        dataset = read_files(paths, display_names=[name for name, _ in uploads])
        return ws.add_dataset(dataset)
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


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
