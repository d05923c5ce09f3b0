"""`bye-audit evaluate`: an audit's flags against ground truth (benchmarks, demos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sklearn.metrics import roc_auc_score

from .analysis.metrics import detection_metrics, layer_aurocs
from .analysis.verdict import split_usable
from .errors import AuditInputError
from .extract.features import read_features
from .pipeline import ANALYSIS, FEATURES


def read_truth(path: Path) -> set[str]:
    """Poisoned ids, one per line; blank lines and '#' comments ignored."""
    if not Path(path).is_file():
        raise AuditInputError(f"{path}: truth file not found; pass a file of poisoned ids, one per line")
    return {ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")}


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
