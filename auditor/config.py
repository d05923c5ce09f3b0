"""The one frozen configuration of an audit: every threshold and switch.

It is serialised into every output (features metadata, analysis.json, report).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

BsiRule = Literal["paper", "reference"]
Method = Literal["bye", "minority"]


@dataclass(frozen=True)
class AuditConfig:
    # Stage 1
    batch_size: int = 8
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights; captured rows are fp32
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda" or "cuda:N"
    attn_implementation: Literal["sdpa"] = "sdpa"  # computes the layer outputs
    entropy_eps: float = 1e-8  # H = -sum p log(p + eps), docs/method.md
    allow_pickle: bool = False  # pickle weights (weights-only loader) when no safetensors exist
    per_head: bool = False  # also store per-head entropies (L x H per sample)
    resume: bool = True  # reuse the shards an interrupted run left (their journal checked); False: recompute all
    shard_size: int = 512  # samples per resumable shard of stage 1 (rounded up to whole batches)
    # Limits on untrusted records (a record over one is skipped with its reason):
    # an image's pixel count, checked from its header before decoding (a 0.5 MB
    # PNG can declare 168 MP, gigabytes once decoded; 50 MP is past any
    # MLLM's input: the processor downscales to about 0.1-1 MP), and the
    # instruction's token count (None: the language model's context length).
    max_image_pixels: int = 50_000_000
    max_prompt_tokens: int | None = None
    # Stage 1 runs on the torch model, or on a graph exported by `export-onnx`
    # with ONNX Runtime on `provider`; a provider ONNX Runtime cannot load is an
    # error unless `allow_fallback` (then the CPU runs it, and the metadata says so).
    backend: Literal["torch", "onnx"] = "torch"
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    allow_fallback: bool = False
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = one per physical core
    # Where stage 1 runs: this process, or a Ray cluster's actor pool of
    # `workers` (each with `gpus_per_worker` GPUs); same shards, same features.
    engine: Literal["local", "ray"] = "local"
    workers: int = 1
    gpus_per_worker: float = 0.0
    # Stages 2-3: "bye" is the paper's procedure, untouched; "minority" looks for
    # a compact minority group across all layers, either direction (analysis/group.py).
    method: Method = "minority"
    # Stage 2: a layer is sensitive when BSI >= tau ("paper") or when
    # |mu1 - mu2| > 2 (s1 + s2) ("reference", the reference code's rule).
    tau: float = 2.0
    bsi_rule: BsiRule = "paper"
    # Stages 2-3: GaussianMixture(n_components=2, random_state=seed), fitted on
    # at most `fit_sample` rows drawn with `seed` (all rows when there are
    # fewer); every row is then assigned by the fitted mixture.
    seed: int = 0
    fit_sample: int = 50_000
    # Verdict: below these the evidence cannot carry a verdict -> inconclusive.
    min_samples: int = 50
    min_coverage: float = 0.95
    # "minority": a group is credible backdoor evidence only when it is a
    # minority (weight <= group_max_fraction), separated (BSI of the discriminant
    # score >= group_min_separation and >= group_null_factor x the largest BSI
    # the same fit gives on Gaussian noise of the same size), and compact (its sd
    # <= group_max_spread_ratio x the rest's). docs/method.md justifies each.
    group_max_fraction: float = 0.35
    group_min_separation: float = 3.0
    group_null_factor: float = 2.0
    group_max_spread_ratio: float = 1.0
    # ... and not the samples of a few instruction texts: a separated minority
    # that matches, at a Jaccard index >= group_max_instruction_match, all the
    # samples of the instructions mostly inside it (each with at least
    # instruction_min_samples samples) is the prompt's doing, not the image's.
    group_max_instruction_match: float = 0.9
    instruction_min_samples: int = 10
    # After a credible group, the rest is searched again with the same criteria
    # (decoys can take the best split); at most this many groups in all.
    group_max_groups: int = 3
    # Layers whose |Cohen's d| between group and rest reaches this are reported
    # as the evidence layers (and drive the heatmaps).
    evidence_effect: float = 1.0
    # Gate (exit code of a fail verdict): "verdict" exits 1 on any flagged sample;
    # "count:N" / "fraction:F" exit 1 only when more than N samples, or more
    # than the share F of the analysed samples, are flagged (auditor/gate.py).
    fail_on: str = "verdict"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be torch or onnx, got {self.backend!r}")
        if self.provider not in ("cpu", "cuda", "tensorrt"):
            raise ValueError(f"provider must be cpu, cuda or tensorrt, got {self.provider!r}")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be local or ray, got {self.engine!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1 (or unset), got {self.max_prompt_tokens}")
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        if self.method not in ("bye", "minority"):
            raise ValueError(f"method must be 'bye' or 'minority', got {self.method!r}")
        if not 0.0 < self.group_max_fraction <= 0.5:
            raise ValueError(f"group_max_fraction must be in (0, 0.5], got {self.group_max_fraction}")
        if not 0.0 < self.group_max_instruction_match <= 1.0:
            raise ValueError(f"group_max_instruction_match must be in (0, 1], got {self.group_max_instruction_match}")
        if self.group_max_groups < 1:
            raise ValueError(f"group_max_groups must be >= 1, got {self.group_max_groups}")
        if self.instruction_min_samples < 2:
            raise ValueError(f"instruction_min_samples must be >= 2, got {self.instruction_min_samples}")
        if self.bsi_rule not in ("paper", "reference"):
            raise ValueError(f"bsi_rule must be 'paper' or 'reference', got {self.bsi_rule!r}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in [0, 1], got {self.min_coverage}")
        if self.fit_sample < self.min_samples:
            raise ValueError(f"fit_sample must be >= min_samples ({self.min_samples}), got {self.fit_sample}")
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be >= 2 (a 2-component mixture), got {self.min_samples}")

        from .gate import parse_fail_on

        parse_fail_on(self.fail_on)  # raises ValueError naming the value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
