"""Per-head collapse as single-feature voters (after TCAP, arXiv 2601.21692).

    .venv/bin/python -m benchmarks.head_voters --seeds 0 1 2 --clean-seeds 0 1 2 3 4 5 6 7 8 9

BYE averages attention over heads before the entropy; a backdoor may live in
one or two heads and be diluted by the average. For each detection-grid cell
(every task and family; the given triggers at 10%, clean at 0%; the given
seeds) this fine-tunes the submission exactly as `benchmarks.detection` does
(same seed, same model: the head-averaged entropies match the grid's kept
features), captures the query rows with bye-audit's stage 1, and keeps per
head (cache: benchmarks/cache/detection/heads/KEY.npz):

- the entropy of the head's attention over the image tokens (normalised by
  ln T), and
- its peak share: the largest single image token's share of the head's
  image attention (1/T uniform, 1 collapsed onto one token).

Then every head feature, standardised within each instruction text, is a
voter: a 1-D 2-GMM whose collapsed side (high peak share, low entropy) is a
minority (<= 35%) flags that side. It prints, per cell, the best single
head feature's AUROC given the labels (what a perfect voter selection could
reach), the three voters with the largest BSI with their F1, and the mean
pairwise Jaccard overlap of the top four voters' flags (do they agree on one
group). It also runs the `minority` detector (shipped thresholds) on each
per-head view (peak shares, entropies: L x H columns, standardised within each
instruction text) and on their union (fail when either view fails). A
markdown summary per (task, family, trigger) follows. Progress goes to stderr;
about 30 s per new cell on the 2-core machine, a second per cached one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .cells import ROOT, Cell, _quiet, submission
from .feature_ablation import minority_on, within_groups

CACHE = ROOT / "benchmarks" / "cache" / "detection"


def head_features(image_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sample's captured rows on its image tokens (L, H, T), T >= 2 ->
    (normalised entropy (L, H), peak share (L, H)), each head renormalised over
    the image tokens."""
    from auditor.analysis.entropy import head_entropies

    t = image_rows.shape[-1]
    total = image_rows.sum(axis=-1)
    peak = image_rows.max(axis=-1) / np.where(total > 0, total, 1.0)
    return head_entropies(image_rows) / np.log(t), peak


def dump(cell: Cell) -> Path:
    """Fine-tune the cell as the grid does and write its per-head features (cached)."""
    from auditor.config import Stage1Config
    from auditor.extract.runner import sample_rows
    from auditor.pipeline import load
    from tinyworld.world import WORLD_FAMILIES, TASKS, FineTune, build_base, fine_tune

    out = CACHE / "heads" / f"{cell.key}.npz"
    if out.is_file():
        return out
    task, family = TASKS[cell.task], WORLD_FAMILIES[cell.family]
    base = build_base(task, family, CACHE / "bases" / f"{cell.task}-{cell.family}", log=_quiet)
    with tempfile.TemporaryDirectory() as tmp:
        examples, bad = submission(cell, Path(tmp) / "data")
        model, processor = fine_tune(base, family, examples, FineTune(), seed=cell.seed, log=_quiet)
        family.save(model, processor, Path(tmp) / "model")
        del model
        loaded = load(Path(tmp) / "model", Stage1Config())
        caps = []
        for i in range(0, len(examples), 16):
            chunk = examples[i:i + 16]
            caps += sample_rows(loaded, [e.image for e in chunk], [e.prompt for e in chunk])
    entropy, peak = zip(*(head_features(c.image_rows) for c in caps))
    bad_ids = set(bad)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp.npz")
    np.savez(tmp_out, entropy=np.stack(entropy), peak=np.stack(peak),
             poisoned=np.array([f"{cell.task}-{k:04d}" in bad_ids for k in range(len(examples))]),
             prompts=np.array([e.prompt for e in examples]))
    tmp_out.replace(out)
    return out


def voters(columns: dict[str, np.ndarray], prompts: np.ndarray, max_weight: float = 0.35,
           min_count: int = 5, seed: int = 0) -> list[tuple[float, str, np.ndarray]]:
    """Single-feature voters: {name: (N,) values, high = collapsed}, (N,) prompts ->
    [(BSI, name, flags (N,) bool)] by decreasing BSI, for the columns whose
    2-GMM puts the high side in a minority of at most `max_weight` (and at least
    `min_count` samples). Each column is standardised within each prompt first."""
    from auditor.analysis.cluster import cluster_scores
    from auditor.analysis.mixture import bsi

    out = []
    for name, v in columns.items():
        z = np.clip(within_groups(v[:, None], prompts)[:, 0], -10, 10)
        c = cluster_scores(-z, seed)  # the low-mean cluster of -z: the high (collapsed) side
        if c.flagged.mean() <= max_weight and c.flagged.sum() >= min_count:
            out.append((bsi(c.mixture), name, c.flagged))
    return sorted(out, key=lambda v: -v[0])


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two bool masks (N,); 0 when both are empty."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def study(path: Path) -> dict:
    """One cell's per-head file -> its voters, their agreement and the `minority`
    verdicts on the per-head views (what main() prints)."""
    from sklearn.metrics import roc_auc_score

    from auditor.analysis.metrics import detection_metrics

    d = np.load(path)
    y = d["poisoned"]
    n_layers, n_heads = d["entropy"].shape[1:]
    cols = {f"peak {k}.{h}": d["peak"][:, k, h] for k in range(n_layers) for h in range(n_heads)}
    cols.update({f"-entropy {k}.{h}": -d["entropy"][:, k, h] for k in range(n_layers)
                 for h in range(n_heads)})
    vs = voters(cols, d["prompts"])
    top = vs[:4]
    pairs = [jaccard(a[2], b[2]) for i, a in enumerate(top) for b in top[i + 1:]]
    views = {}
    for view in ("peak", "entropy"):
        verdict, flags = minority_on(within_groups(d[view].reshape(len(y), -1), d["prompts"]))
        views[view] = (verdict, flags)
    either = views["peak"] if views["peak"][0] == "fail" else views["entropy"]
    views["either"] = ("fail" if "fail" in (views["peak"][0], views["entropy"][0]) else
                       "inconclusive"
                       if "inconclusive" in (views["peak"][0], views["entropy"][0]) else "pass",
                       either[1] if either[0] == "fail" else np.zeros(len(y), dtype=bool))
    return {"best_auroc": max(roc_auc_score(y, v) for v in cols.values()) if y.any() else float("nan"),
            "top": [(name, b, float(f.mean()), detection_metrics(f, y).f1) for b, name, f in vs[:3]]
            or [("none", float("nan"), 0.0, 0.0)],  # no column has a collapsed minority
            "agreement": float(np.mean(pairs)) if pairs else 0.0, "n_voters": len(vs),
            "minority": {k: (v, detection_metrics(f, y).f1, float(f.mean())) for k, (v, f) in views.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--clean-seeds", type=int, nargs="+", help="seeds of the clean cells (default: --seeds)")
    ap.add_argument("--triggers", nargs="+", default=["centre_patch", "sig", "checkerboard"],
                    help="triggers at 10%%; clean cells are always included")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    pairs = [(t, f) for t in ("digits", "shapes") for f in ("llava", "qwen2_vl")]
    cells = [Cell(t, f, "none", 0.0, s) for s in (args.clean_seeds or args.seeds) for t, f in pairs]
    cells += [Cell(t, f, trig, 0.1, s) for s in args.seeds for trig in args.triggers for t, f in pairs]
    groups: dict[tuple, list] = {}
    print("| cell | best head AUROC | top voters (BSI, share flagged, F1) | top-4 agreement | minority on "
          "peak / entropy / either (verdict, F1) |\n|---|---|---|---|---|")
    for cell in cells:
        t0 = time.time()
        r = study(dump(cell))
        print(f"{cell.key} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        tops = "; ".join(f"{n} {b:.1f}, {w:.0%}, {f1:.2f}" for n, b, w, f1 in r["top"])
        mins = " / ".join(f"{v} {f1:.2f}" for v, f1, _ in r["minority"].values())
        print(f"| {cell.key} | {r['best_auroc']:.3f} | {tops} | {r['agreement']:.2f} | {mins} |", flush=True)
        groups.setdefault((cell.task, cell.family, cell.trigger), []).append(r)
    print("\n| task | family | trigger | cells | best head AUROC | top voter's BSI | top voter's F1 | top-4 "
          "agreement | minority, peak: pass / fail / inconclusive, F1 | entropy | either |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    for k, rs in sorted(groups.items()):
        best = [r["best_auroc"] for r in rs]
        views = []
        for view in ("peak", "entropy", "either"):
            got = [r["minority"][view] for r in rs]
            counts = " / ".join(str(sum(g[0] == w for g in got)) for w in ("pass", "fail", "inconclusive"))
            views.append(f"{counts}, {np.mean([g[1] for g in got]):.2f}")
        print(f"| {' | '.join(k)} | {len(rs)} | {'-' if np.isnan(best).all() else f'{np.nanmean(best):.3f}'} "
              f"| {np.mean([r['top'][0][1] for r in rs]):.1f} | {np.mean([r['top'][0][3] for r in rs]):.2f} "
              f"| {np.mean([r['agreement'] for r in rs]):.2f} | {' | '.join(views)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
