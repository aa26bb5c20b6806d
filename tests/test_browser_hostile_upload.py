"""A signed-in user uploads .h5ad files crafted to make the server read its own secrets file (HDF5 external
storage) or another file beside it (an external link, a virtual dataset): each is refused on the page in one
sentence naming the upload, and nothing of the other files reaches any workspace."""
from __future__ import annotations

import h5py
import pytest

from browser import chromium_page, streamlit_server, upload_files, wait_for_app
from conftest import CORPUS
from cytoauto_core.io.export import write_labelled_h5ad
from cytoauto_core.io import read_file
from cytoauto_core.prep.transforms import default_spec
from oidc_provider import oidc_provider
from test_browser_access import ALICE, sign_in
from test_h5ad_hostile import external_link, virtual_dataset

pytestmark = pytest.mark.browser


def _pointing_at(path, blob: bytes, target, edit) -> None:
    """The export `blob` at `path`, its events replaced by `edit`'s route towards `target`'s folder or bytes."""
    path.write_bytes(blob)
    with h5py.File(path, "a") as f:
        edit(f, target)


def _external_storage_of(target):
    def external_storage(f, _):
        key = "layers/raw"
        attrs, width = dict(f[key].attrs), f[key].shape[1]
        rows = target.stat().st_size // (4 * width)
        del f[key]
        f.create_dataset(key, shape=(rows, width), dtype="<f4",
                         external=[(str(target), 0, rows * width * 4)]).attrs.update(attrs)
    return external_storage


def test_crafted_h5ad_uploads_are_refused_with_sign_in_on(tmp_path):
    source = read_file(CORPUS / "flowkit_test_comp_example.fcs")
    blob = write_labelled_h5ad(tmp_path / "export.h5ad", source, default_spec(source), None).read_bytes()
    with oidc_provider() as provider:
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(provider.auth_secrets("http://127.0.0.1:{port}"))
        secret_text = secrets.read_bytes()
        uploads = tmp_path / "uploads"
        uploads.mkdir()
        crafted = {"storage.h5ad": _external_storage_of(secrets), "link.h5ad": external_link,
                   "virtual.h5ad": virtual_dataset}
        for name, edit in crafted.items():
            _pointing_at(uploads / name, blob, secrets, edit)
        with streamlit_server(tmp_path / "ws", tmp_path / "server.log", ("--secrets.files", str(secrets))) as url:
            with chromium_page() as page:
                provider.user = ALICE
                sign_in(page, url)
                for name in crafted:
                    page.goto(url)
                    wait_for_app(page)
                    upload_files(page, [uploads / name])
                    page.get_by_role("button", name="Load files").click()
                    wait_for_app(page)
                    error = page.get_by_test_id("stAlertContentError").first
                    error.wait_for()
                    assert error.inner_text().startswith(f"'{name}' "), error.inner_text()
                    assert "it was not read." in error.inner_text()
    stored = [p for p in (tmp_path / "ws").rglob("*") if p.is_file()]
    assert not any(secret_text[:40] in p.read_bytes() for p in stored), "the secrets reached a workspace"
    described = " ".join(p.read_text() for p in (tmp_path / "ws").rglob("dataset.json"))
    assert not any(name in described for name in crafted), "no crafted upload became a dataset"
