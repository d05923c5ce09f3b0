"""The HTML report: self-contained (inline CSS, data-URI images), autoescaped."""

from __future__ import annotations

import base64
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ..analysis.verdict import Analysis
from ..data import Dataset
from ..gate import Gate
from ..evidence.manifest import library_versions
from ..extract.features import FeatureSet
from .plots import bsi_plot, entropy_by_layer, score_histogram

MAX_FLAGGED_ROWS = 200


def templates_dir() -> Path:
    """Installed wheels carry templates inside the package; a source checkout
    (editable install) keeps them in the top-level templates/ folder."""
    packaged = Path(str(files("auditor"))) / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "templates"


# Characters a reader cannot see but that change what is shown: C0/C1 controls
# (NUL, ESC; not tab or newline), bidi embeddings, overrides and isolates
# (U+202A-202E, U+2066-2069: "Trojan Source"), zero-width and other format
# characters, line/paragraph separators, lone surrogates, and Unicode tag
# characters (invisible text).
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                        "\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]")


def _escape_code(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"


def visible(value: Any) -> Any:
    """A dataset string as shown in the report: every invisible or
    direction-changing character written as its escape (U+202E -> "\\u202e"),
    so one record cannot hide text or reorder its neighbours. Markup (our own
    HTML) and non-strings pass through."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return _INVISIBLE.sub(_escape_code, value)
    return value


def _env() -> Environment:
    # finalize runs on every {{ value }} before autoescaping: no dataset string
    # reaches the page without passing `visible`.
    return Environment(loader=FileSystemLoader(templates_dir()),
                       autoescape=select_autoescape(["html", "j2"], default=True),
                       keep_trailing_newline=True, finalize=visible)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def render_html(analysis: Analysis, meta: dict[str, Any], dataset: Dataset,
                heatmaps: dict[int, tuple[bytes, bytes]] | None = None, gate: Gate | None = None,
                signing: dict[str, str] | None = None, features: FeatureSet | None = None) -> bytes:
    """The report; `heatmaps` maps record indices to (thumbnail, attention overlay)
    PNGs for the samples shown (absent when no model was at hand, as in `analyze`);
    `gate` is the exit code under --fail-on; `signing` names the signing key
    (None: unsigned); `features` gives the per-layer entropy of flagged vs kept."""
    heatmaps = heatmaps or {}
    layers = analysis.layers
    bsi_img = (_data_uri(bsi_plot([p.bsi for p in layers], [p.layer for p in layers if p.sensitive],
                                  analysis.config.tau)) if layers else None)
    hist_img = None
    if analysis.clustering is not None:
        c = analysis.clustering
        m = c.mixture
        # A group judged not credible is drawn, but nothing in it is flagged.
        shown = c.flagged if analysis.flagged else np.zeros_like(c.flagged)
        hist_img = _data_uri(score_histogram(c.scores, shown, c.threshold,
                                             list(zip(m.weights, m.means, m.variances)),
                                             xlabel=("discriminant score (group low)" if analysis.group
                                                     else "mean normalised entropy over sensitive layers")))
    layer_img = None
    if features is not None and analysis.scored:
        values, _ = features.layer_values("entropy_norm", len(layers))
        rows = _positions(np.asarray(features.column("index")), analysis.scored.index)
        bad = np.isin(analysis.scored.index, [f.index for f in analysis.flagged])
        groups = [values[rows[bad == b]] for b in (False, True)]
        layer_img = _data_uri(entropy_by_layer(groups[0], groups[1], list(analysis.sensitive_layers)))
    def row(f):
        pics = heatmaps.get(f.index)
        return {"id": f.id, "index": f.index, "score": f.score,
                "prompt": dataset.samples[f.index].prompt[:160],
                "answer": dataset.samples[f.index].answer[:160],
                "thumb": _data_uri(pics[0]) if pics else None,
                "heat": _data_uri(pics[1]) if pics else None}

    flagged_set = {f.index for f in analysis.flagged}
    flagged_rows = [row(f) for f in analysis.flagged[:MAX_FLAGGED_ROWS]]
    shown_kept = np.isin(analysis.scored.index, [i for i in heatmaps if i not in flagged_set])
    kept_rows = [row(f) for f in analysis.scored.flags(shown_kept)]
    skipped = [{"id": u.id, "reason": u.reason} for u in analysis.unanalysed]
    html = _env().get_template("report.html.j2").render(
        a=analysis, meta=meta, dataset_path=str(dataset.path), bsi_img=bsi_img,
        hist_img=hist_img, layer_img=layer_img, libraries=library_versions(), flagged_rows=flagged_rows, kept_rows=kept_rows,
        has_heatmaps=bool(heatmaps), heatmap_layers=", ".join(map(str, analysis.sensitive_layers)) or "all",
        more_flagged=max(0, len(analysis.flagged) - MAX_FLAGGED_ROWS),
        skipped=skipped[:MAX_FLAGGED_ROWS], more_skipped=max(0, len(skipped) - MAX_FLAGGED_ROWS),
        config=analysis.config.to_dict(), gate=gate, signing=signing)
    return html.encode("utf-8", "backslashreplace")


def _positions(index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row positions (M,) of the record indices `wanted` (M,) in a column `index` (N,)."""
    order = np.argsort(index, kind="stable")
    return order[np.searchsorted(index[order], wanted)]
