"""`bye`: the paper's stages 2-3, untouched (Rong et al., 2025).

Per-layer two-component mixtures select the sensitive layers (BSI >= tau, or
the reference code's |mu1 - mu2| > 2 (s1 + s2)); the mean entropy over them is
clustered by a two-component mixture and the lower-entropy cluster is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import numpy as np

from ..analysis.cluster import cluster_scores, sensitive_score
from .base import REMEDY, Context, Criterion, MethodInfo, Reason
from .params import check, param

BsiRule = Literal["paper", "reference"]
BSI_RULES: tuple[str, ...] = get_args(BsiRule)

@dataclass(frozen=True)
class ByeParams:
    tau: float = param(2.0, "BSI threshold for a sensitive layer", ge=0)
    bsi_rule: BsiRule = param("paper", "paper: BSI >= tau; reference: |mu1-mu2| > 2(s1+s2) (the reference "
                                       "code's rule)", choices=BSI_RULES)

    def __post_init__(self) -> None:
        check(self)


class ByeDetector:
    name: ClassVar[str] = "bye"
    Params: ClassVar[type] = ByeParams
    info: ClassVar[MethodInfo] = MethodInfo(
        title="BYE's low-entropy cluster",
        help="the paper's stages 2-3: BSI-sensitive layers, the lower-entropy cluster flagged",
        description=(
            "Method bye (Rong et al., 2025): entropy of the head-averaged attention of the last prompt "
            "position onto the image tokens, per decoder layer, renormalised over image tokens and divided "
            "by ln T; per-layer two-component Gaussian mixtures select sensitive layers by BSI; the mean "
            "over those layers is clustered by a two-component mixture and the lower-entropy cluster is "
            "flagged."),
        criteria_intro="Method bye: the paper's procedure. It flags the lower-entropy cluster when this "
                       "holds:",
        score_text="Here: the mean normalised entropy over the sensitive layers.",
        score_axis="mean normalised entropy over sensitive layers",
        layer_word="sensitive",
        layer_definition=("Layers whose entropies split into two well-separated groups (bimodal separation "
                          "index ≥ τ = {p.tau})."),
        limitations=(
            "BYE looks for attention that collapses onto a few image tokens. Global triggers (Blend, SIG, "
            "WaNet, frequency triggers) spread attention instead and are reported to evade it.",
            "With no sensitive layer the verdict is pass: the absence of bimodal entropy is not proof of a "
            "clean model.",
            "Whether poisoned samples have lower or higher entropy depends on the model; BYE flags the lower "
            "cluster only, whatever its size. --method minority looks in both directions and asks for a "
            "compact minority.",
        ),
        sarif_rule={
            "id": "BYE001",
            "name": "AttentionCollapseCluster",
            "shortDescription": {"text": "Training sample whose attention on the image collapses (BYE's "
                                         "low-entropy cluster): suspected backdoor trigger."},
            "fullDescription": {"text": (
                "BYE: the fine-tuned model's attention from the last prompt position onto the image has "
                "lower entropy for this sample in the BSI-sensitive layers than for the rest of the data: it "
                "is in the lower of two entropy clusters, the signature of a small trigger patch.")},
            "help": {"text": REMEDY, "markdown": (
                "**Suspected backdoor sample (BYE).** The model's attention on this record's image collapses "
                "onto a few patches in the sensitive layers, as it does for samples carrying a trigger.\n\n"
                "1. Inspect the image (a small patch, sticker or pattern).\n2. Train on `cleaned.*` from the "
                "audit bundle, which omits every flagged record.\n3. Audit the new fine-tune.\n\nBYE does "
                "not see global triggers (blend, warping); a pass is not proof of a clean model.")},
        },
        many_flagged_note=("BYE flags one of two clusters whatever their sizes; --method minority checks "
                           "that a group is a compact minority"),
    )

    def __init__(self, params: ByeParams | None = None) -> None:
        self.params = params or ByeParams()

    def fit(self, x: np.ndarray, context: Context) -> ByeDetector:
        """x: (N, L) normalised entropies; context.layers: their BSI profile
        under this detector's tau and rule. Scores: the mean over the
        sensitive layers (low = collapsed = suspicious)."""
        p, layers = self.params, context.layers
        sensitive = tuple(lp.layer for lp in layers if lp.sensitive)
        best = max(layers, key=lambda lp: lp.bsi)
        rule = f"≥ {p.tau}" if p.bsi_rule == "paper" else "|mu1 - mu2| > 2 (s1 + s2)"
        self.criteria_ = (Criterion(
            "sensitive_layer", best.bsi, rule, bool(sensitive),
            "a sensitive layer: the largest bimodal separation index (BSI) of a layer",
            f"{best.bsi:.2f} (layer {best.layer})"),)
        self.evidence_layers_ = sensitive
        self.contrast_, self.details_ = (), {}
        if not sensitive:
            rule_text = f"BSI >= {p.tau}" if p.bsi_rule == "paper" else "|mu1 - mu2| > 2 (s1 + s2)"
            self.reasons_ = (Reason("no_sensitive_layer",
                                    f"no layer is sensitive ({rule_text}); the largest BSI is {best.bsi:.2f} "
                                    f"at layer {best.layer}"),)
            self.scores_, self.flagged_ = np.zeros(0), np.zeros(len(x), dtype=bool)
            self.clustering_, self.converged_ = None, all(lp.mixture.converged for lp in layers)
            self.evidence_text_ = "no sensitive layer"
            return self
        clustering = cluster_scores(sensitive_score(x, list(sensitive)), context.seed, context.fit_sample)
        m = clustering.mixture
        self.clustering_, self.scores_, self.flagged_ = clustering, clustering.scores, clustering.flagged
        self.converged_ = m.converged and all(lp.mixture.converged for lp in layers if lp.sensitive)
        self.reasons_ = (Reason("group_flagged", (
            f"{len(sensitive)} sensitive layer(s) {list(sensitive)}; {int(clustering.flagged.sum())} of "
            f"{len(x)} samples fall in the low-entropy cluster (mean score {m.means[0]:.3f} vs "
            f"{m.means[1]:.3f}, weight {m.weights[0]:.1%})")),)
        self.evidence_text_ = ("attention on the image more collapsed (lower entropy) than the rest in "
                               f"sensitive layers {', '.join(map(str, sensitive))}")
        return self

