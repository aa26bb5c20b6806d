"""Train the shipped demo model bundle: VIME on the demo data with 10 labelled cells per population, with unknown-cell
detection at the app's default level.

Run: .venv/bin/python scripts/make_demo_bundle.py [--model VIME] [--seed 0]
Writes models/demo_bone_marrow_<model>/ (weights + bundle.json, no pickle).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cytoauto_core.prep.transforms import default_spec, transform_features  # noqa: E402
from cytoauto_core.study.demo import DEMO_CELLS, make_demo  # noqa: E402
from cytoauto_core.tools.models.bundle import ModelBundle, save_bundle  # noqa: E402
from cytoauto_core.tools.models.novelty import fit_novelty  # noqa: E402
from cytoauto_core.tools.training import build_model  # noqa: E402

LABELS_PER_POPULATION = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="VIME")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = make_demo(DEMO_CELLS, seed=0)
    spec = default_spec(dataset)
    x = transform_features(dataset, spec)
    truth = dataset.annotations["population"].astype(str).to_numpy()
    names = sorted(n for n in set(truth) if n != "unassigned")
    rng = np.random.default_rng(args.seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(truth == n), LABELS_PER_POPULATION, replace=False) for n in names])
    y = np.array([names.index(n) for n in truth[labelled]])
    unlabelled = np.setdiff1d(np.arange(dataset.n_cells), labelled)
    model = build_model(args.model, args.seed).fit(x[labelled], y, x[unlabelled])
    bundle = ModelBundle(model, spec, [int(c) for c in model.classes_], [names[int(c)] for c in model.classes_],
                         name=f"{args.model} on the demo bone marrow ({LABELS_PER_POPULATION} labels per population)",
                         params=model.params_dict(), seed=args.seed,
                         novelty=fit_novelty(x[labelled], y, seed=args.seed))
    target = ROOT / "models" / f"demo_bone_marrow_{args.model.lower().replace(' ', '_')}"
    shutil.rmtree(target, ignore_errors=True)
    print(f"saved {target.relative_to(ROOT)} (bundle {save_bundle(bundle, str(target))[:12]})")


if __name__ == "__main__":
    main()
