"""Which stage-1 features carry the backdoor, and does the `minority` detector find it there?

    .venv/bin/python -m benchmarks.feature_ablation --grid verdict \
        --features entropy_norm entropy_norm+mass_image

Reads the features the detection benchmark kept (`benchmarks/cache/detection/
features/`, rebuilt by running the grid) for every 0% and 10% cell of a grid's
results, and prints two markdown tables (three with `--candidates`):

1. **probe**: a supervised upper bound, per (task, family, trigger): the
   cross-validated AUROC (5 folds) of a logistic regression that is *given the
   poison labels*, on each feature set, and the F1 of its scores at the best
   threshold (chosen with the labels too). No unsupervised detector on the same
   features can be expected to do better; below ~0.95 there is little to find.
2. **minority**: the `minority` detector (auditor/analysis/group.py, the
   shipped thresholds) run on each feature set instead of the entropy profile
   alone: verdicts on clean and poisoned cells, mean F1 and share flagged.
3. with `--candidates`, **unsupervised candidates** for choosing layers without labels, on the
   last feature set: `minority` after standardising within each instruction
   text (removes the question-type structure of clean data); the most skewed
   independent component (FastICA projection pursuit) and its 2-GMM tail; and
   the answer groups: how separable (cross-validated AUROC, group vs rest) the
   poisoned samples' target-answer group is, against the clean answer groups.

A feature set is columns of the features file joined with "+" (entropy_norm,
mass_image, mass_text, mass_rest), each one value per layer.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np

from .cells import ROOT, Cell, poisoned_ids


def _matrix(table: dict, feature_set: str) -> np.ndarray:
    return np.hstack([np.array(table[c], dtype=np.float64) for c in feature_set.split("+")])


def probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(N, D), (N,) bool -> (AUROC, best F1) of a standardised logistic
    regression's 5-fold cross-validated scores. The F1 is at the threshold that
    maximises it *given the labels*: an optimistic bound for any flagger that
    cuts a linear read-out of these features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    precision, recall, _ = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(roc_auc_score(y, p)), float(f1.max())


def minority_on(x: np.ndarray, seed: int = 0, prompts: list[str] | None = None) -> tuple[str, np.ndarray]:
    """The shipped `minority` verdict (auditor/verdict.py) on any (N, D)
    matrix, its columns taken as the layers: (verdict, (N,) bool flags). With
    `prompts` (one per row) its instruction check runs too, as in `audit`."""
    from auditor.verdict import analyze
    from auditor.config import AuditConfig
    from auditor.features import FeatureSet, SampleFeatures

    rows = tuple(SampleFeatures(i, f"r{i}", "ok", None, 1, tuple(v), tuple(v))
                 for i, v in enumerate(x.tolist()))
    a = analyze(FeatureSet(rows, {"n_layers": x.shape[1]}), AuditConfig.of(method="minority", seed=seed),
                prompts)
    flags = np.zeros(len(x), dtype=bool)
    flags[[f.index for f in a.flagged]] = True
    return a.verdict, flags


def within_groups(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N, D), (N,) -> (N, D): robust_standardise applied separately inside each group."""
    from auditor.analysis.group import robust_standardise

    out = np.empty_like(x, dtype=np.float64)
    for g in np.unique(groups):
        rows = groups == g
        out[rows] = robust_standardise(x[rows])
    return out


def skewed_tail(x: np.ndarray, seed: int = 0, components: int = 12) -> np.ndarray:
    """Projection pursuit: (N, D) -> (N,) bool. The independent component
    (FastICA, cube contrast) with the largest |skewness|, oriented so its long
    tail is high; the samples a 2-GMM puts in the tail's component."""
    from scipy.stats import skew
    from sklearn.decomposition import FastICA

    from auditor.analysis.cluster import cluster_scores

    s = FastICA(n_components=min(components, x.shape[1]), whiten="unit-variance", fun="cube",
                random_state=seed, max_iter=1000).fit_transform(np.clip(x, -8, 8))
    sk = skew(s, axis=0)
    j = int(np.argmax(np.abs(sk)))
    return cluster_scores(-s[:, j] * np.sign(sk[j]), seed).flagged


def answer_separability(x: np.ndarray, answers: np.ndarray, min_size: int = 10, seed: int = 0) -> dict[str,
                                                                                                       float]:
    """(N, D), (N,) -> {answer: cross-validated AUROC of a regularised logistic
    regression separating that answer's samples from the rest}, for answers
    with at least `min_size` samples."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    out = {}
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for a in np.unique(answers):
        y = answers == a
        if y.sum() >= min_size:
            p = cross_val_predict(LogisticRegression(C=0.1, max_iter=2000), x, y, cv=folds,
                                  method="decision_function")
            out[str(a)] = float(roc_auc_score(y, p))
    return out


def _prompts_and_answers(c: Cell) -> tuple[np.ndarray, np.ndarray]:
    """The cell's instruction and answer per sample (benchmarks.cells.cell_examples)."""
    from .cells import cell_examples

    examples, _ = cell_examples(c)
    return np.array([e.prompt for e in examples]), np.array([e.answer for e in examples])


def main(argv: list[str] | None = None) -> int:
    import pyarrow.parquet as pq

    from auditor.analysis.metrics import detection_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="verdict", help="a results folder under benchmarks/results/")
    ap.add_argument("--features", nargs="+",
                    default=["entropy_norm", "entropy_norm+mass_image+mass_text+mass_rest"])
    ap.add_argument("--skip-minority", action="store_true", help="only the probe table")
    ap.add_argument("--instruction-check", action="store_true",
                    help="give `minority` the cells' instructions (its check that a group is not one "
                         "instruction's samples, as in `audit`); without it, the tables recorded before that "
                         "check")
    ap.add_argument("--candidates", action="store_true",
                    help="also the unsupervised candidates table, on the last feature set")
    args = ap.parse_args(argv)
    cells_dir = ROOT / "benchmarks" / "results" / args.grid / "cells"
    feats = ROOT / "benchmarks" / "cache" / "detection" / "features"
    cells = [Cell(**json.loads(p.read_text())["cell"]) for p in sorted(cells_dir.glob("*.json"))]
    cells = [c for c in cells if c.rate in (0.0, 0.1) and (feats / f"{c.key}.parquet").is_file()]
    if not cells:
        raise SystemExit(f"{cells_dir}: no cells with kept features; run the grid first")
    probes: dict[tuple, list] = {}
    verdicts: dict[tuple, list] = {}
    candidates: dict[tuple, list] = {}
    warnings.simplefilter("ignore")
    for c in cells:
        table = pq.read_table(feats / f"{c.key}.parquet").to_pydict()
        bad = poisoned_ids(c)
        y = np.array([i in bad for i in table["id"]])
        group = (c.task, c.family, c.trigger)
        prompts = _prompts_and_answers(c)[0].tolist() if args.instruction_check else None
        for fs in args.features:
            x = _matrix(table, fs)
            if y.any():
                probes.setdefault(group + (fs,), []).append(probe(x, y, c.seed))
            if not args.skip_minority:
                verdict, flags = minority_on(x, 0, prompts)
                verdicts.setdefault(group + (fs,), []).append(
                    (verdict, detection_metrics(flags, y).f1, float(flags.mean())))
        if args.candidates:
            from tinyworld.digits import TARGET_ANSWER

            prompts, answers = _prompts_and_answers(c)
            z = within_groups(_matrix(table, args.features[-1]), prompts)
            verdict, flags = minority_on(z)  # seed 0, as the table above
            sep = answer_separability(z, answers)
            others = [v for a, v in sep.items() if a != TARGET_ANSWER]
            target = sep.get(TARGET_ANSWER, float("nan"))
            candidates.setdefault(group, []).append(
                (verdict, detection_metrics(flags, y).f1, float(flags.mean()),
                 detection_metrics(skewed_tail(z), y).f1, target, max(others),
                 1 + sum(v > target for v in others) if y.any() else float("nan")))
        print(f"{c.key} done", file=sys.stderr, flush=True)
    print("| task | family | trigger | features | cells | probe AUROC (mean, min) | probe best F1 (mean, "
          "min) |\n|---|---|---|---|---|---|---|")
    for k, v in sorted(probes.items()):
        auroc, f1 = np.array(v).T
        print(f"| {' | '.join(k)} | {len(v)} | {auroc.mean():.3f}, {auroc.min():.3f} | {f1.mean():.3f}, "
              f"{f1.min():.3f} |")
    if verdicts:
        print("\n| task | family | trigger | features | cells | pass / fail / inconclusive | F1 | flagged |\n"
              "|---|---|---|---|---|---|---|---|")
        for k, v in sorted(verdicts.items()):
            counts = " / ".join(str(sum(x[0] == w for x in v)) for w in ("pass", "fail", "inconclusive"))
            print(f"| {' | '.join(k)} | {len(v)} | {counts} | {np.mean([x[1] for x in v]):.3f} | "
                  f"{np.mean([x[2] for x in v]):.1%} |")
    if candidates:
        print(f"\n{args.features[-1]}, standardised within each instruction text:\n\n| task | family | "
              "trigger | cells | minority: pass / fail / inconclusive | minority F1 | flagged | ICA tail F1 "
              "| target-answer AUROC | best clean-answer AUROC | target's rank |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")
        for k, v in sorted(candidates.items()):
            counts = " / ".join(str(sum(x[0] == w for x in v)) for w in ("pass", "fail", "inconclusive"))
            m = [np.nanmean([x[i] for x in v]) if not all(np.isnan(x[i]) for x in v) else float("nan")
                 for i in range(1, 7)]
            print(f"| {' | '.join(k)} | {len(v)} | {counts} | {m[0]:.3f} | {m[1]:.1%} | {m[2]:.3f} | "
                  f"{m[3]:.3f} | {m[4]:.3f} | {m[5]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
