"""Command line: `python -m cytoauto_core apply --model BUNDLE --out DIR FILES...` labels files without the app."""
from __future__ import annotations

import argparse
import sys

from .batch import CHUNK_CELLS, DEFAULT_WORKERS, BatchUsageError, apply_to_files

FORMAT_CHOICES = {"csv": ("csv",), "fcs": ("fcs",), "h5ad": ("h5ad",), "both": ("csv", "fcs"),
                  "all": ("csv", "fcs", "h5ad")}


def parser() -> argparse.ArgumentParser:
    """The argument parser (argparse itself exits with status 2 on malformed arguments)."""
    root = argparse.ArgumentParser(prog="python -m cytoauto_core", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    apply = commands.add_parser("apply", help="apply a saved model bundle to many files on Dask workers")
    apply.add_argument("--model", required=True, help="model bundle folder (contains bundle.json)")
    apply.add_argument("--out", required=True,
                       help="output folder for <stem>_labelled.csv/.fcs/.h5ad, <stem>_legend.csv and abundance.csv")
    apply.add_argument("--format", choices=sorted(FORMAT_CHOICES), default="csv",
                       help="export format: csv, fcs, h5ad (AnnData), both (csv and fcs) or all (default csv)")
    apply.add_argument("--threshold", type=float, default=0.5, help="confidence below which a cell is unassigned")
    apply.add_argument("--scheduler", help="address of an existing Dask scheduler (default: embedded local cluster)")
    apply.add_argument("--workers", type=int, help=f"worker processes of the embedded cluster (default {DEFAULT_WORKERS})")
    apply.add_argument("--chunk-cells", type=int, default=CHUNK_CELLS, help="events per prediction task")
    apply.add_argument("files", nargs="+", help="input files or glob patterns (quote patterns)")
    return root


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 when every file was labelled, 1 when some failed, 2 on unusable arguments."""
    args = parser().parse_args(argv)
    try:
        report = apply_to_files(args.model, args.files, args.out, FORMAT_CHOICES[args.format], args.threshold,
                                args.scheduler, args.workers, args.chunk_cells)
    except BatchUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in report.files:
        detail = f"{row.cells} cells, {row.seconds:.1f} s" if row.status == "ok" else row.error
        print(f"{row.status}\t{row.input}\t{detail}")
    if report.abundance_path:
        print(f"abundance table: {report.abundance_path}")
    n_failed = len(report.failed)
    if n_failed:
        print(f"{n_failed} of {len(report.files)} files failed.", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
