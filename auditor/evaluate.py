"""`bye-audit evaluate`: an audit's flags against ground truth (benchmarks, demos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sklearn.metrics import roc_auc_score

from .analysis.metrics import detection_metrics, layer_aurocs
from .verdict import split_usable
from .errors import AuditInputError
from .features import read_features
from .bundle import ANALYSIS, FEATURES


def read_truth(path: Path) -> set[str]:
    """Poisoned ids, one per line; blank lines and '#' comments ignored."""
    if not Path(path).is_file():
        raise AuditInputError(f"{path}: truth file not found; pass a file of poisoned ids, one per line")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AuditInputError(f"{path}: not UTF-8 text (byte {e.start}); pass a UTF-8 file of poisoned ids, "
                              "one per line") from None
    return {ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")}


def evaluate_outputs(out_dir: Path, truth_path: Path) -> dict[str, Any]:
    """Precision, recall, F1, FPR over all records (unanalysed ones count as not
    flagged), and per-layer AUROCs of both entropy directions over analysed ones."""
    out_dir = Path(out_dir)
    analysis_path = out_dir / ANALYSIS
    if not analysis_path.is_file():
        raise AuditInputError(f"{analysis_path}: not found; pass the --out folder of an audit")
    try:
        analysis = json.loads(analysis_path.read_text(encoding="utf-8"))
        flagged_ids = {f["id"] for f in analysis["flagged"]}
        scores = {f["id"]: f["score"] for f in analysis["scores"]}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AuditInputError(f"{analysis_path}: not a bye-audit analysis file ({e})") from None
    features = read_features(out_dir / FEATURES)
    ids = features.column("id")
    truth = read_truth(truth_path)
    unknown = truth - set(ids)
    if unknown:
        raise AuditInputError(f"{truth_path}: {len(unknown)} id(s) are not in the audited dataset, "
                              f"e.g. {sorted(unknown)[0]!r}; check that truth and audit match")
    y = np.array([i in truth for i in ids])
    pred = np.array([i in flagged_ids for i in ids])
    result: dict[str, Any] = {"verdict": analysis.get("verdict"), **detection_metrics(pred, y).to_dict()}
    result["missed"] = [i for i, t, p in zip(ids, y.tolist(), pred.tolist()) if t and not p]
    result["wrongly_flagged"] = [i for i, t, p in zip(ids, y.tolist(), pred.tolist()) if p and not t]
    ok, _ = split_usable(features)
    y_ok = np.array([i in truth for i in ok.ids])
    both = bool(ok.ids) and y_ok.any() and not y_ok.all()
    result["auroc"] = None
    if both and scores:
        s = np.array([scores[i] for i in ok.ids])
        result["auroc"] = float(roc_auc_score(y_ok, -s))
    if both:
        result["layer_auroc"] = layer_aurocs(ok.entropy, y_ok)
    return result


def rounded(value: Any, digits: int = 6) -> Any:
    """`value` with every float rounded to `digits` (the JSON form's numbers)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def render_table(result: dict[str, Any], max_ids: int = 20) -> str:
    """The readable form of `evaluate_outputs`: confusion table, metrics, and
    the ids missed and wrongly flagged (the first `max_ids` of each)."""
    def ids(xs: list[str]) -> str:
        if not xs:
            return "none"
        more = f", ... and {len(xs) - max_ids} more (--json lists all)" if len(xs) > max_ids else ""
        return ", ".join(repr(x) for x in xs[:max_ids]) + more

    auroc = "n/a" if result.get("auroc") is None else f"{result['auroc']:.3f}"
    w = max(len(f"{result[k]:,}") for k in ("tp", "fp", "fn", "tn"))
    lines = [
        f"verdict: {str(result.get('verdict')).upper()} ({result['n']:,} records)",
        "",
        f"{'':>10}  {'flagged':>{max(w, 7)}}  {'not flagged':>{max(w, 11)}}",
        f"{'poisoned':>10}  {result['tp']:>{max(w, 7)},}  {result['fn']:>{max(w, 11)},}",
        f"{'clean':>10}  {result['fp']:>{max(w, 7)},}  {result['tn']:>{max(w, 11)},}",
        "",
        f"precision {result['precision']:.3f}   recall {result['recall']:.3f}   F1 {result['f1']:.3f}   "
        f"false-positive rate {result['fpr']:.4f}   AUROC of the score {auroc}",
        f"missed (poisoned, not flagged): {ids(result['missed'])}",
        f"wrongly flagged (clean, flagged): {ids(result['wrongly_flagged'])}",
    ]
    return "\n".join(lines)
