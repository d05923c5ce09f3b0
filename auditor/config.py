"""The one frozen configuration of an audit: every threshold and switch.

An `AuditConfig` is composed of three parts, each validated where it is
defined: stage 1 (`Stage1Config`), detection (`DetectionConfig`, which holds
each detector's own parameters record, checked by that record), and the gate
(`GateConfig`). Enum values are spelled once, here (and the method names in
the detector registry); the CLI offers these values and builds the config from
its options, nothing more. The config is serialised flat, one key per setting,
into every output (features metadata, analysis.json, summary.json, report).
"""

from __future__ import annotations

import re

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from .detectors import DETECTORS, channels_of
from .gate import FailOn, parse_fail_on

Dtype = Literal["float32", "bfloat16", "float16"]
Backend = Literal["torch", "onnx"]
Provider = Literal["cpu", "cuda", "tensorrt"]
Engine = Literal["local", "ray"]
DTYPES: tuple[str, ...] = get_args(Dtype)
BACKENDS: tuple[str, ...] = get_args(Backend)
PROVIDERS: tuple[str, ...] = get_args(Provider)
ENGINES: tuple[str, ...] = get_args(Engine)


@dataclass(frozen=True)
class Stage1Config:
    """How stage 1 runs; everything here determines the features (the resume
    fingerprint hashes all of it)."""

    batch_size: int = 8
    dtype: Dtype = "float32"  # weights; captured rows are fp32
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda" or "cuda:N"
    attn_implementation: Literal["sdpa"] = "sdpa"  # computes the layer outputs
    entropy_eps: float = 1e-8  # H = -sum p log(p + eps), docs/method.md
    allow_pickle: bool = False  # pickle weights (weights-only loader) when no safetensors exist
    per_head: bool = False  # also store per-head entropies (L x H per sample)
    # Score each record's answer turn in the same pass (NLL under the submitted
    # model), and, with `answers`, under the base where one is known (the
    # adapter disabled, or --base).
    answers: bool = True
    base_pass: bool = True
    # The base's expected tree digest (fileio.sha256_tree, as summary.json's
    # base.sha256_tree records it): a base folder with another digest is refused.
    base_sha256: str | None = None
    # reuse the shards an interrupted run left (their journal checked); False: recompute all
    resume: bool = True
    shard_size: int = 512  # samples per resumable shard of stage 1 (rounded up to whole batches)
    # Limits on untrusted records (a record over one is skipped with its reason):
    # an image's pixel count, checked from its header before decoding (a 0.5 MB
    # PNG can declare 168 MP, gigabytes once decoded; 50 MP is past any
    # MLLM's input: the processor downscales to about 0.1-1 MP), and the
    # instruction's token count (None: the language model's context length).
    max_image_pixels: int = 50_000_000
    max_prompt_tokens: int | None = None
    # Each answer turn's token bound (longer ones are cut to it and counted;
    # None: what fits the model's context after the prompt, which every
    # conversation must fit anyway: later turns past it are not scored).
    max_answer_tokens: int | None = None
    # Accept absolute image paths (a delivery as it came, its digest unchanged);
    # refused by default: a path outside the dataset's root is then the
    # dataset's choice. Recorded here, so in every output's configuration.
    absolute_images: bool = False
    # Stage 1 runs on the torch model, or on a graph exported by `export-onnx`
    # with ONNX Runtime on `provider`; a provider ONNX Runtime cannot load is an
    # error unless `allow_fallback` (then the CPU runs it, and the metadata says so).
    backend: Backend = "torch"
    provider: Provider = "cpu"
    allow_fallback: bool = False
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = one per physical core
    # Where stage 1 runs: this process, or a Ray cluster's actor pool of
    # `workers` (each with `gpus_per_worker` GPUs); same shards, same features.
    engine: Engine = "local"
    workers: int = 1
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        _at_least(self, batch_size=1, workers=1, gpus_per_worker=0, threads=0, shard_size=1,
                  max_image_pixels=1)
        _one_of(self, dtype=DTYPES, backend=BACKENDS, provider=PROVIDERS, engine=ENGINES)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.base_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.base_sha256):
            raise ValueError(f"base_sha256 must be 64 lower-case hex digits (a SHA-256), got "
                             f"{self.base_sha256!r}")
        for name in ("max_prompt_tokens", "max_answer_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or unset), got {getattr(self, name)}")
        # Options of a backend or engine that is not chosen would be silently ignored: refused.
        _only_with(self, "backend", "onnx", provider="cpu", allow_fallback=False, threads=0)
        _only_with(self, "engine", "ray", workers=1, gpus_per_worker=0.0)
        if self.backend == "onnx" and self.dtype != "float32":
            raise ValueError(f"dtype {self.dtype}: the ONNX graph runs in float32; drop --dtype, or use "
                             "--backend torch")
        if self.backend == "onnx" and self.device not in ("auto", "cpu"):
            raise ValueError(f"device {self.device}: with --backend onnx the device is chosen by --provider "
                             "(cpu, cuda, tensorrt)")


@dataclass(frozen=True)
class DetectionConfig:
    """Stages 2-3: which detector, its parameters, and when evidence is too thin
    for a verdict."""

    method: str = "combined"  # a name in the detector registry (auditor/detectors)
    # GaussianMixture(n_components=2, random_state=seed), fitted on at most
    # `fit_sample` rows drawn with `seed` (all rows when there are fewer);
    # every row is then assigned by the fitted mixture.
    seed: int = 0
    fit_sample: int = 50_000
    # Below these the evidence cannot carry a verdict -> inconclusive.
    min_samples: int = 50
    min_coverage: float = 0.95
    # The chosen detector's own parameters record (it checks its values);
    # None: that record's defaults.
    params: Any = None
    # The parameters records of the detectors it runs as channels (its
    # `channels`, in order); empty: their defaults.
    channel_params: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        _one_of(self, method=tuple(DETECTORS))
        _at_least(self, min_samples=2)
        if self.fit_sample < self.min_samples:
            raise ValueError(f"fit_sample must be >= min_samples ({self.min_samples}), got {self.fit_sample}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in [0, 1], got {self.min_coverage}")
        wanted = DETECTORS[self.method].Params
        if self.params is None:
            object.__setattr__(self, "params", wanted())
        elif type(self.params) is not wanted:
            raise ValueError(f"method {self.method!r} takes {wanted.__name__}, got "
                             f"{type(self.params).__name__}")
        channels = channels_of(DETECTORS[self.method])
        if not self.channel_params:
            object.__setattr__(self, "channel_params", tuple(DETECTORS[c].Params() for c in channels))
        elif [type(p) for p in self.channel_params] != [DETECTORS[c].Params for c in channels]:
            raise ValueError(f"method {self.method!r} takes the parameters of {', '.join(channels) or 'no'} "
                             "channel(s), in that order")

    @property
    def channels(self) -> dict[str, Any]:
        """Each channel's name -> its parameters record (the detector's keyword arguments)."""
        return dict(zip(channels_of(DETECTORS[self.method]), self.channel_params))


@dataclass(frozen=True)
class GateConfig:
    # Gate (exit code of a fail verdict): "verdict" exits 1 on any flagged sample;
    # "count:N" / "fraction:F" exit 1 only when more than N samples, or more
    # than the share F of the analysed samples, are flagged (auditor/gate.py).
    fail_on: str = "verdict"

    def __post_init__(self) -> None:
        parse_fail_on(self.fail_on)  # raises ValueError naming the value

    @property
    def rule(self) -> FailOn:
        return parse_fail_on(self.fail_on)


@dataclass(frozen=True)
class AuditConfig:
    stage1: Stage1Config = field(default_factory=Stage1Config)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    @property
    def method(self) -> str:
        return self.detection.method

    def to_dict(self) -> dict[str, Any]:
        """Flat, one key per setting (the outputs' `config`): every registered
        detector's parameters appear, the chosen one's as set and the others'
        at their defaults (which `of` enforces), so the keys do not depend on
        the method."""
        out: dict[str, Any] = asdict(self.stage1)
        out.update({f.name: getattr(self.detection, f.name) for f in fields(DetectionConfig)
                    if f.name not in ("params", "channel_params")})
        channels = self.detection.channels
        for name, detector in DETECTORS.items():
            out.update(asdict(self.detection.params if name == self.method
                              else channels.get(name) or detector.Params()))
        out.update(asdict(self.gate))
        return out

    @classmethod
    def of(cls, **options: Any) -> AuditConfig:
        """From flat options, as the CLI and `to_dict` name them. An unknown
        name, or a changed parameter of a detector other than `method`'s, is a
        ValueError (a user would believe it ran)."""
        owner = _owners()
        unknown = sorted(set(options) - set(owner))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        parts: dict[str, dict[str, Any]] = {}
        for name, value in options.items():
            parts.setdefault(owner[name], {})[name] = value
        method = parts.get("detection", {}).get("method", DetectionConfig.method)
        used = _used_by(method)
        for other in DETECTORS:
            defaults = asdict(DETECTORS[other].Params())
            changed = [n for n, v in parts.get(other, {}).items() if v != defaults[n]]
            if other not in used and changed:
                names = ", ".join(f"--{n.replace('_', '-')}" for n in changed)
                raise ValueError(f"{names}: a parameter of --method {other}, not of --method {method}; add "
                                 f"--method {other}, or drop it")
        detection = DetectionConfig(
            **parts.get("detection", {}),
            params=DETECTORS[method].Params(**parts.get(method, {})) if method in DETECTORS else None,
            channel_params=tuple(DETECTORS[c].Params(**parts.get(c, {})) for c in used[1:]))
        return cls(Stage1Config(**parts.get("stage1", {})), detection, GateConfig(**parts.get("gate", {})))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditConfig:
        """From a serialised config (`to_dict`): every detector's parameters are
        there, so only the chosen one's and its channels' are read; unknown keys are ignored."""
        owner, method = _owners(), data.get("method", DetectionConfig.method)
        return cls.of(**{k: v for k, v in data.items()
                         if owner.get(k) in ("stage1", "detection", "gate", *_used_by(method))})


def _used_by(method: str) -> tuple[str, ...]:
    """The method and the detectors it runs as channels, whose parameters it takes."""
    return (method, *channels_of(DETECTORS[method])) if method in DETECTORS else (method,)


def _owners() -> dict[str, str]:
    """Flat setting name -> the part that holds it: "stage1", "detection", a
    method name (its parameters record), "gate". Every name is one option of
    the CLI, so a detector declaring a name another part holds is refused."""
    parts: list[tuple[str, type]] = [("stage1", Stage1Config), ("detection", DetectionConfig),
                                     ("gate", GateConfig), *((n, d.Params) for n, d in DETECTORS.items())]
    out: dict[str, str] = {}
    for part, record in parts:
        for f in fields(record):
            if f.name in ("params", "channel_params") and record is DetectionConfig:
                continue
            if f.name in out:
                raise TypeError(f"{part}: its parameter {f.name!r} is already {out[f.name]}'s (one option "
                                "per name); rename it")
            out[f.name] = part
    return out


def _at_least(record: Any, **minimum: float) -> None:
    for name, low in minimum.items():
        if getattr(record, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(record, name)}")


def _one_of(record: Any, **choices: tuple[str, ...]) -> None:
    for name, allowed in choices.items():
        if getattr(record, name) not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(record, name)!r}")


def _only_with(record: Any, switch: str, value: str, **defaults: Any) -> None:
    """Settings that only apply when `switch` is `value` must keep their defaults otherwise."""
    if getattr(record, switch) == value:
        return
    changed = [name for name, default in defaults.items() if getattr(record, name) != default]
    if changed:
        names = ", ".join(f"--{n.replace('_', '-')}" for n in changed)
        raise ValueError(f"{names}: only used with --{switch} {value}; add --{switch} {value}, or drop the "
                         "option")

