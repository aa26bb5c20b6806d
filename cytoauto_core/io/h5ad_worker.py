"""The child process that parses one untrusted .h5ad file under an address-space limit (h5ad_reader.read_h5ad).

HDF5 allocates a variable-length string's buffer from the length its element declares before it reads the string
(and checks the length only then), and attributes are read the same way: one flipped byte can ask for 4 GiB per
string, beyond what any check of declared shapes can see. So the parse runs here, with its address space capped at
what the file may use (h5ad_reader's budget, a few times over) above what the interpreter holds after its imports: an
allocation past it fails in this process and becomes a refusal; a crash or a hang of the library ends only this
process. The dataset goes back to the parent as .npy arrays, a parquet table and JSON (nothing pickled).
"""
from __future__ import annotations

import json
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..base.errors import CytoInputError
from .h5ad_reader import read_contained

HEADROOM = 256 << 20  # the interpreter's own working memory beside what the file may use
RESULT, EVENTS, SAMPLE_IDS, ANNOTATIONS = "result.json", "events.npy", "sample_ids.npy", "annotations.parquet"


def _address_space() -> int:
    """This process's virtual memory size now, in bytes."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmSize:"))


@contextmanager
def capped(allowed: int) -> Iterator[None]:
    """This process's address space capped, meanwhile, at what a file allowed `allowed` bytes may use: three times
    that (the events, a block in transit, the text columns) plus HEADROOM above its size now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + 3 * allowed + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def main(path: str, name: str, out: str, allowed: int) -> None:
    """Read `path` (shown as `name`) under the cap and write the dataset, or the refusal, to folder `out`."""
    folder = Path(out)
    try:
        with capped(allowed):
            ds = read_contained(Path(path), name)
    except CytoInputError as exc:
        (folder / RESULT).write_text(json.dumps({"refused": str(exc)}))
        return
    np.save(folder / EVENTS, ds.events, allow_pickle=False)
    np.save(folder / SAMPLE_IDS, ds.sample_ids, allow_pickle=False)
    ds.annotations.to_parquet(folder / ANNOTATIONS, index=False)
    spillover = None if ds.spillover is None else {"channels": ds.spillover.channels,
                                                   "matrix": ds.spillover.matrix.tolist()}
    (folder / RESULT).write_text(json.dumps({
        "channels": [asdict(c) for c in ds.channels], "samples": ds.samples, "spillover": spillover,
        "metadata": ds.metadata, "warnings": ds.warnings, "name": ds.name}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
