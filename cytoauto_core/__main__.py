"""Command line without the app.

`python -m cytoauto_core ingest FILES...` imports a study into the workspace, one file in memory at a time;
`python -m cytoauto_core label-study --dataset KEY --model BUNDLE --out DIR` labels every cell of a stored study
chunk by chunk (on a Dask cluster with --scheduler) and writes per-sample counts and FCS files;
`python -m cytoauto_core train --labels LABELS.csv --out BUNDLE FILES...` trains and saves a model as the Train page
does; `python -m cytoauto_core apply --model BUNDLE --out DIR FILES...` labels files with a saved model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .base.errors import CytoInputError
from .run.batch import CHUNK_CELLS, DEFAULT_WORKERS, BatchUsageError, apply_to_files
from .tools.models.novelty import DEFAULT_REJECTION

FORMAT_CHOICES = {"csv": ("csv",), "fcs": ("fcs",), "h5ad": ("h5ad",), "both": ("csv", "fcs"),
                  "all": ("csv", "fcs", "h5ad")}
TRAIN_EXIT = "exit status: 0 trained and saved, 1 the files or labels cannot be trained on, 2 unusable arguments"
INGEST_EXIT = "exit status: 0 every file imported, 1 some files skipped or none usable, 2 unusable arguments"
STUDY_EXIT = "exit status: 0 labelled and written, 1 the dataset or model cannot be used, 2 unusable arguments"
APPLY_EXIT = "exit status: 0 every file labelled, 1 some files failed, 2 unusable arguments"


def parser() -> argparse.ArgumentParser:
    """The argument parser (argparse itself exits with status 2 on malformed arguments)."""
    root = argparse.ArgumentParser(prog="python -m cytoauto_core", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser(
        "ingest", help="import files on this server into the workspace as one dataset, as the Data page's import does",
        description="Store the files as one dataset (one sample per file; the channels all files share), reading one "
                    "file at a time, so a study of any size goes in with the memory of its largest file. The Data "
                    "page lists it afterwards.", epilog=INGEST_EXIT)
    ingest.add_argument("--workspace", help="workspace folder (default: $CYTOAUTO_WORKSPACE, else ./workspace)")
    ingest.add_argument("--name", help="the dataset's name in the app (default: the file's name, or 'N files')")
    ingest.add_argument("files", nargs="+", help="FCS, CSV or .h5ad files or glob patterns (quote patterns)")
    study = commands.add_parser(
        "label-study", help="label every cell of a stored study with a saved model, chunk by chunk, maybe on Dask",
        description="Apply a model bundle to every cell of a dataset in the workspace (e.g. one made by ingest) in "
                    "row chunks, in this process or as tasks on a Dask cluster, and write abundance.csv (exact counts "
                    "per sample) and one labelled FCS file per sample into --out. Memory holds a chunk and one sample, "
                    "whatever the study's size; workers must see the workspace's files.", epilog=STUDY_EXIT)
    study.add_argument("--workspace", help="workspace folder (default: $CYTOAUTO_WORKSPACE, else ./workspace)")
    study.add_argument("--dataset", required=True, help="the dataset's key (ingest prints it; the app's URL holds it)")
    study.add_argument("--model", required=True, help="model bundle folder (contains bundle.json)")
    study.add_argument("--out", required=True, help="output folder for abundance.csv and <sample>_labelled.fcs")
    study.add_argument("--threshold", type=float, default=0.5, help="confidence below which a cell is unassigned")
    study.add_argument("--scheduler", help="address of an existing Dask scheduler (default: this process)")
    study.add_argument("--no-fcs", action="store_true", help="write the counts only")
    train = commands.add_parser(
        "train", help="train a model on labelled cells and save its bundle, as the Train page does",
        description="Compare models on the labels, fit the applied one on all of them, save its bundle in --out and "
                    "print the comparison table (the applied model scored beside the others). Labels come from a "
                    "CSV (a cell-index and a population column, found by name as the app guesses them, e.g. "
                    "cell_index or row_in_fcs_0based and population; optionally sample: then the index is the row in "
                    "that sample's file), from an annotation column, or from a FlowJo workspace's gates (--wsp; leaf "
                    "gates by default, a cell in two of them unlabelled).",
        epilog=TRAIN_EXIT)
    train.add_argument("--out", required=True, help="bundle folder to create (must not exist or be empty); "
                                                    "give it to `apply --model`")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help="labels CSV with a cell-index column (cell_index, row_in_fcs_0based, "
                                         "event_id, …; 1-based when its name says so) and a population column "
                                         "(optional sample)")
    source.add_argument("--label-column", help="annotation column of the files that names each cell's population")
    source.add_argument("--wsp", help="FlowJo workspace whose gates (applied by FlowKit to the FCS files) label cells")
    train.add_argument("--gates", help="with --wsp: comma-separated gate paths that become populations, e.g. "
                                       "'CD3+/CD4,CD19' (default: every leaf gate)")
    train.add_argument("--per-population", type=int, help="keep at most N labelled cells per population (seeded)")
    train.add_argument("--compare",
                       help="comma-separated models to score on held-out labels beside the applied one (vime, "
                            "logreg, xgboost, lda; default: the Train page's fast baselines; '' none)")
    train.add_argument("--apply", help="model to fit on all labels and save (default: the Train page's "
                                       "recommendation)")
    train.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    train.add_argument("--threshold", type=float, default=0.5, help="confidence below which a cell is unassigned")
    train.add_argument("--unknown", type=float, default=DEFAULT_REJECTION, metavar="SHARE",
                       help="share of known cells you accept to see called 'unknown' (unlike every named population; "
                            f"default {DEFAULT_REJECTION}, 0 turns it off); saved in the model")
    train.add_argument("--cofactor", type=float, help="arcsinh cofactor (default: 5 mass cytometry, 150 flow)")
    train.add_argument("--features", help="comma-separated feature channels or markers (default: the Data page's)")
    train.add_argument("--vime", action="append", default=[], metavar="KEY=VALUE",
                       help="a VIME setting as on the Train page (e.g. rounds=2, pseudo_threshold=0.9); repeatable")
    train.add_argument("files", nargs="+", help="FCS, CSV or .h5ad files, loaded together as samples")

    apply = commands.add_parser("apply", help="apply a saved model bundle to many files on Dask workers",
                                epilog=APPLY_EXIT)
    apply.add_argument("--model", required=True, help="model bundle folder (contains bundle.json)")
    apply.add_argument("--out", required=True,
                       help="output folder for <stem>_labelled.csv/.fcs/.h5ad, <stem>_legend.csv and abundance.csv")
    apply.add_argument("--format", choices=sorted(FORMAT_CHOICES), default="csv",
                       help="export format: csv, fcs, h5ad (AnnData), both (csv and fcs) or all (default csv)")
    apply.add_argument("--threshold", type=float, default=0.5, help="confidence below which a cell is unassigned")
    apply.add_argument("--unknown", type=float, metavar="SHARE",
                       help="share of known cells you accept to see called 'unknown' (unlike every named population), "
                            "e.g. 0.01; 0 turns it off (default: the level the model was trained with)")
    apply.add_argument("--scheduler", help="address of an existing Dask scheduler (default: embedded local cluster)")
    apply.add_argument("--workers", type=int, help=f"worker processes of the embedded cluster (default {DEFAULT_WORKERS})")
    apply.add_argument("--chunk-cells", type=int, default=CHUNK_CELLS, help="events per prediction task")
    apply.add_argument("files", nargs="+", help="input files or glob patterns (quote patterns)")
    return root


def main(argv: list[str] | None = None) -> int:
    """Run the command and return its exit status (see each command's --help)."""
    args = parser().parse_args(argv)
    commands = {"train": train_main, "apply": apply_main, "ingest": ingest_main, "label-study": label_study_main}
    return commands[args.command](args)


def label_study_main(args: argparse.Namespace) -> int:
    """0 when every cell was labelled and the files written, 1 when the dataset or model cannot be used."""
    from contextlib import nullcontext

    from .base.labelled import LabelledCells
    from .io.sample_exports import write_sample_exports
    from .run.train_command import stage_printer
    from .store.workspace import Workspace
    from .study.passes import predict_cells

    if not 0.0 <= args.threshold <= 1.0:
        print(f"error: the threshold must be between 0 and 1 (got {args.threshold}).", file=sys.stderr)
        return 2
    workspace = Workspace(Path(args.workspace) if args.workspace else None)
    if not workspace.has_dataset(args.dataset):
        print(f"error: the workspace {workspace.root} holds no dataset {args.dataset!r}.", file=sys.stderr)
        return 1
    out = Path(args.out)
    try:
        study = workspace.load_dataset(args.dataset)
        with _client(args.scheduler) if args.scheduler else nullcontext() as client:
            prediction = predict_cells(study, args.model, out / "per_cell", args.threshold, client=client,
                                       progress=stage_printer())
        prediction.counts.to_csv(out / "abundance.csv")
        if not args.no_fcs:
            cells = LabelledCells(prediction.population_id, _bundle_names(args.model), prediction.confidence,
                                  novelty=prediction.novelty)
            write_sample_exports(out, study, cells, ("fcs",), progress=stage_printer())
    except (CytoInputError, BatchUsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{study.n_cells:,} cells of {len(study.samples)} samples labelled in {prediction.seconds:.1f} s; "
          f"counts: {out / 'abundance.csv'}")
    return 0


def _client(address: str):
    """A client of the Dask scheduler at `address`."""
    from distributed import Client

    return Client(address)


def _bundle_names(directory: str) -> dict[int, str]:
    """Population names by id of the bundle (loaded once per process: predict_cells has loaded it already)."""
    from .tools.models.bundle import read_bundle_ref, worker_bundle

    bundle = worker_bundle(read_bundle_ref(directory))
    return {int(i): str(n) for i, n in zip(bundle.class_ids, bundle.class_names)}


def ingest_main(args: argparse.Namespace) -> int:
    """0 when every file was imported, 1 when some were skipped or none could be used."""
    from .run.train_command import stage_printer
    from .store.workspace import Workspace
    from .study.ingest import ingest

    workspace = Workspace(Path(args.workspace) if args.workspace else None)
    try:
        report = ingest(args.files, workspace, args.name, progress=stage_printer())
    except CytoInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for row in report.files:
        print(f"{row.status}\t{row.path}\t{f'{row.cells} cells' if row.status == 'ok' else row.reason}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"dataset {report.key}: {report.n_cells:,} cells in {report.seconds:.1f} s, workspace {workspace.root}")
    return 1 if report.skipped else 0


def apply_main(args: argparse.Namespace) -> int:
    """0 when every file was labelled, 1 when some failed, 2 on unusable arguments."""
    try:
        report = apply_to_files(args.model, args.files, args.out, FORMAT_CHOICES[args.format], args.threshold,
                                args.scheduler, args.workers, args.chunk_cells, rejection=args.unknown)
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


def train_main(args: argparse.Namespace) -> int:
    """0 when the bundle was saved, 1 when the files or labels cannot be trained on, 2 on unusable arguments."""
    from .run.train_command import TrainCommand, TrainUsageError, model_name, run_train, stage_printer
    from .tools.models.evaluation import readable_scores
    from .tools.training import DEFAULT_COMPARISON

    try:
        command = TrainCommand(
            files=[Path(f) for f in args.files], out=Path(args.out),
            labels_csv=Path(args.labels) if args.labels else None, label_column=args.label_column,
            workspace=Path(args.wsp) if args.wsp else None,
            gates=[g.strip() for g in args.gates.split(",") if g.strip()] if args.gates else None,
            per_population=args.per_population, compare=DEFAULT_COMPARISON if args.compare is None else
            [model_name(m) for m in args.compare.split(",") if m.strip()],
            apply=model_name(args.apply) if args.apply else None, seed=args.seed, threshold=args.threshold,
            rejection=args.unknown,
            cofactor=args.cofactor, features=[f.strip() for f in args.features.split(",")] if args.features else None,
            vime=_vime_settings(args.vime))
        if args.per_population is not None and args.per_population < 1:
            raise TrainUsageError(f"--per-population must be a positive number of cells (got {args.per_population}).")
        if not 0.0 <= args.threshold <= 1.0:
            raise TrainUsageError(f"The threshold must be between 0 and 1 (got {args.threshold}).")
        if not 0.0 <= args.unknown < 1.0:
            raise TrainUsageError(f"--unknown must be a share of known cells from 0 (off) to below 1 "
                                  f"(got {args.unknown}).")
        outcome, applied, labels = run_train(command, stage_printer())
    except TrainUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CytoInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{n} {name}" for name, n in labels.counts().items())
    print(f"trained on {outcome.n_labelled} labelled cells ({counts}) in {outcome.seconds:.1f} s")
    if labels.read_from:
        print(f"labels: {labels.read_from}")
    print(readable_scores(outcome.scores, applied).to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"applied model: {applied}")
    print(f"bundle: {outcome.bundle_dir} (hash {outcome.bundle_hash})")
    return 0


def _vime_settings(pairs: list[str]) -> dict:
    """--vime KEY=VALUE pairs as VIMEParams fields (values read as JSON numbers/booleans where they are)."""
    from .run.train_command import TrainUsageError
    from .tools.models.vime import VIMEParams

    known = set(VIMEParams.__dataclass_fields__) - {"seed"}
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in known:
            raise TrainUsageError(f"--vime {pair!r} is not KEY=VALUE with a VIME setting "
                                  f"(for example rounds=2 or pseudo_threshold=0.9).")
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


if __name__ == "__main__":
    sys.exit(main())
