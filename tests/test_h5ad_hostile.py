"""Crafted .h5ad uploads: none brings bytes from another path into a dataset, none costs much more memory than its
size, and none loads damaged values without a word. Each route HDF5 offers out of a file (external raw storage, an
external link, a virtual dataset, a soft link) points at a file beside the upload, as an attacker's would."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import CORPUS, ROOT
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file
from cytoauto_core.io.export import write_labelled_h5ad
from cytoauto_core.prep.transforms import default_spec
from cytoauto_core.store.workspace import Workspace
from ui.upload import store_uploads

SECRET = b"cookie_secret = 'do-not-leak-0123456789abcdef'\nclient_secret = 'zyxwvutsrqponmlkjihg'\n" * 4


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A real flow file (spillover, 14 features) exported by the app: the shape every crafted file starts from."""
    source = read_file(CORPUS / "flowkit_test_comp_example.fcs")
    path = tmp_path_factory.mktemp("export") / "export.h5ad"
    write_labelled_h5ad(path, source, default_spec(source), None)
    return source, path.read_bytes()


def crafted(tmp_path, blob: bytes, edit) -> Path:
    """The export with `edit(h5py.File, secret_path)` applied, in a folder of its own beside a secret file the
    attacker wants read."""
    folder = tmp_path / edit.__name__
    folder.mkdir()
    secret = folder / "secrets.toml"
    secret.write_bytes(SECRET)
    path = folder / "crafted.h5ad"
    path.write_bytes(blob)
    with h5py.File(path, "a") as f:
        edit(f, secret)
    return path


def _replace(f: h5py.File, key: str, **kwargs) -> h5py.Dataset:
    attrs = dict(f[key].attrs)
    del f[key]
    dataset = f.create_dataset(key, **kwargs)
    dataset.attrs.update(attrs)
    return dataset


def external_storage(f, secret):
    rows = len(SECRET) // (4 * f["layers/raw"].shape[1])
    _replace(f, "layers/raw", shape=(rows, f["layers/raw"].shape[1]), dtype="<f4",
             external=[(str(secret), 0, rows * f["layers/raw"].shape[1] * 4)])


def external_link(f, secret):
    other = secret.with_name("other_user_events.h5")
    with h5py.File(other, "w") as g:
        g["events"] = np.frombuffer(SECRET[:len(SECRET) // 56 * 56], np.float32).reshape(-1, 14)
    del f["layers/raw"]
    f["layers/raw"] = h5py.ExternalLink(str(other), "/events")


def virtual_dataset(f, secret):
    other = secret.with_name("other_user_events.h5")
    n, k = f["layers/raw"].shape
    with h5py.File(other, "w") as g:
        g["events"] = np.full((n, k), 7.0, np.float32)
    layout = h5py.VirtualLayout(shape=(n, k), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(other), "events", shape=(n, k))
    del f["layers/raw"]
    f.create_virtual_dataset("layers/raw", layout)


def soft_link(f, secret):
    del f["layers/raw"]
    f["layers/raw"] = h5py.SoftLink("/X")


ESCAPES = {"external storage": external_storage, "external link": external_link,
           "virtual dataset": virtual_dataset, "soft link": soft_link}


@pytest.mark.parametrize("route", ESCAPES)
def test_hdf5_routes_out_of_the_file_are_refused(route, export, tmp_path):
    path = crafted(tmp_path, export[1], ESCAPES[route])
    with pytest.raises(CytoInputError, match=r"^'crafted\.h5ad' .*it was not read\.$") as info:
        read_file(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("route", ESCAPES)
def test_upload_with_an_escape_route_stores_nothing(route, export, tmp_path):
    """The app's own upload path: the refusal names the uploaded file, and the workspace gains no dataset."""
    path = crafted(tmp_path, export[1], ESCAPES[route])
    ws = Workspace(tmp_path / "ws")
    with open(path, "rb") as handle, pytest.raises(CytoInputError, match=r"^'mine\.h5ad' "):
        store_uploads(ws, [("mine.h5ad", handle)])
    assert ws.list_datasets() == []
    assert not any(SECRET[:20] in p.read_bytes() for p in (tmp_path / "ws").rglob("*") if p.is_file()), \
        "no copy of the secret anywhere in the workspace"


def test_the_escape_routes_do_reach_the_secret_without_the_guard(export, tmp_path):
    """The crafted files are real attacks: plain h5py, which follows them, reads the other file's bytes."""
    for edit in (external_storage, external_link):
        with h5py.File(crafted(tmp_path, export[1], edit), "r") as f:
            assert SECRET[:20] in f["layers/raw"][:].tobytes(), edit.__name__


def test_unknown_filter_and_shared_objects_are_refused(export, tmp_path):
    def plugin_filter(f, secret):
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((4,))
        plist.set_filter(307, h5py.h5z.FLAG_OPTIONAL)  # bzip2: HDF5 would look for a plugin library to decode it
        space = h5py.h5s.create_simple((8,))
        h5py.h5d.create(f.id, b"uns/packed", h5py.h5t.NATIVE_FLOAT, space, dcpl=plist)

    path = crafted(tmp_path, export[1], plugin_filter)
    with pytest.raises(CytoInputError, match=r"with a filter this app does not read\.$"):
        read_file(path)

    def shared(f, secret):
        f["uns/again"] = f["uns"]  # a hard link back up the tree: a loop for any reader that walks it
    path = crafted(tmp_path, export[1], shared)
    with pytest.raises(CytoInputError, match=r"links one object under two names"):
        read_file(path)


BOMB_WORKER = r'''
import sys
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.io import read_file

def status_mib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) // 1024

with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # the peak RSS starts again from here: the read's own peak is measured, not the imports'
before = status_mib("VmRSS:")
try:
    read_file(sys.argv[1])
    print("loaded")
except CytoInputError as exc:
    print("refused", exc)
print("peak_mib", status_mib("VmHWM:") - before)
'''


def _read_in_child(path) -> tuple[str, int]:
    """Read in a fresh process under a 2 GiB address-space limit; its first output line and the read's peak RSS
    growth in MiB."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    out = subprocess.run([sys.executable, "-c", BOMB_WORKER, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, preexec_fn=limit, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("peak_mib"), out.stderr[-800:]
    return lines[0], int(lines[-1].split()[1])


def test_small_files_that_declare_huge_arrays_are_refused_before_allocating(export, tmp_path):
    def sparse_bomb(f, secret):  # the 8 MB file: an empty 10,000 × 200,000 sparse X (7.45 GiB dense)
        del f["layers/raw"]
        g = f.create_group("layers/raw")
        g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (10_000, 200_000)})
        g["data"] = np.zeros(0, np.float32)
        g["indices"] = np.zeros(0, np.int32)
        g["indptr"] = np.zeros(10_001, np.int64)

    def unwritten(f, secret):  # a chunked dataset never written: HDF5 would hand back fill values for all of it
        _replace(f, "layers/raw", shape=(50_000_000, 14), dtype="<f4", chunks=(1 << 16, 14))

    for edit in (sparse_bomb, unwritten):
        path = crafted(tmp_path, export[1], edit)
        first, peak = _read_in_child(path)
        assert first.startswith("refused 'crafted.h5ad' declares") and "it was not read." in first, first
        assert peak < 64, f"{edit.__name__}: {peak} MiB more while refusing a {path.stat().st_size:,}-byte file"


def test_damaged_values_are_refused_or_said(export, tmp_path):
    source = export[0]

    def text_matrix(f, secret):
        _replace(f, "layers/raw", data=np.full(f["layers/raw"].shape, b"1.5", dtype="S3"))

    path = crafted(tmp_path, export[1], text_matrix)
    with pytest.raises(CytoInputError, match=r"^'crafted\.h5ad' stores its X as text, not numbers\.$"):
        read_file(path)

    def nan_spillover(f, secret):
        f["uns/spillover/matrix"][0, 0] = np.nan

    def spillover_too_large(f, secret):
        matrix = f["uns/spillover/matrix"][:]
        del f["uns/spillover/matrix"]
        f["uns/spillover/matrix"] = np.pad(matrix, ((0, 1), (0, 0)))

    for edit in (nan_spillover, spillover_too_large):
        path = crafted(tmp_path, export[1], edit)
        ds = read_file(path)
        assert ds.spillover is None and any("spillover matrix (uns/spillover)" in w for w in ds.warnings), edit
        np.testing.assert_array_equal(ds.events, source.events)


def test_a_string_declaring_gigabytes_is_refused_by_the_capped_reader(export, tmp_path):
    """HDF5 sizes a variable-length string's buffer by the length its element declares before reading it: an element
    of var's channel names patched to declare 4 GB makes the library ask for that much. The parse runs in a capped
    child process, so the request fails there and becomes a refusal; the reading process does not grow."""
    path = tmp_path / "strings.h5ad"
    path.write_bytes(export[1])
    with h5py.File(path, "r") as f:
        names = f["var/channel"]
        offset, size = names.id.get_offset(), names.id.get_storage_size()
        assert offset is not None and size == 16 * names.shape[0], "contiguous: 4-byte length, 12-byte heap id"
    blob = bytearray(path.read_bytes())
    for element in range(size // 16):
        blob[offset + 16 * element:offset + 16 * element + 4] = (0xFFFFFF00).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    first, _ = _read_in_child(path)
    assert first.startswith("refused 'strings.h5ad' "), first
    parse = ("import sys; from pathlib import Path; from cytoauto_core.io.h5ad_reader import read_contained; "
             "from cytoauto_core.io.h5ad_worker import capped\n"
             "status = lambda k: next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(k)) // 1024\n"
             "open('/proc/self/clear_refs', 'w').write('5'); before = status('VmRSS:')\n"
             "try:\n    with capped(64 << 20):\n        read_contained(Path(sys.argv[1]), 'strings.h5ad')\n"
             "except Exception as exc:\n    print(type(exc).__name__)\n"
             "print(status('VmHWM:') - before)")
    out = subprocess.run([sys.executable, "-c", parse, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}).stdout.split()
    assert out[0] == "CytoInputError" and int(out[1]) < 64, f"the capped parse itself: {out} (uncapped: 4.1 GB)"
