"""Hostile archives: zip and .npz bombs, lying tables of contents, zip slips and links, oversized JSON.

Each bomb is built here in a few MB (deflate streams of zeros repeated segment by segment, entries written by hand so
that their declared sizes can lie) and read in a child process whose address space is capped a little above what it
holds after its imports: the refusal must come as one sentence naming the user's file, within seconds, with the
child's peak memory growing by far less than the bomb inflates to.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from cytoauto_core.base import archive as archive_module
from cytoauto_core.store import session as session_module
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.prep.transforms import TransformSpec
from cytoauto_core.store.session import import_session
from cytoauto_core.store.workspace import Workspace
from cytoauto_core.study.demo import make_demo
from cytoauto_core.tools.models.baselines import LogisticRegressionModel
from cytoauto_core.tools.models.bundle import ModelBundle, load_bundle, save_bundle
from synthetic import gaussian_cells

USER_FILE = "my_session.zip"
N_CELLS = 1_000
SEGMENT = 1 << 20  # bytes of zeros per repeated deflate segment
MAX_SECONDS = 10  # each refusal, child start-up excluded; the unbounded reads took 60 s and more
MAX_GROWTH_MB = 64  # the child's peak RSS growth while reading one bomb; the bombs inflate to 200 MB - 3 GB
HEADROOM = 1 << 30  # the child's address-space cap above what it holds after its imports

CHILD = r'''
import json, resource, sys, time
from pathlib import Path
from cytoauto_core.base.errors import CytoInputError
from cytoauto_core.tools.models.bundle import load_bundle
from cytoauto_core.store.session import import_session
from cytoauto_core.store.workspace import Workspace

def status(field):
    """A /proc/self/status memory figure, in bytes."""
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field + ":"))) << 10

kind, target, root, headroom = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ws = Workspace(Path(root)) if kind == "session" else None
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + headroom, status("VmSize") + headroom))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS: the read's own peak is measured
before = status("VmRSS")
start = time.monotonic()
try:
    if kind == "session":
        import_session(ws, Path(target), "my_session.zip")
    else:
        load_bundle(target)
    message = "accepted"
except CytoInputError as exc:
    message, cause = str(exc), exc
    while cause is not None:  # refused only because the address-space cap stopped an allocation: not bounded
        message = "MemoryError" if isinstance(cause, MemoryError) else message
        cause = cause.__cause__ or cause.__context__
except MemoryError:
    message = "MemoryError"
print(json.dumps({"message": message, "seconds": time.monotonic() - start, "grew_mb": (status("VmHWM") - before) / 2**20}))
'''


# ---------------------------------------------------------------- building archives by hand

def deflated_zeros(n_zeros: int, prefix: bytes = b"") -> bytes:
    """A raw deflate stream of `prefix` then `n_zeros` zero bytes (a multiple of SEGMENT), a few KB per inflated MB:
    one fully flushed segment is compressed once and repeated."""
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = segment.compress(bytes(SEGMENT)) + segment.flush(zlib.Z_FULL_FLUSH)
    assert n_zeros % SEGMENT == 0
    return (head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH) + unit * (n_zeros // SEGMENT)
            + zlib.compressobj(9, zlib.DEFLATED, -15).flush())


def entry(name: str, data: bytes, *, declared: int | None = None, stored: int | None = None, crc: int | None = None,
          method: int = zipfile.ZIP_DEFLATED, mode: int = 0o100644) -> dict:
    """One entry for raw_zip: `data` as stored (already deflated when `method` says so) and what the table of
    contents says about it (sizes and CRC may lie)."""
    return {"name": name.encode(), "data": data, "method": method, "mode": mode,
            "declared": len(data) if declared is None else declared,
            "stored": len(data) if stored is None else stored,
            "crc": zlib.crc32(data) if crc is None else crc}


def raw_zip(entries: list[dict]) -> bytes:
    """A zip archive written field by field (no zip64), so that declared sizes, modes and names are what we say."""
    out, directory = io.BytesIO(), io.BytesIO()
    for e in entries:
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, e["method"], 0, 0x21, e["crc"], e["stored"],
                              e["declared"], len(e["name"]), 0) + e["name"] + e["data"])
        directory.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x0314, 20, 0, e["method"], 0, 0x21, e["crc"],
                                    e["stored"], e["declared"], len(e["name"]), 0, 0, 0, 0, e["mode"] << 16, offset)
                        + e["name"])
    start = out.tell()
    out.write(directory.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory.getvalue()),
                          start, 0))
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """The .npy header of an array of `shape` (what np.save writes before the data)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def stored(name: str, data: bytes) -> dict:
    return entry(name, data, method=zipfile.ZIP_STORED)


def deflated(name: str, data: bytes) -> dict:
    squeezer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return entry(name, squeezer.compress(data) + squeezer.flush(), declared=len(data), crc=zlib.crc32(data))


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace holding a small demo dataset, and that dataset's key."""
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    return ws, ws.add_dataset(make_demo(N_CELLS, 0))


def session_entries(key: str, bundle: str | None = None) -> list[dict]:
    """The entries of a valid session of the demo dataset (no populations), naming a bundle folder when given."""
    manifest = {"format": 1, "dataset": {"key": key, "name": "demo", "n_cells": N_CELLS}, "settings": {},
                "populations": [], "arrays": {}, "clustering": None, "bundle": bundle}
    return [deflated("session.json", json.dumps(manifest).encode()),
            deflated("labels.npy", npy_bytes(np.full(N_CELLS, -1, np.int64)))]


@pytest.fixture(scope="module")
def saved_bundle(tmp_path_factory):
    """A saved logistic-regression bundle to copy and turn into bombs."""
    x, y = gaussian_cells(60)
    model = LogisticRegressionModel().fit(x, y, x)
    folder = tmp_path_factory.mktemp("saved") / "b"
    save_bundle(ModelBundle(model, TransformSpec(features=[f"CD{i}" for i in range(8)]), model.classes_.tolist(),
                            [f"pop{c}" for c in model.classes_]), str(folder))
    return folder


def resigned(saved: Path, where: Path, files: dict[str, bytes]) -> Path:
    """A copy of the saved bundle with `files` replaced and bundle.json re-signed (hashes are no secret)."""
    folder = where / "b"
    shutil.copytree(saved, folder)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    meta = json.loads((folder / "bundle.json").read_text())
    meta.pop("bundle_hash")
    meta["files"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in meta["files"]}
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    meta["bundle_hash"] = hashlib.sha256(canonical).hexdigest()
    (folder / "bundle.json").write_text(json.dumps(meta))
    return folder


def read_in_child(kind: str, target: Path, root: Path | None = None) -> dict:
    """Import (kind 'session') or load (kind 'bundle') `target` in a child process under an address-space cap."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(target), str(root or target), str(HEADROOM)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_refused_cheaply(result: dict, pattern: str) -> None:
    """One sentence matching `pattern`, quickly and with bounded memory."""
    assert re.fullmatch(pattern, result["message"]), result
    assert "\n" not in result["message"] and ".import-" not in result["message"]
    assert result["seconds"] < MAX_SECONDS, result
    assert result["grew_mb"] < MAX_GROWTH_MB, result


# ---------------------------------------------------------------- bombs, read in a child process

@pytest.mark.timed
def test_a_session_of_six_512_mb_members_is_refused_before_inflating(workspace, tmp_path):
    ws, key = workspace
    bomb = deflated_zeros(512 << 20)
    parts = [entry(f"bundle/part{i}.bin", bomb, declared=512 << 20, crc=0) for i in range(6)]
    path = tmp_path / USER_FILE
    path.write_bytes(raw_zip(session_entries(key, "b") + parts))
    assert path.stat().st_size < 4 << 20
    assert_refused_cheaply(read_in_child("session", path, ws.root),
                           r"The session file 'my_session\.zip' cannot be imported: its entry 'bundle/part0\.bin' "
                           r"declares 536,870,912 bytes \(at most 268,435,456\)\.")
    assert not list(ws.models_dir.iterdir()), "no staging folder is left behind"


@pytest.mark.timed
def test_a_session_member_inflating_beyond_its_declared_size_is_cut_off(workspace, tmp_path):
    ws, key = workspace
    header = npy_header((N_CELLS,), "<i8")
    lying = entry("labels.npy", deflated_zeros(512 << 20, header), declared=len(header) + 8 * N_CELLS, crc=0)
    path = tmp_path / USER_FILE
    path.write_bytes(raw_zip(session_entries(key)[:1] + [lying]))
    assert_refused_cheaply(read_in_child("session", path, ws.root),
                           r"The session file 'my_session\.zip' cannot be imported: its entry 'labels\.npy' "
                           r"does not hold the bytes it declares\.")


@pytest.mark.timed
def test_a_bundle_whose_weights_inflate_to_3_gb_is_refused_before_inflating(saved_bundle, tmp_path):
    n = (3 << 30) // 8
    coef = entry("coef.npy", deflated_zeros(3 << 30, npy_header((n,))), declared=len(npy_header((n,))) + 8 * n, crc=0)
    with np.load(saved_bundle / "linear.npz") as z:
        rest = [stored(f"{k}.npy", npy_bytes(z[k])) for k in ("intercept", "classes")]
    folder = resigned(saved_bundle, tmp_path, {"linear.npz": raw_zip([coef] + rest)})
    assert (folder / "linear.npz").stat().st_size < 4 << 20
    assert_refused_cheaply(read_in_child("bundle", folder),
                           r"The model bundle 'b' cannot be loaded: linear\.npz's entry 'coef\.npy' declares "
                           r"3,221,225,600 bytes \(at most \d[\d,]*\)\.")


@pytest.mark.timed
def test_an_npy_header_claiming_more_than_its_entry_holds_is_refused_unallocated(saved_bundle, tmp_path):
    header = npy_header(((3 << 30) // 8,))
    with np.load(saved_bundle / "linear.npz") as z:
        rest = [stored(f"{k}.npy", npy_bytes(z[k])) for k in ("intercept", "classes")]
    folder = resigned(saved_bundle, tmp_path, {"linear.npz": raw_zip([stored("coef.npy", header + bytes(800))] + rest)})
    assert_refused_cheaply(read_in_child("bundle", folder),
                           r"The model bundle 'b' cannot be loaded: linear\.npz's entry 'coef\.npy' has a header "
                           r"that does not match its size\.")


@pytest.mark.timed
def test_an_npz_entry_inflating_beyond_its_declared_size_is_cut_off(saved_bundle, tmp_path):
    header = npy_header((100,))
    lying = entry("coef.npy", deflated_zeros(3 << 30, header), declared=len(header) + 800, crc=0)
    with np.load(saved_bundle / "linear.npz") as z:
        rest = [stored(f"{k}.npy", npy_bytes(z[k])) for k in ("intercept", "classes")]
    folder = resigned(saved_bundle, tmp_path, {"linear.npz": raw_zip([lying] + rest)})
    assert_refused_cheaply(read_in_child("bundle", folder),
                           r"The model bundle 'b' cannot be loaded: linear\.npz's entry 'coef\.npy' does not hold "
                           r"the bytes it declares\.")


@pytest.mark.timed
def test_a_200_mb_bundle_json_is_refused_unparsed(saved_bundle, tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(saved_bundle, folder)
    with open(folder / "bundle.json", "wb") as f:
        f.write(b'{"name": "')
        for _ in range(200):
            f.write(b"x" * (1 << 20))
        f.write(b'"}')
    assert_refused_cheaply(read_in_child("bundle", folder),
                           r"The model bundle 'b' has a bundle\.json larger than this app reads "
                           r"\(at most 16,777,216 bytes\)\.")


# ---------------------------------------------------------------- small hostile sessions, read in this process

def refusal(ws: Workspace, data: bytes) -> str:
    with pytest.raises(CytoInputError) as err:
        import_session(ws, io.BytesIO(data), USER_FILE)
    message = str(err.value)
    assert USER_FILE in message and "\n" not in message and ".import-" not in message
    assert not list(ws.models_dir.iterdir()), "no staging folder is left behind"
    return message


def test_too_many_entries_are_refused_before_the_manifest_is_read(tmp_path):
    data = raw_zip([stored(f"arrays/a{i}.npy", b"") for i in range(300)])
    assert refusal(Workspace(tmp_path), data).endswith("its table of contents lists too many entries (300; at most 256).")


def test_a_huge_table_of_contents_is_refused_before_zipfile_parses_it(tmp_path):
    data = raw_zip([stored(f"x{i:06d}" + "y" * 200, b"") for i in range(5_000)])  # a 1.2 MB table of contents
    assert "its table of contents is larger than this app reads" in refusal(Workspace(tmp_path), data)


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "bundle/../../evil", "..\\evil", "C:/evil"])
def test_zip_slips_are_refused(workspace, name):
    ws, key = workspace
    message = refusal(ws, raw_zip(session_entries(key) + [stored(name, b"x")]))
    assert message.endswith("points outside the archive."), message


def test_a_symlink_entry_is_refused(workspace):
    ws, key = workspace
    link = stored("bundle/weights.npz", b"/etc/passwd")
    link["mode"] = 0o120777
    assert refusal(ws, raw_zip(session_entries(key, "b") + [link])).endswith(
        "its entry 'bundle/weights.npz' is a link, not a file.")


def test_entries_sharing_their_stored_bytes_are_refused(workspace):
    ws, key = workspace
    entries = session_entries(key)
    entries[1]["stored"] = 1 << 20  # the table claims a MB of stored bytes the 2 KB file does not hold
    assert refusal(ws, raw_zip(entries)).endswith("its entries claim more stored bytes than the file holds.")


def test_a_session_whose_entries_together_exceed_the_bundle_ceiling_is_refused(workspace, monkeypatch):
    ws, key = workspace
    monkeypatch.setattr(session_module, "MAX_BUNDLE_BYTES", 1_000)
    parts = [stored(f"bundle/part{i}.bin", np.random.default_rng(i).bytes(600)) for i in range(2)]
    assert refusal(ws, raw_zip(session_entries(key, "b") + parts)).endswith(
        "its entries declare 1,200 bytes in all (at most 1,000).")


@pytest.mark.parametrize("method, flags", [(zipfile.ZIP_BZIP2, 0), (zipfile.ZIP_LZMA, 0), (zipfile.ZIP_STORED, 1)])
def test_an_encrypted_or_bzip2_or_lzma_entry_is_refused(workspace, method, flags):
    ws, key = workspace
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for e in session_entries(key, "b"):
            archive.writestr(e["name"].decode(), zlib.decompress(e["data"], -15))
        archive.writestr("bundle/model.json", b"{}" * 1000, method)
    data = bytearray(buffer.getvalue())
    if flags:  # set the 'encrypted' bit of the last entry in its local header and in the table of contents
        for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            data[data.rfind(signature) + at] |= flags
    message = refusal(ws, bytes(data))
    assert message.endswith("its entry 'bundle/model.json' is encrypted or compressed in a way this app does not "
                            "read."), message


def test_an_entry_named_twice_is_refused(workspace):
    ws, key = workspace
    entries = session_entries(key)
    assert refusal(ws, raw_zip(entries + [entries[1]])).endswith("its entry 'labels.npy' appears twice.")


def test_an_imported_bundle_is_refused_naming_the_session_file(workspace, saved_bundle):
    ws, key = workspace
    files = [stored(f"bundle/{p.name}", p.read_bytes()) for p in saved_bundle.iterdir()]
    good = raw_zip(session_entries(key, "b") + files)
    import_session(ws, io.BytesIO(good), USER_FILE)
    assert (ws.models_dir / "b" / "linear.npz").is_file(), "a valid bundle arrives"
    shutil.rmtree(ws.models_dir / "b")
    files = [f if f["name"] != b"bundle/linear.npz" else stored("bundle/linear.npz", b"not the saved weights")
             for f in files]
    assert refusal(ws, raw_zip(session_entries(key, "b") + files)) == (
        "The model bundle 'my_session.zip' has been modified since it was saved (linear.npz changed).")


def test_small_compressible_arrays_still_load(saved_bundle, tmp_path):
    with np.load(saved_bundle / "linear.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["intercept"] = np.zeros_like(arrays["intercept"])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    folder = resigned(saved_bundle, tmp_path, {"linear.npz": buffer.getvalue()})
    assert load_bundle(str(folder)).class_names


def test_an_npz_entry_compressed_beyond_the_ratio_is_refused_even_under_the_file_ceiling(tmp_path):
    path = tmp_path / "weights.npz"
    noise = np.random.default_rng(0).normal(size=1 << 17)  # 1 MiB that does not compress: a 20 MiB ceiling
    np.savez_compressed(path, noise=noise, zeros=np.zeros(1 << 16))  # 512 KiB that deflate squeezes ~1000:1
    with pytest.raises(archive_module.ArchiveRefused,
                       match=r"^weights\.npz's entry 'zeros\.npy' inflates [\d,]+ times its stored size \(at most 20\)$"):
        archive_module.read_npz(path)
    np.savez_compressed(path, noise=noise, zeros=np.zeros(100))  # a small constant array compresses: no bomb
    assert archive_module.read_npz(path)["noise"].tolist() == noise.tolist()
