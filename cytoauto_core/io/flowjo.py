"""FlowJo workspace (.wsp) gates → per-cell labels, applied by FlowKit: a lab's manual gates become training labels.

Each FCS file is matched to its workspace sample by `$FIL` (FlowKit's default) or else by its file name; its
gates are applied to its events in file order. The chosen gates (the leaf gates by default) become populations;
a cell in two chosen gates is left unlabelled and counted as an overlap, a cell in none stays unlabelled.

A workspace is untrusted input. It is parsed once here, without DTDs, entities or network (FlowJo writes none), and
refused when it declares a DTD or exceeds the sizes below; FlowKit then reads the copy written from that parse. The
FCS files are always the ones given: FlowKit is never asked to open the files a workspace names (`uri`), so a
workspace cannot make the app read another path.
"""
from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.errors import CytoInputError, first_line, quoted

MAX_ELEMENTS = 2_000_000  # XML elements (~120 bytes each once parsed); a 52-sample FlowJo workspace has 30,000
MAX_GATES = 500  # gates of one sample; applying them keeps one byte per gate and cell
MAX_GATE_NAME = 300  # characters; a gate's path joins its ancestors' names
SHOWN = 5  # gates or samples a message lists
_GATE_TAGS = ("{*}Population", "{*}NotNode", "{*}OrNode", "{*}AndNode")  # FlowJo's gates and Boolean gates


@dataclass
class GateLabels:
    """Per-cell population ids over the files in order (-1 = in no chosen gate, or in two), their names and gates."""

    labels: np.ndarray
    names: dict[int, str]
    gates: list[str]
    overlaps: int
    cells_per_file: list[int]

    def counts(self) -> dict[str, int]:
        """Labelled cells per population name."""
        ids, n = np.unique(self.labels[self.labels >= 0], return_counts=True)
        return {self.names[int(i)]: int(c) for i, c in zip(ids, n)}


def gate_path(name: str, parents: Sequence[str]) -> str:
    """'Lymphocytes/Singlets/T cells': a gate's path below the root, as FlowJo shows it."""
    return "/".join([p for p in parents if p != "root"] + [name])


def workspace_labels(wsp_path: Path, fcs_paths: Sequence[Path], gates: Sequence[str] | None = None) -> GateLabels:
    """Apply the workspace's gates to each FCS file and turn the chosen gates (default: every leaf gate) into labels."""
    import flowkit as fk

    wsp_path = Path(wsp_path)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FlowKit warns about every keyword it does not use
        workspace, samples, ids = _open(fk, wsp_path, fcs_paths, Path(tmp))
        all_paths = {gate_path(n, p): (n, p) for sid in ids for n, p in workspace.get_gate_ids(sid)}
        chosen = list(gates) if gates else _leaves(workspace, ids[0])
        unknown = [g for g in chosen if g not in all_paths]
        if unknown:
            raise CytoInputError(f"The FlowJo workspace '{wsp_path.name}' has no gate {quoted(unknown[0])} "
                                 f"(its gates: {_listed(all_paths)}).")
        parts, overlaps = [], 0
        for sid, (sample, path) in zip(ids, samples):
            try:
                workspace.analyze_samples(sample_id=sid, use_mp=False)
                members = np.column_stack([workspace.get_gate_membership(sid, *all_paths[g]) for g in chosen])
            except Exception as exc:  # an unsupported gate or transform type, a channel the file lacks
                raise CytoInputError(f"The gates of '{wsp_path.name}' could not be applied to '{path.name}' "
                                     f"({first_line(exc)}).") from exc
            hits = members.sum(axis=1)
            overlaps += int((hits > 1).sum())
            parts.append(np.where(hits == 1, members.argmax(axis=1), -1).astype(np.int16))
    names = _population_names(chosen)
    return GateLabels(np.concatenate(parts), dict(enumerate(names)), chosen, overlaps, [len(p) for p in parts])


@dataclass
class WorkspaceGates:
    """The gate paths a workspace defines for the given files (FlowJo's order) and which of them are leaves."""

    gates: list[str]
    leaves: list[str]


def workspace_gates(wsp_path: Path, fcs_paths: Sequence[Path]) -> WorkspaceGates:
    """List the workspace's gates for these FCS files without applying them (one sentence if it does not describe them)."""
    import flowkit as fk

    wsp_path = Path(wsp_path)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace, _, ids = _open(fk, wsp_path, fcs_paths, Path(tmp))
        gates = list(dict.fromkeys(gate_path(n, p) for sid in ids for n, p in workspace.get_gate_ids(sid)))
        return WorkspaceGates(gates, _leaves(workspace, ids[0]))


def _open(fk, wsp_path: Path, fcs_paths: Sequence[Path], folder: Path):
    """The FlowKit workspace with the files loaded, the (sample, path) pairs and each file's workspace sample id."""
    readable = _normalised(wsp_path, folder)
    samples = [_sample(fk, Path(p)) for p in fcs_paths]
    try:
        workspace = fk.Workspace(str(readable), fcs_samples=[s for s, _ in samples])
    except Exception as exc:  # FlowKit raises many error types for a workspace it cannot use
        raise CytoInputError(f"The FlowJo workspace '{wsp_path.name}' could not be read ({first_line(exc)}).") from exc
    described = set(workspace.get_sample_ids())
    return workspace, samples, [_match(sample, path, described, wsp_path.name) for sample, path in samples]


def _normalised(wsp_path: Path, folder: Path) -> Path:
    """A copy FlowKit 1.3.0 can parse, written from a checked parse (see `_parsed`): spillover matrices without a
    `spectral` attribute (FlowJo 10.5 and older) get spectral="0", which is what they are; nothing else changes."""
    tree = _parsed(wsp_path)
    for element in tree.iter("{*}spilloverMatrix"):
        if "spectral" not in element.attrib:
            element.set("spectral", "0")
    out = folder / wsp_path.name
    tree.write(str(out))
    return out


def _parsed(wsp_path: Path):
    """The workspace's XML tree, parsed without entity substitution, DTD loading or network access and with libxml2's
    size limits on (no huge_tree); refused when it declares a DTD (FlowJo never does: a DTD is how a file makes a
    parser read another file or expand entities) or holds more elements, gates or longer gate names than the limits."""
    from lxml import etree

    context = etree.iterparse(str(wsp_path), events=("start",), resolve_entities=False, no_network=True,
                              load_dtd=False, huge_tree=False)
    try:
        for n, _ in enumerate(context, start=1):
            if n > MAX_ELEMENTS:
                raise CytoInputError(f"'{wsp_path.name}' holds more than {MAX_ELEMENTS:,} XML elements, more than a "
                                     f"FlowJo workspace of thousands of samples; it was not read.")
    except (OSError, etree.XMLSyntaxError) as exc:
        raise CytoInputError(f"'{wsp_path.name}' is not a readable FlowJo workspace ({first_line(exc)}).") from exc
    tree = context.root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.system_url or tree.docinfo.public_id:
        raise CytoInputError(f"'{wsp_path.name}' declares a DTD (<!DOCTYPE …>), which FlowJo workspaces never do and "
                             f"which could make a reader expand entities or open other files; it was not read.")
    _check_gates(tree, wsp_path.name)
    return tree


def _check_gates(tree, wsp_name: str) -> None:
    """Refuse a workspace with a gate name longer than MAX_GATE_NAME or more gates in one sample than MAX_GATES."""
    long = next((name for gate in tree.iter(*_GATE_TAGS) if len(name := gate.get("name") or "") > MAX_GATE_NAME), None)
    if long is not None:
        raise CytoInputError(f"'{wsp_name}' has a gate named {quoted(long)} of {len(long):,} characters; gate "
                             f"names of at most {MAX_GATE_NAME} characters can be used.")
    most = max((sum(1 for _ in sample.iter(*_GATE_TAGS)) for sample in tree.iter("{*}Sample")), default=0)
    if most > MAX_GATES:
        raise CytoInputError(f"'{wsp_name}' gives one sample {most:,} gates; at most {MAX_GATES:,} gates per sample "
                             f"can be applied.")


def _sample(fk, path: Path):
    try:
        return fk.Sample(str(path)), path
    except Exception as exc:  # FlowKit's own FCS parsing errors
        raise CytoInputError(f"'{path.name}' could not be read by FlowKit ({first_line(exc)}).") from exc


def _match(sample, path: Path, described: set[str], wsp_name: str) -> str:
    """The workspace's id for a file: its $FIL (FlowKit's sample id) or its file name."""
    for candidate in (sample.id, path.name):
        if candidate in described:
            sample.id = candidate
            return candidate
    raise CytoInputError(f"'{path.name}' is not a sample of the FlowJo workspace '{wsp_name}' "
                         f"(it describes {_listed(sorted(described))}).")


def _leaves(workspace, sample_id: str) -> list[str]:
    """Gate paths of the gates that have no child gate."""
    gates = workspace.get_gate_ids(sample_id)
    parents = {gate_path(p[-1], p[:-1]) for _, p in gates if p[-1] != "root"}
    return [gate_path(n, p) for n, p in gates if gate_path(n, p) not in parents]


def _population_names(paths: list[str]) -> list[str]:
    """A gate's own name, or its whole path where two chosen gates share a name."""
    last = [p.rsplit("/", 1)[-1] for p in paths]
    return [name if last.count(name) == 1 else path for name, path in zip(last, paths)]


def _listed(names) -> str:
    """The first SHOWN names from a workspace, each quoted and shortened, then '…' when there are more."""
    names = list(names)
    return ", ".join(map(quoted, names[:SHOWN])) + (" …" if len(names) > SHOWN else "")
