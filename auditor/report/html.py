"""The HTML report: self-contained (inline CSS, data-URI images), autoescaped."""

from __future__ import annotations

import base64
import re
import shlex
from collections import Counter
from importlib.resources import files
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from .. import __version__
from ..verdict import Analysis, Flag
from ..data import Dataset
from ..gate import Gate
from ..evidence.manifest import audit_environment, versions_line
from ..features import FeatureSet
from ..features.provenance import AdapterRef, BaseRef, ModelRef, Provenance
from .heatmaps import colour_scale_png, heatmap_layers
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


def render_html(analysis: Analysis, provenance: Provenance | Mapping[str, Any], dataset: Dataset,
                heatmaps: dict[int, tuple[bytes, bytes]] | None = None, gate: Gate | None = None,
                signing: dict[str, str] | None = None, features: FeatureSet | None = None,
                about: dict[str, Any] | None = None) -> bytes:
    """The report; `heatmaps` maps record indices to (thumbnail, attention overlay)
    PNGs for the samples shown (absent when no model was at hand, as in `analyze`);
    `gate` is the exit code under --fail-on; `signing` names the signing key
    (None: unsigned); `features` gives the per-layer entropy of flagged vs kept;
    `about`: {"report_id", "audited_at"} of the audit."""
    prov = provenance if isinstance(provenance, Provenance) else Provenance.from_dict(provenance)
    heatmaps = heatmaps or {}
    about = about or {}
    layers, info = analysis.layers, analysis.detector.info
    config = analysis.config.to_dict()
    bsi_img = (_data_uri(bsi_plot([p.bsi for p in layers], list(analysis.sensitive_layers), config["tau"]))
               if layers else None)
    hist_img = None
    if analysis.clustering is not None:
        c = analysis.clustering
        m = c.mixture
        # A group judged not credible is drawn, but nothing in it is flagged.
        shown = c.flagged if analysis.flagged else np.zeros_like(c.flagged)
        hist_img = _data_uri(score_histogram(c.scores, shown, c.threshold,
                                             list(zip(m.weights, m.means, m.variances)),
                                             xlabel=info.score_axis))
    layer_img = None
    if features is not None and analysis.scored:
        values, _ = features.layer_values("entropy_norm", len(layers))
        rows = _positions(np.asarray(features.column("index")), analysis.scored.index)
        bad = np.isin(analysis.scored.index, [f.index for f in analysis.flagged])
        groups = [values[rows[bad == b]] for b in (False, True)]
        layer_img = _data_uri(entropy_by_layer(groups[0], groups[1], list(analysis.evidence_layers),
                                               info.layer_word))

    channels = analysis.flagged_by
    flagged_set = {f.index for f in (*analysis.flagged, *analysis.undecided)}  # never shown as contrast
    by_suspicion = sorted(analysis.flagged, key=lambda f: (f.score, f.index))  # lowest score first
    undecided = sorted(analysis.undecided, key=lambda f: (f.score, f.index))
    shown_kept = np.isin(analysis.scored.index, [i for i in heatmaps if i not in flagged_set])
    shown = ([f.index for f in (*by_suspicion[:MAX_FLAGGED_ROWS], *undecided[:MAX_FLAGGED_ROWS])]
             + analysis.scored.index[shown_kept].tolist())
    scored_answers = answer_columns(features, shown) if features is not None else {}

    ranked = np.sort(analysis.scored.score)  # rank 1: the most suspicious (lowest score)

    def row(f):
        pics = heatmaps.get(f.index)
        nll, base = scored_answers.get(f.index, (None, None))
        return {"id": f.id, "index": f.index, "score": f.score,
                "rank": int(np.searchsorted(ranked, f.score, side="left")) + 1,
                "prompt": dataset.samples[f.index].prompt[:160],
                "answer": dataset.samples[f.index].answer[:160],
                "channels": ", ".join(channels.get(f.index, [])),
                "nll": nll, "gain": None if nll is None or base is None else base - nll,
                "thumb": _data_uri(pics[0]) if pics else None,
                "heat": _data_uri(pics[1]) if pics else None}

    flagged_rows = [row(f) for f in by_suspicion[:MAX_FLAGGED_ROWS]]
    undecided_rows = [row(f) for f in undecided[:MAX_FLAGGED_ROWS]]
    kept_rows = [row(f) for f in analysis.scored.flags(shown_kept)]
    # rows up to the last one with a heatmap get the full table, the rest a compact one
    with_images = max((k + 1 for k, r in enumerate(flagged_rows or undecided_rows) if r["heat"]), default=0)
    html = _env().get_template("report.html.j2").render(
        a=analysis, meta=prov, dataset=dataset, dataset_path=str(dataset.path), bsi_img=bsi_img,
        hist_img=hist_img, layer_img=layer_img, libraries=_library_rows(prov), flagged_rows=flagged_rows,
        kept_rows=kept_rows, has_heatmaps=bool(heatmaps), with_images=with_images,
        with_answers=bool(scored_answers), with_channels=bool(channels),
        channels=analysis.details.get("channels"),
        heatmap_layers=", ".join(map(str, heatmap_layers(analysis, prov.n_layers or 0))) or "all",
        scale_img=_data_uri(colour_scale_png()) if heatmaps else None,
        more_flagged=max(0, len(analysis.flagged) - MAX_FLAGGED_ROWS),
        causes=analysis.causes, config=config, info=info, params=analysis.config.detection.params,
        environment=_environment_rows(prov, config), gate=gate, signing=signing,
        about=about, finding=finding(analysis, dataset), version=__version__,
        undecided_rows=undecided_rows, more_undecided=max(0, len(undecided) - MAX_FLAGGED_ROWS),
        undecided=finding(analysis, dataset, analysis.undecided) if analysis.undecided else None,
        fix=fix_command(analysis, prov, str(dataset.path)) if analysis.verdict == "inconclusive" else None,
        model_name=_name(prov.model), adapter_name=_name(prov.adapter), base_name=_name(prov.base),
        many_flagged=MANY_FLAGGED)
    return html.encode("utf-8", "backslashreplace")


def answer_columns(features: FeatureSet, wanted: list[int]) -> dict[int, tuple[float | None, float | None]]:
    """Record index -> (answer NLL, base NLL) for the `wanted` records whose answer was scored."""
    if not wanted:
        return {}
    t = features.table.take(_positions(np.asarray(features.column("index")), np.asarray(wanted)))
    nll, base = (t.column(c).to_pylist() for c in ("answer_nll", "base_answer_nll"))
    return {i: (a, b) for i, a, b in zip(wanted, nll, base) if a is not None}


MANY_FLAGGED = 0.35  # above this share flagged, the report warns: a backdoor is usually a small minority


def _name(part: ModelRef | AdapterRef | BaseRef | None) -> str | None:
    """A checkpoint's name as a reader knows it: its folder's name."""
    if part is None or not part.path:
        return None
    return Path(part.path).name or part.path


def _environment_rows(prov: Provenance, config: dict[str, Any]) -> list[tuple[str, str]]:
    """The runtime rows, each as text; a setting the configuration table already
    shows appears again only where what ran differs from what was asked
    (device "auto" that ran on "cpu")."""
    env = {} if prov.environment is None else prov.environment.to_dict()
    out = []
    for k in sorted(env):
        if k == "libraries":
            continue
        v = _flat(env[k])
        if k in config:
            if v == str(config[k]):
                continue
            k = f"{k} (used)"
        out.append((k, v))
    return out


def _library_rows(prov: Provenance) -> list[tuple[str, str]]:
    """The versions that produced the audit: stage 1's (from the features'
    provenance) and, where they differ, those of stages 2-3 and the report."""
    env = audit_environment(prov)
    stage1 = versions_line((env["stage1"] or {}).get("libraries"))
    analysis = versions_line(env["analysis"]["libraries"])
    if stage1 == analysis:
        return [("libraries", analysis)]
    return [("libraries (stage 1)", stage1 or "not recorded (features imported without provenance)"),
            ("libraries (stages 2-3, report)", analysis)]


def _flat(v: Any) -> str:
    """A nested record as one line: {"name": "onnx", "provider": "cpu"} -> "onnx (provider cpu)"."""
    if not isinstance(v, dict):
        return str(v)
    rest = ", ".join(f"{k} {_flat(x)}" for k, x in v.items() if k != "name")
    if "name" in v:
        return f"{v['name']} ({rest})" if rest else str(v["name"])
    return rest


def _common(texts: list[str], others: list[str], top: int = 3) -> list[dict[str, Any]]:
    """The texts markedly more frequent among `texts` (the flagged samples') than
    among `others` (the kept ones'): at least three times their share there;
    each with its count in both, most frequent first. A text the whole dataset
    shares says nothing about the flagged samples."""
    counts = Counter(t.strip() for t in texts)
    rest = Counter(t.strip() for t in others)
    out = []
    for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        share, elsewhere = n / len(texts), rest.get(t, 0) / max(len(others), 1)
        if n >= 2 and share >= 3 * elsewhere:
            out.append({"text": t, "count": n, "elsewhere": rest.get(t, 0)})
    return out[:top]


def finding(analysis: Analysis, dataset: Dataset, members: Sequence[Flag] | None = None) -> dict[str, Any]:
    """The plain-language finding: how many are flagged (or are `members`, e.g.
    the undecided group), what they share (answers, instructions, with how
    often the rest of the data has them), and those nearest the boundary (the
    least certain)."""
    members = analysis.flagged if members is None else members
    flagged = {f.index for f in members}
    samples = dataset.samples
    kept = [s for s in samples if s.index not in flagged and s.ok]
    bad = [samples[i] for i in sorted(flagged)]
    nearest = sorted(members, key=lambda f: (-f.score, f.index))[:3]
    return {
        "n": len(flagged), "records": analysis.n_records,
        "share": len(flagged) / analysis.n_records if analysis.n_records else 0.0,
        "answers": _common([s.answer for s in bad], [s.answer for s in kept]),
        "prompts": _common([s.prompt for s in bad], [s.prompt for s in kept]),
        "n_kept": len(kept),
        "nearest": [{"id": f.id, "score": f.score} for f in nearest],
    }


def fix_command(analysis: Analysis, prov: Provenance, dataset_path: str) -> str | None:
    """What to run (or do) so that an inconclusive audit can decide, from the
    reasons it gives; None when there is no single fix."""
    codes = {r.code for r in analysis.reasons}
    model = shlex.quote(prov.model.path) if prov.model else "CHECKPOINT_DIR"
    data = shlex.quote(dataset_path)
    if "base_not_informative" in codes:
        return (f"bye-audit audit --model {model} --base BASE_DIR --base-sha256 DIGEST --data {data} --out "
                "NEW_OUT (BASE_DIR: the model this fine-tune started from, not the submission; DIGEST: its "
                "published tree digest)")
    if "group_may_be_content" in codes or "base_needed" in codes:
        if prov.adapter:
            adapter = shlex.quote(prov.adapter.path)
            return (f"bye-audit audit --model {model} --adapter {adapter} --data {data} --out NEW_OUT "
                    "(with the base pass: without --no-base-pass)")
        return (f"bye-audit audit --model {model} --base BASE_DIR --data {data} --out NEW_OUT "
                "(BASE_DIR: the model this fine-tune started from)")
    if "coverage_below_min" in codes or "too_few_samples" in codes or "unanalysed_concentrated" in codes:
        return ("make the records listed under Records not analysed readable (each cause names its fix), "
                "then audit again")
    return None


def _positions(index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row positions (M,) of the record indices `wanted` (M,) in a column `index` (N,)."""
    order = np.argsort(index, kind="stable")
    return order[np.searchsorted(index[order], wanted)]
