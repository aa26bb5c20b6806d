"""FCS reading: the real corpus, hand-made edge cases, and broken files that must give one clear sentence."""
from __future__ import annotations

import warnings
from pathlib import Path

import flowio
import numpy as np
import pytest

from cytoauto_core.errors import CytoInputError
from cytoauto_core.io import read_fcs, read_file, write_fcs
from tests.conftest import CORPUS, LEVINE

# file, events, channels, has spillover (from fcs_corpus/README.md)
CORPUS_TABLE = [
    ("flowio_100715.fcs", 65016, 16, True),
    ("flowio_3FITC_4PE_004.fcs", 94569, 4, False),
    ("flowio_B01 KC-A-W---91-US.fcs", 1589, 14, True),
    ("flowio_G11.fcs", 5785, 12, True),
    ("flowio_data1.fcs", 13367, 8, False),
    ("flowio_start_offset_discrepancy.fcs", 2, 26, False),
    ("flowio_stop_offset_discrepancy.fcs", 2, 26, False),
    ("flowio_variable_int.fcs", 2, 26, False),
    ("flowkit_2d_01.fcs", 10000, 2, False),
    ("flowkit_diamond_01.fcs", 200000, 2, False),
    ("flowkit_index_sorted.fcs", 384, 13, True),
    ("flowkit_test_comp_example.fcs", 10703, 18, True),
    ("flowsom_ff.fcs", 19225, 18, True),
]


def build_fcs(keywords: dict[str, str], data: bytes, version: str = "3.1",
              header_data: tuple[int, int] | None = None, delim: str = "/") -> bytes:
    """A hand-made FCS file: TEXT from `keywords` (3.x gets $BEGINDATA/$ENDDATA), then `data`."""
    def text_for(begin: int, end: int) -> bytes:
        kw = dict(keywords)
        if version != "2.0":
            kw = {"$BEGINDATA": f"{begin:012d}", "$ENDDATA": f"{end:012d}", **kw}
        return (delim + "".join(f"{k}{delim}{v}{delim}" for k, v in kw.items())).encode()

    n_text = len(text_for(0, 0))
    begin, end = 58 + n_text, 58 + n_text + len(data) - 1
    hb, he = header_data if header_data is not None else (begin, end)
    header = f"FCS{version}    " + "".join(f"{v:>8}" for v in (58, 57 + n_text, hb, he, 0, 0))
    return header.encode() + text_for(begin, end) + data


def int_keywords(bits: list[int], ranges: list[int], n: int, byteord: str = "1,2,3,4") -> dict[str, str]:
    """TEXT keywords for integer data with the given bit widths and $PnR ranges."""
    kw = {"$BYTEORD": byteord, "$DATATYPE": "I", "$MODE": "L", "$NEXTDATA": "0", "$PAR": str(len(bits)), "$TOT": str(n)}
    for i, (b, r) in enumerate(zip(bits, ranges), start=1):
        kw |= {f"$P{i}N": f"Ch{i}", f"$P{i}B": str(b), f"$P{i}R": str(r), f"$P{i}E": "0,0"}
    return kw


def float_file(tmp_path: Path, n: int = 100, p: int = 3, name: str = "x.fcs") -> tuple[Path, np.ndarray]:
    """A small valid float32 FCS written by our writer, with its events."""
    events = np.random.default_rng(1).normal(100, 10, (n, p)).astype(np.float32)
    path = write_fcs(tmp_path / name, events, [f"Ch{i}" for i in range(p)])
    return path, events


@pytest.mark.parametrize("fname,n_events,n_channels,has_spill", CORPUS_TABLE)
def test_corpus_counts(fname, n_events, n_channels, has_spill):
    ds = read_file(CORPUS / fname)
    assert (ds.n_cells, len(ds.channels)) == (n_events, n_channels)
    assert ds.events.dtype == np.float32 and np.isfinite(ds.events).all()
    assert (ds.spillover is not None) == has_spill
    if has_spill:
        assert set(ds.spillover.channels) <= set(ds.channel_names)
        assert np.allclose(np.diag(ds.spillover.matrix), 1.0)
    assert ds.samples == [fname] and ds.name == fname


@pytest.mark.parametrize("fname", ["flowio_100715.fcs", "flowio_B01 KC-A-W---91-US.fcs", "flowio_variable_int.fcs",
                                   "flowkit_index_sorted.fcs", "flowkit_test_comp_example.fcs", "flowio_data1.fcs"])
def test_events_match_flowio(fname):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd = flowio.FlowData(CORPUS / fname, ignore_offset_error=True, ignore_offset_discrepancy=True)
    ref = fd.as_array(preprocess=False)
    linear = [n - 1 for n, c in fd.channels.items() if c["pne"][0] == 0]
    ds = read_fcs(CORPUS / fname)
    np.testing.assert_array_equal(ds.events[:, linear], ref[:, linear].astype(np.float32))
    logs = [n - 1 for n, c in fd.channels.items() if c["pne"][0] > 0]
    for i in logs:  # log-amplified channels are linearised as flowio's preprocessing does (gain not applied)
        decades, log0 = fd.channels[i + 1]["pne"]
        expected = 10 ** (decades * ref[:, i] / fd.channels[i + 1]["pnr"]) * log0
        np.testing.assert_allclose(ds.events[:, i], expected, rtol=1e-5)


def test_markers_from_pns():
    ds = read_fcs(CORPUS / "flowio_100715.fcs")
    by_name = {c.name: c for c in ds.channels}
    assert by_name["B515-A"].marker == "KI67" and by_name["R780-A"].marker == "CD3"
    assert by_name["FSC-A"].marker == "FSC-A" and by_name["FSC-A"].kind == "scatter"
    g11 = {c.name: c.marker for c in read_fcs(CORPUS / "flowio_G11.fcs").channels}
    assert g11["BL1-A"] == "GFP-A"


def test_levine_fcs_markers():
    ds = read_fcs(LEVINE / "Levine_32dim_10k.fcs")
    assert ds.n_cells == 10_000 and "CD45RA" in ds.channel_names and "CD41" in ds.channel_names


def test_offset_problems_are_warnings_not_errors():
    ds = read_fcs(CORPUS / "flowkit_test_comp_example.fcs")
    assert any("one byte too late" in w for w in ds.warnings)
    ds = read_fcs(CORPUS / "flowio_start_offset_discrepancy.fcs")
    assert any("HEADER and TEXT" in w and "TEXT ones" in w for w in ds.warnings)
    ds = read_fcs(CORPUS / "flowio_stop_offset_discrepancy.fcs")
    assert any("HEADER and TEXT" in w for w in ds.warnings)


def test_lmd_reads_both_data_sets_and_keeps_the_compatible_one():
    ds = read_file(CORPUS / "flowio_coulter_multidataset.lmd")
    assert ds.n_cells == 18110 and len(ds.channels) == 8
    assert ds.samples == ["flowio_coulter_multidataset.lmd [data set 1]"]
    assert any("Data set 2" in w and "none of data set 1's channels" in w for w in ds.warnings)
    assert ds.channel_names[:2] == ["FS Lin", "SS Lin"]
    log_ch = ds.channel_index(["FL1 Log"])[0]
    assert ds.events[:, log_ch].max() <= 0.1024 * 10**4 + 1  # 4-decade log linearised, not 0..1023 counts


def test_multiple_data_sets_with_same_channels_become_samples(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    kw = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$PAR": "2", "$TOT": "3",
          "$P1N": "FL1", "$P1B": "32", "$P1R": "1024", "$P2N": "FL2", "$P2B": "32", "$P2R": "1024"}
    second = build_fcs({**kw, "$NEXTDATA": "0"}, (a + 100).tobytes())
    first_len = len(build_fcs({**kw, "$NEXTDATA": "0" * 8}, a.tobytes()))
    first = build_fcs({**kw, "$NEXTDATA": f"{first_len:08d}"}, a.tobytes())
    path = tmp_path / "two.fcs"
    path.write_bytes(first + second)
    ds = read_fcs(path)
    assert ds.samples == ["two.fcs [data set 1]", "two.fcs [data set 2]"]
    np.testing.assert_array_equal(ds.sample_ids, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.events[3:], a + 100)
    assert any("2 data sets" in w for w in ds.warnings)


def test_integer_byte_orders_masks_and_widths(tmp_path):
    vals = np.array([[5, 1023 + 4096, 7], [1000, 3, 65535]], dtype=np.uint16)
    path = tmp_path / "be.fcs"
    path.write_bytes(build_fcs(int_keywords([16] * 3, [1024, 1024, 65536], 2, "4,3,2,1"), vals.astype(">u2").tobytes()))
    np.testing.assert_array_equal(read_fcs(path).events, [[5, 1023, 7], [1000, 3, 65535]])
    # mixed 8/16/24/32-bit fields, little-endian, one row
    raw = bytes([200]) + (513).to_bytes(2, "little") + (70000).to_bytes(3, "little") + (123456789).to_bytes(4, "little")
    path.write_bytes(build_fcs(int_keywords([8, 16, 24, 32], [256, 1024, 2**24, 2**32], 1), raw))
    np.testing.assert_array_equal(read_fcs(path).events, [[200, 513, 70000, np.float32(123456789)]])
    path.write_bytes(build_fcs(int_keywords([10, 16], [1024, 1024], 1), b"\0" * 4))
    with pytest.raises(CytoInputError, match=r"'be.fcs' packs integers into 10 bits"):
        read_fcs(path)


def test_double_big_endian_and_fcs2_comp(tmp_path):
    ev = np.array([[1.5, -2.25, 3.0]], dtype=np.float64)
    kw = {"$BYTEORD": "4,3,2,1", "$DATATYPE": "D", "$MODE": "L", "$PAR": "3", "$TOT": "1",
          "$P1N": "FSC-H", "$P2N": "FL1-H", "$P3N": "FL2-H", "$COMP": "2,1,0.1,0.2,1"}
    path = tmp_path / "d.fcs"
    path.write_bytes(build_fcs(kw, ev.astype(">f8").tobytes(), version="2.0"))
    ds = read_fcs(path)
    np.testing.assert_array_equal(ds.events, ev.astype(np.float32))
    assert ds.spillover.channels == ["FL1-H", "FL2-H"]
    np.testing.assert_array_equal(ds.spillover.matrix, [[1, 0.1], [0.2, 1]])


def test_large_file_header_zeros_use_text_offsets(tmp_path):
    path, events = float_file(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[26:42] = b"%8d%8d" % (0, 0)
    path.write_bytes(bytes(blob))
    ds = read_fcs(path)
    np.testing.assert_array_equal(ds.events, events)
    assert ds.warnings == []
    blob[26:42] = b" " * 16  # blank instead of zeros
    path.write_bytes(bytes(blob))
    np.testing.assert_array_equal(read_fcs(path).events, events)


def _sentence(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert f"'{name}'" in msg and msg.endswith(".") and "\n" not in msg and "Traceback" not in msg
    return msg


def test_truncated_file(tmp_path):
    path, _ = float_file(tmp_path, n=1000, p=2)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 188 * 8])
    with pytest.raises(CytoInputError) as exc:
        read_file(path)
    assert "is truncated: it holds 812 of 1,000 events" in _sentence(exc, "x.fcs")


@pytest.mark.parametrize("content,expected", [
    (b"", "is empty"),
    (b"hello,world\n1,2\n", "is not an FCS file"),
    (b"FCS3.1    " + bytes(range(256)) * 4, "damaged"),
    (b"FCS3.0", "truncated"),
])
def test_garbage_files(tmp_path, content, expected):
    path = tmp_path / "bad.fcs"
    path.write_bytes(content)
    with pytest.raises(CytoInputError) as exc:
        read_file(path)
    assert expected in _sentence(exc, "bad.fcs")


def test_zero_events_and_wrong_offsets(tmp_path):
    kw = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$PAR": "1", "$TOT": "0", "$P1N": "A", "$P1B": "32"}
    path = tmp_path / "z.fcs"
    path.write_bytes(build_fcs(kw, b"\0" * 4))
    with pytest.raises(CytoInputError) as exc:
        read_fcs(path)
    assert "contains no events" in _sentence(exc, "z.fcs")
    kw["$TOT"] = "10"
    path.write_bytes(build_fcs({**kw, "$BEGINDATA": "5", "$ENDDATA": "9000"}, np.ones(10, np.float32).tobytes(), header_data=(5, 9000)))
    with pytest.raises(CytoInputError) as exc:
        read_fcs(path)
    _sentence(exc, "z.fcs")


def test_population_channel_becomes_annotation(tmp_path):
    ev = np.ones((4, 2), np.float32)
    path = write_fcs(tmp_path / "p.fcs", ev, ["A", "B"], extra_channels={"population_id": np.array([1, 2, 0, 7])},
                     population_names={1: "T cells", 2: "B cells"})
    ds = read_fcs(path)
    assert ds.channel_names == ["A", "B"]
    assert list(ds.annotations["population"].astype(str)) == ["T cells", "B cells", "unassigned", "unassigned"]
