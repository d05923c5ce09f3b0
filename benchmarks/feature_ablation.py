"""Which stage-1 features carry the backdoor, and does the `minority` detector find it there?

    .venv/bin/python -m benchmarks.feature_ablation --grid verdict --features entropy_norm entropy_norm+mass_image

Reads the features the detection benchmark kept (`benchmarks/cache/detection/
features/`, rebuilt by running the grid) for every 0% and 10% cell of a grid's
results, and prints two markdown tables:

1. **probe**: a supervised upper bound, per (task, family, trigger): the
   cross-validated AUROC (5 folds) of a logistic regression that is *given the
   poison labels*, on each feature set. No unsupervised detector on the same
   features can be expected to do better; below ~0.95 there is little to find.
2. **minority**: the `minority` detector (auditor/analysis/group.py, the
   shipped thresholds) run on each feature set instead of the entropy profile
   alone: verdicts on clean and poisoned cells, mean F1 and share flagged.

A feature set is columns of the features file joined with "+" (entropy_norm,
mass_image, mass_text, mass_rest), each one value per layer.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np

from .detection import ROOT, Cell, poisoned_ids


def _matrix(table: dict, feature_set: str) -> np.ndarray:
    return np.hstack([np.array(table[c], dtype=np.float64) for c in feature_set.split("+")])


def probe_auroc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """5-fold cross-validated AUROC of a standardised logistic regression: (N, D), (N,) bool."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(roc_auc_score(y, cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]))


def minority_on(x: np.ndarray, seed: int = 0) -> tuple[str, np.ndarray]:
    """The `minority` verdict logic of auditor/analysis/verdict.py on any (N, D) matrix."""
    from auditor.analysis.group import fit_group, null_separations, robust_standardise
    from auditor.config import AuditConfig

    cfg = AuditConfig(seed=seed)
    fit = fit_group(robust_standardise(x), cfg.seed, cfg.fit_sample)
    required = max(cfg.group_min_separation,
                   cfg.group_null_factor * max(null_separations(len(x), x.shape[1], cfg.seed)))
    separated, minority = fit.separation >= required, fit.weight <= cfg.group_max_fraction
    if separated and minority and fit.spread_ratio <= cfg.group_max_spread_ratio:
        return "fail", fit.clustering.flagged
    return ("inconclusive" if separated and minority else "pass"), np.zeros(len(x), dtype=bool)


def main(argv: list[str] | None = None) -> int:
    import pyarrow.parquet as pq

    from auditor.analysis.metrics import detection_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="verdict", help="a results folder under benchmarks/results/")
    ap.add_argument("--features", nargs="+", default=["entropy_norm", "entropy_norm+mass_image+mass_text+mass_rest"])
    ap.add_argument("--skip-minority", action="store_true", help="only the probe table")
    args = ap.parse_args(argv)
    cells_dir = ROOT / "benchmarks" / "results" / args.grid / "cells"
    feats = ROOT / "benchmarks" / "cache" / "detection" / "features"
    cells = [Cell(**json.loads(p.read_text())["cell"]) for p in sorted(cells_dir.glob("*.json"))]
    cells = [c for c in cells if c.rate in (0.0, 0.1) and (feats / f"{c.key}.parquet").is_file()]
    if not cells:
        raise SystemExit(f"{cells_dir}: no cells with kept features; run the grid first")
    probe: dict[tuple, list] = {}
    verdicts: dict[tuple, list] = {}
    warnings.simplefilter("ignore")
    for c in cells:
        table = pq.read_table(feats / f"{c.key}.parquet").to_pydict()
        bad = poisoned_ids(c)
        y = np.array([i in bad for i in table["id"]])
        group = (c.task, c.family, c.trigger)
        for fs in args.features:
            x = _matrix(table, fs)
            if y.any():
                probe.setdefault(group + (fs,), []).append(probe_auroc(x, y, c.seed))
            if not args.skip_minority:
                verdict, flags = minority_on(x)
                verdicts.setdefault(group + (fs,), []).append(
                    (verdict, detection_metrics(flags, y).f1, float(flags.mean())))
        print(f"{c.key} done", file=sys.stderr, flush=True)
    print("| task | family | trigger | features | cells | probe AUROC (mean, min) |\n|---|---|---|---|---|---|")
    for k, v in sorted(probe.items()):
        print(f"| {' | '.join(k)} | {len(v)} | {np.mean(v):.3f}, {np.min(v):.3f} |")
    if verdicts:
        print("\n| task | family | trigger | features | cells | pass / fail / inconclusive | F1 | flagged |\n"
              "|---|---|---|---|---|---|---|---|")
        for k, v in sorted(verdicts.items()):
            counts = " / ".join(str(sum(x[0] == w for x in v)) for w in ("pass", "fail", "inconclusive"))
            print(f"| {' | '.join(k)} | {len(v)} | {counts} | {np.mean([x[1] for x in v]):.3f} | "
                  f"{np.mean([x[2] for x in v]):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
