"""Bounded, streamed reading of zip and .npz archives from users (session files, model bundles' arrays).

Every entry is checked (names, kind, count, declared sizes, their sum and compression ratios, against the archive's
real size and stated ceilings) before any entry is inflated; entries are then inflated in counted chunks that stop
at the size the entry declared, so a table of contents that lies costs no more than one that tells the truth. A
refusal is an ArchiveRefused whose message is a clause: the caller completes it into one sentence naming the
user's file.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

# JSON this app writes (a session's manifest, a bundle.json) holds settings, names and metrics: kilobytes, a few MB
# with thousands of populations; 16 MiB is far above that, and parsing it costs at most a few hundred MB of objects.
MAX_JSON_BYTES = 16 << 20
# zipfile reads and keeps a whole table of contents before anyone can count its entries; 1 MiB holds thousands of
# entries (46 bytes plus the name each), far more than any archive this app reads.
MAX_DIRECTORY_BYTES = 1 << 20
CHUNK_BYTES = 1 << 20  # entries are inflated and copied this much at a time: the memory an inflating read costs
DEFLATE_MAX_RATIO = 1032  # deflate cannot inflate beyond 1032:1; an entry claiming more declares a size it lacks
# Below this stored size an entry's ratio is not checked: an .npy header or an all-zero bias vector may compress
# well, and what it can inflate to (ratio × this) is a few tens of KiB.
SMALL_MEMBER_BYTES = 4 << 10
# Float weights do not compress much (a random float32 array ~1.1:1, a model's trained weights under 2:1; numpy
# writes them stored, 1:1); only near-constant arrays go beyond 20:1, and a bundle's large arrays never are.
NPZ_MAX_RATIO = 20
NPZ_MAX_MEMBERS = 1024  # a VIME bundle's weights.npz holds 2 arrays a layer per ensemble member: under 100
_READABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # the others inflate without a bound per read (bzip2, lzma)
_NPY_KINDS = "biuf"  # booleans, integers and floats: what this app saves; never objects, strings or records


class ArchiveRefused(ValueError):
    """An archive or one of its entries was refused; the message is a clause ("its entry 'x' is a link") that the
    caller completes into one sentence naming the user's file."""


@dataclass(frozen=True)
class Limits:
    """The most an archive's entries may declare: each one, all together, and each one over its stored size."""

    member_bytes: int
    total_bytes: int
    ratio: float


@contextmanager
def open_zip(source: BinaryIO | str | Path, whose: str) -> Iterator[tuple[zipfile.ZipFile, int]]:
    """The archive and its real size in bytes, opened only after its end record shows a table of contents of bounded
    size (zipfile raises BadZipFile for what is not a zip)."""
    with open(source, "rb") if isinstance(source, (str, Path)) else nullcontext(source) as handle:  # a caller's stays open
        size = handle.seek(0, os.SEEK_END)
        end = zipfile._EndRecData(handle)  # the very record zipfile's own reading trusts, so the bound matches it
        if end is not None and end[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES:
            raise ArchiveRefused(f"{whose} table of contents is larger than this app reads "
                                 f"({end[zipfile._ECD_SIZE]:,} bytes; at most {MAX_DIRECTORY_BYTES:,})")
        with zipfile.ZipFile(handle) as archive:
            yield archive, size


def check_entries(infos: list[zipfile.ZipInfo], archive_bytes: int, max_members: int, whose: str) -> None:
    """Refuse too many entries, an entry named twice, one outside the archive (absolute, '..'), a link, an encrypted
    one or one compressed in a way whose inflating cannot be bounded, and stored sizes the file cannot hold."""
    if len(infos) > max_members:
        raise ArchiveRefused(f"{whose} table of contents lists too many entries ({len(infos):,}; at most {max_members:,})")
    seen = set()
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
            raise ArchiveRefused(f"{whose} entry {_shown(name)} points outside the archive")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveRefused(f"{whose} entry {_shown(name)} is a link, not a file")
        if info.flag_bits & 0x1 or info.compress_type not in _READABLE:
            raise ArchiveRefused(f"{whose} entry {_shown(name)} is encrypted or compressed in a way this app does not read")
        if name in seen:
            raise ArchiveRefused(f"{whose} entry {_shown(name)} appears twice")
        seen.add(name)
    if sum(info.compress_size for info in infos) > archive_bytes:  # entries sharing bytes: the overlapping-entry bomb
        raise ArchiveRefused(f"{whose} entries claim more stored bytes than the file holds")


def check_sizes(infos: list[zipfile.ZipInfo], limits: Limits, whose: str) -> None:
    """Refuse, before anything is inflated, entries declaring more than `limits` allow, one by one or together."""
    for info in infos:
        if info.file_size > limits.member_bytes:
            raise ArchiveRefused(f"{whose} entry {_shown(info.filename)} declares {info.file_size:,} bytes "
                                 f"(at most {limits.member_bytes:,})")
        if info.file_size > limits.ratio * max(info.compress_size, SMALL_MEMBER_BYTES):
            raise ArchiveRefused(f"{whose} entry {_shown(info.filename)} inflates "
                                 f"{info.file_size / max(info.compress_size, 1):,.0f} times its stored size "
                                 f"(at most {limits.ratio:,.0f})")
    total = sum(info.file_size for info in infos)
    if total > limits.total_bytes:
        raise ArchiveRefused(f"{whose} entries declare {total:,} bytes in all (at most {limits.total_bytes:,})")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, whose: str) -> bytes:
    """An entry whose declared size was checked, inflated in counted chunks (for JSON, parsed whole)."""
    return b"".join(_chunks(archive, info, whose))


def extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, whose: str) -> None:
    """Stream an entry to the new file `target`, never holding more than one chunk of it in memory."""
    with open(target, "xb") as out:
        for chunk in _chunks(archive, info, whose):
            out.write(chunk)


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, whose: str) -> Iterator[bytes]:
    """An entry's bytes, chunk by chunk, refused as soon as they run past its declared size or end short of it."""
    produced = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                produced += len(chunk)
                if produced > info.file_size:  # zipfile stops at the declared size too; this bound does not rely on it
                    break
                yield chunk
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # a bad CRC, a cut or corrupt stream
        raise ArchiveRefused(f"{whose} entry {_shown(info.filename)} does not hold the bytes it declares") from exc
    if produced != info.file_size:
        raise ArchiveRefused(f"{whose} entry {_shown(info.filename)} does not hold the bytes it declares")


def read_npy(handle: BinaryIO, size: int, whose: str, name: str) -> np.ndarray:
    """A numeric .npy array (never pickled objects) from a stream of `size` bytes, refused unless its header's shape
    × item size is exactly what follows the header; the data is read in counted chunks into the array itself."""
    start = handle.tell()
    try:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy version {version}")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # a bad CRC, a cut or corrupt stream
        raise ArchiveRefused(f"{whose} entry {_shown(name)} does not hold the bytes it declares") from exc
    except (ValueError, SyntaxError, TypeError) as exc:  # numpy's header parser: not an .npy header
        raise ArchiveRefused(f"{whose} entry {_shown(name)} is not a readable array") from exc
    data_bytes = size - (handle.tell() - start)
    if dtype.hasobject or dtype.kind not in _NPY_KINDS or min(shape, default=0) < 0:
        raise ArchiveRefused(f"{whose} entry {_shown(name)} is not a plain numeric array")
    if math.prod(shape) * dtype.itemsize != data_bytes:
        raise ArchiveRefused(f"{whose} entry {_shown(name)} has a header that does not match its size")
    array = np.empty(math.prod(shape), dtype)
    _fill(handle, memoryview(array.view(np.uint8)), whose, name)
    return array.reshape(shape, order="F" if fortran else "C")


def _fill(handle: BinaryIO, buffer: memoryview, whose: str, name: str) -> None:
    """Read exactly len(buffer) bytes into `buffer`, a chunk at a time, and refuse a stream longer or shorter."""
    filled = 0
    try:
        while filled < len(buffer):
            count = handle.readinto(buffer[filled:filled + CHUNK_BYTES])
            if not count:
                break
            filled += count
        longer = bool(handle.read(1))
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ArchiveRefused(f"{whose} entry {_shown(name)} does not hold the bytes it declares") from exc
    if filled != len(buffer) or longer:
        raise ArchiveRefused(f"{whose} entry {_shown(name)} does not hold the bytes it declares")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz a model bundle saved (by name, as np.load gives them, pickle never used), refused unless
    every entry is a numeric .npy whose declared size, compression ratio and sum stay within NPZ_MAX_RATIO times
    the file's real size: memory is bounded by that before anything is inflated."""
    whose = f"{Path(path).name}'s"
    try:
        with open_zip(path, whose) as (archive, size):
            infos = archive.infolist()
            check_entries(infos, size, NPZ_MAX_MEMBERS, whose)
            ceiling = NPZ_MAX_RATIO * max(size, SMALL_MEMBER_BYTES)
            check_sizes(infos, Limits(ceiling, ceiling, NPZ_MAX_RATIO), whose)
            arrays = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise ArchiveRefused(f"{whose} entry {_shown(info.filename)} is not an array")
                with archive.open(info) as stream:
                    arrays[info.filename[:-len(".npy")]] = read_npy(stream, info.file_size, whose, info.filename)
            return arrays
    except zipfile.BadZipFile as exc:
        raise ArchiveRefused(f"{Path(path).name} is not an .npz archive") from exc


def _shown(name: str) -> str:
    """An entry's name as a refusal shows it: quoted, escaped (no line breaks or control bytes) and cut short."""
    return repr(name[:60] + ("…" if len(name) > 60 else ""))
