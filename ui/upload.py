"""Turning browser uploads into workspace datasets without holding copies in memory."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from cytoauto_core.io import read_files
from cytoauto_core.workspace import Workspace

CHUNK = 16 * 1024 * 1024


def store_uploads(ws: Workspace, uploads: list[tuple[str, BinaryIO]]) -> str:
    """Stream each upload to a temp file, parse all of them as one dataset, store it, delete the temps."""
    paths: list[Path] = []
    try:
        for name, handle in uploads:
            path = ws.new_upload_path(Path(name).suffix.lower())
            handle.seek(0)
            with open(path, "wb") as out:
                shutil.copyfileobj(handle, out, CHUNK)
            paths.append(path)
        dataset = read_files(paths, display_names=[name for name, _ in uploads])
        return ws.add_dataset(dataset)
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
