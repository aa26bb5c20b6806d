"""FCS reading: the real corpus, hand-made edge cases, and broken files that must give one clear sentence."""
from __future__ import annotations

import warnings
from pathlib import Path

import flowio
import numpy as np
import pytest

from cytoauto_core.base.errors import CytoInputError
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


REAL_FCS = sorted((CORPUS.parent).rglob("*.fcs"))


def flowio_preprocessed(fd: flowio.FlowData) -> np.ndarray:
    """flowio's preprocessed events (gain, log and time step applied); a time step that is not a number is
    treated as blank, i.e. 1, which is what our reader does with it too (with a warning)."""
    step = fd.text.get("timestep", "")
    if step.strip() and _not_a_number(step):
        fd.text["timestep"] = ""
    return fd.as_array(preprocess=True)


def _not_a_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return True
    return False


def assert_matches_flowio(ds_events: np.ndarray, fd: flowio.FlowData) -> None:
    """Linear channels equal flowio's preprocessed float64 values cast to float32; log channels agree to 1e-5."""
    ref = flowio_preprocessed(fd)
    linear = [n - 1 for n, c in fd.channels.items() if c["pne"][0] == 0]
    logs = [n - 1 for n, c in fd.channels.items() if c["pne"][0] > 0]
    assert ds_events.shape == ref.shape
    np.testing.assert_array_equal(ds_events[:, linear], ref[:, linear].astype(np.float32))
    np.testing.assert_allclose(ds_events[:, logs], ref[:, logs], rtol=1e-5)


@pytest.mark.parametrize("path", REAL_FCS, ids=lambda p: p.name[:60])
def test_every_real_fcs_file_matches_flowio_preprocessed(path):
    """All 61 FCS files in ../shared/data read as FlowKit/flowio users see them (gain, log, time step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd = flowio.FlowData(path, ignore_offset_error=True, ignore_offset_discrepancy=True)
    assert_matches_flowio(read_fcs(path).events, fd)


def test_lmd_first_data_set_matches_flowio():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = flowio.read_multiple_data_sets(CORPUS / "flowio_coulter_multidataset.lmd", ignore_offset_error=True)[0]
    assert_matches_flowio(read_fcs(CORPUS / "flowio_coulter_multidataset.lmd").events, first)


def test_gain_divides_linear_channels_like_flowio():
    """flowio_data1.fcs stores FSC-H with $P1G 3.67 and SSC-H with $P2G 8 (Guava-style gains): values are divided."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd = flowio.FlowData(CORPUS / "flowio_data1.fcs")
    raw, pre = fd.as_array(preprocess=False), fd.as_array(preprocess=True)
    ds = read_fcs(CORPUS / "flowio_data1.fcs")
    assert ds.channel_names[:2] == ["FSC-H", "SSC-H"] and fd.text["p1g"] == "3.67" and fd.text["p2g"] == "8"
    np.testing.assert_array_equal(ds.events[:, 0], (raw[:, 0] / 3.67).astype(np.float32))
    np.testing.assert_array_equal(ds.events[:, 1], (raw[:, 1] / 8).astype(np.float32))
    np.testing.assert_array_equal(ds.events[:, :2], pre[:, :2].astype(np.float32))
    assert not np.array_equal(ds.events[:, 0], raw[:, 0].astype(np.float32))


def test_timestep_scales_time_but_its_gain_is_ignored(tmp_path):
    """BD-style files repeat $TIMESTEP as the Time channel's $PnG; Time is in seconds and never divided by a gain."""
    ds = read_fcs(CORPUS / "flowkit_index_sorted.fcs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = flowio.FlowData(CORPUS / "flowkit_index_sorted.fcs").as_array(preprocess=False)
    t = ds.channel_names.index("Time")
    np.testing.assert_array_equal(ds.events[:, t], (raw[:, t] * 0.01).astype(np.float32))


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


def _edited(tmp_path: Path, **changes: str) -> Path:
    """A 100-event, 3-channel float file rebuilt with some TEXT keywords changed (offsets stay consistent)."""
    kw = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$NEXTDATA": "0", "$PAR": "3", "$TOT": "100"}
    for i in range(1, 4):
        kw |= {f"$P{i}N": f"Ch{i}", f"$P{i}B": "32", f"$P{i}R": "1024", f"$P{i}E": "0,0"}
    kw |= {"$SPILLOVER": "2,Ch1,Ch2,1,0.1,0.2,1"}
    header_data = changes.pop("header_data", None)
    kw |= {k.replace("_", "$", 1) if k.startswith("_") else k: v for k, v in changes.items()}
    events = np.random.default_rng(3).normal(100, 10, (100, 3)).astype(np.float32)
    path = tmp_path / "e.fcs"
    path.write_bytes(build_fcs(kw, events.tobytes(), header_data=header_data))
    return path


@pytest.mark.parametrize("changes,expected", [
    ({"_PAR": "2"}, "data segment holds 1,200 bytes, but 100 events of 8 bytes"),
    ({"_PAR": "4"}, "damaged"),
    ({"_TOT": "99"}, "data segment holds 1,200 bytes, but 99 events"),
    ({"_TOT": "101"}, "data segment holds 1,200 bytes, but 101 events of 12 bytes each ($TOT × $PAR channels) need 1,212"),
    ({"_PAR": "50000000"}, "declares 50,000,000 channels ($PAR) but its TEXT segment has only"),
    ({"_DATATYPE": "D"}, "$DATATYPE D events (64-bit floats) but gives channel 1 '32' bits"),
    ({"_DATATYPE": "A"}, "only F, D and I are supported"),
    ({"_BEGINDATA": "100", "header_data": (0, 0)}, "no valid location for its events"),
    ({"_ENDDATA": str(100 * 2**30), "header_data": (0, 0)}, "data segment holds 107,374,182,"),
    ({"_MODE": "U\x00\x01"}, "$MODE 'U\\x00\\x01'"),
])
def test_inconsistent_layouts_are_refused(tmp_path, changes, expected):
    path = _edited(tmp_path, **changes)
    with pytest.raises(CytoInputError) as exc:
        read_fcs(path)
    msg = _sentence(exc, "e.fcs")
    assert expected in msg and not any(ord(c) < 32 for c in msg)


@pytest.mark.timed
def test_huge_par_is_refused_at_once(tmp_path):
    import time
    path = _edited(tmp_path, _PAR="1000000000")
    t0 = time.perf_counter()
    with pytest.raises(CytoInputError):
        read_fcs(path)
    assert time.perf_counter() - t0 < 0.5


def test_benign_offsets_and_padding_load_with_a_warning(tmp_path):
    path, events = float_file(tmp_path, n=100, p=3)
    blob = path.read_bytes()
    path.write_bytes(blob + b"\0" * 11)  # padding shorter than one 12-byte event, inside the declared segment
    text_end = blob.index(b"$ENDDATA/") + 9
    old = blob[text_end:text_end + 20]
    new = f"{int(old) + 11:020d}".encode()
    header = blob[:34] + f"{int(blob[34:42]) + 11:>8}".encode() + blob[42:58]
    path.write_bytes(header + blob[58:text_end] + new + blob[text_end + 20:] + b"\0" * 11)
    ds = read_fcs(path)
    np.testing.assert_array_equal(ds.events, events)
    assert any("11 bytes of padding" in w for w in ds.warnings)


@pytest.mark.parametrize("key,value,expected", [
    ("$P2R", "nan", "channel 2 has the range 'nan' ($P2R), which is not a finite number"),
    ("$P2R", "inf", "not a finite number"),
    ("$P2E", "inf,1", "amplification 'inf,1' ($P2E), which is not finite"),
    ("$P2E", "4.1", "unreadable amplification '4.1'"),
])
def test_non_finite_integer_scales_are_refused(tmp_path, key, value, expected):
    kw = int_keywords([16, 16], [1024, 1024], 2) | {"$P2E": "4,1"} | {key: value}
    path = tmp_path / "e.fcs"
    path.write_bytes(build_fcs(kw, np.array([[1, 2], [3, 4]], "<u2").tobytes()))
    with pytest.raises(CytoInputError) as exc:
        read_fcs(path)
    assert expected in _sentence(exc, "e.fcs")


def test_unusable_gain_timestep_and_spillover_are_warnings_never_nan(tmp_path):
    path = _edited(tmp_path, _P1G="nan", _P3N="Time", _TIMESTEP="inf", _SPILLOVER="2,Ch1,Ch2,1,nan,0.2,1")
    ds = read_fcs(path)
    assert np.isfinite(ds.events).all() and ds.spillover is None
    joined = " ".join(ds.warnings)
    assert "gains ($PnG) that are not usable numbers for 'Ch1' ('nan')" in joined
    assert "$TIMESTEP 'inf'" in joined and "$SPILLOVER matrix with missing, infinite or degenerate" in joined
    ok = read_fcs(_edited(tmp_path, _P1G="2", _P3N="Time", _TIMESTEP="0.5"))
    np.testing.assert_allclose(ok.events[:, 0] * 2, ds.events[:, 0], rtol=1e-6)
    np.testing.assert_allclose(ok.events[:, 2] / 0.5, ds.events[:, 2], rtol=1e-6)
    assert ok.warnings == [] and ok.spillover is not None


def test_nan_float_events_are_dropped_with_a_warning(tmp_path):
    events = np.arange(12, dtype=np.float32).reshape(4, 3)
    events[1, 2] = np.nan
    events[3, 0] = np.inf
    ds = read_fcs(write_fcs(tmp_path / "n.fcs", events, ["a", "b", "c"]))
    np.testing.assert_array_equal(ds.events, events[[0, 2]])
    assert ds.warnings == ["'n.fcs' has 2 events with missing or infinite values; they were dropped."]


def test_integers_read_as_floats_are_flagged(tmp_path):
    ints = np.random.default_rng(0).integers(1, 1 << 20, (500, 2)).astype("<u4")
    kw = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$PAR": "2", "$TOT": "500",
          "$P1N": "A", "$P1B": "32", "$P1R": "1048576", "$P2N": "B", "$P2B": "32", "$P2R": "1048576"}
    path = tmp_path / "i.fcs"
    path.write_bytes(build_fcs(kw, ints.tobytes()))
    assert any("integers read as floats" in w for w in read_fcs(path).warnings)
    path.write_bytes(build_fcs(kw | {"$DATATYPE": "I"}, np.float32(ints * 1.5).tobytes()))
    assert any("values above the $PnR range in 2 channel(s)" in w for w in read_fcs(path).warnings)


def test_data_sets_claiming_the_same_bytes_are_refused(tmp_path):
    """A $NEXTDATA chain whose data sets overlap would read the file's bytes many times over (memory grows with each)."""
    kw = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$PAR": "1", "$P1N": "A", "$P1B": "32"}
    inner = build_fcs({**kw, "$TOT": "250", "$NEXTDATA": "0"}, np.ones(250, np.float32).tobytes())
    inner += b" " * (-len(inner) % 4)
    probe = build_fcs({**kw, "$TOT": str(len(inner) // 4), "$NEXTDATA": "0" * 8}, inner)
    outer = build_fcs({**kw, "$TOT": str(len(inner) // 4), "$NEXTDATA": f"{len(probe) - len(inner):08d}"}, inner)
    path = tmp_path / "nested.fcs"
    path.write_bytes(outer)
    with pytest.raises(CytoInputError) as exc:
        read_fcs(path)
    assert "claim more event bytes than the file holds" in _sentence(exc, "nested.fcs")


def test_gain_applies_to_linear_channels_only_as_fcs_31_says(tmp_path):
    """A Guava easyCyte-style float file: 'RED-HLog' is log-amplified ($P2E 4,1) with $P2G 117.6. The gain is not
    applied (2.41 stays 2.41, where the reader used to give 2.41 / 117.6 = 0.0205), the linear 'FSC-HLin' is divided
    by its gain, and a warning says which channel FlowKit and flowio read differently. The same holds for integer
    data: the log channel is linearised and not divided."""
    kw = {"$BYTEORD": "1,2,3,4", "$DATATYPE": "F", "$MODE": "L", "$NEXTDATA": "0", "$PAR": "3", "$TOT": "2",
          "$CYT": "Guava easyCyte"}
    for i, (name, amplification, gain) in enumerate([("FSC-HLin", "0,0", "2"), ("RED-HLog", "4,1", "117.6"),
                                                     ("Time", "0,0", "0.01")], start=1):
        kw |= {f"$P{i}N": name, f"$P{i}B": "32", f"$P{i}R": "65536", f"$P{i}E": amplification, f"$P{i}G": gain}
    path = tmp_path / "guava.fcs"
    path.write_bytes(build_fcs(kw | {"$TIMESTEP": "0.01"}, np.array([[100, 2.41, 5], [300, 1.0, 7]], "<f4").tobytes()))
    ds = read_fcs(path)
    np.testing.assert_array_equal(ds.events[:, 1], np.array([2.41, 1.0], np.float32))
    np.testing.assert_array_equal(ds.events[:, 0], [50, 150])
    np.testing.assert_allclose(ds.events[:, 2], [0.05, 0.07], rtol=1e-6)
    assert ds.warnings == ["'guava.fcs' gives gains ($PnG) for log-amplified channels 'RED-HLog' ('117.6'); FCS 3.1 "
                           "applies a gain to linear channels only, so their values were not divided by it (FlowKit "
                           "and flowio divide them)."]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flowio_value = flowio.FlowData(path).as_array(preprocess=True)[0, 1]
    assert flowio_value == pytest.approx(10 ** (4 * 2.41 / 65536) / 117.6), "flowio linearises and divides"

    ints = int_keywords([16, 16], [1024, 1024], 1) | {"$P1E": "4,1", "$P1G": "10", "$P2G": "4"}
    (tmp_path / "i.fcs").write_bytes(build_fcs(ints, np.array([[512, 40]], "<u2").tobytes()))
    ds = read_fcs(tmp_path / "i.fcs")
    np.testing.assert_allclose(ds.events[0], [10 ** (4 * 512 / 1024), 10], rtol=1e-6)
    assert "log-amplified channels 'Ch1' ('10')" in ds.warnings[0]


def test_a_long_keyword_value_is_quoted_short(tmp_path):
    with pytest.raises(CytoInputError) as exc:
        read_fcs(_edited(tmp_path, _MODE="U" * 5000 + "\n"))
    msg = _sentence(exc, "e.fcs")
    assert f"$MODE '{'U' * 60}…'" in msg and len(msg) < 160
