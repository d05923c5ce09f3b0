"""The stages chained over files; the CLI calls these and nothing deeper."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, bundle
from .causes import group_reasons
from .config import AuditConfig
from .data import Dataset, read_dataset
from .errors import AuditInputError
from .evidence.manifest import audit_time, input_files, iso, library_versions, onnx_files, report_id, roots
from .extract.backend import load
from .extract import shards
from .features import FEATURES_SCHEMA_VERSION, FeatureSet, read_features, render_features
from .features.bye_jsonl import align
from .features.provenance import AdapterRef, BaseRef, DatasetRef, ModelRef, Provenance, Runtime
from .report.heatmaps import attention_grid, heatmap_layers, heatmap_pngs, samples_to_show
from .verdict import Analysis, analyze
from .fileio import (check_writable, real_path, sha256_file, sha256_tree,
                     write_bytes_atomic)
from .gate import Gate, gate
from .preflight import PARTS, check_out_folder, refuse_inputs

if TYPE_CHECKING:  # torch-bound; analyze/evaluate must start without it
    from securesystemslib.signer import Signer

    from .extract.runner import Stage1Model

# More than this share of the records skipped for input reasons is an input
# error (exit 2, with the cause), not an inconclusive audit.
MOST_SKIPPED = 0.5


@dataclass(frozen=True)
class AuditOutputs:
    analysis: Analysis
    paths: tuple[Path, ...]
    gate: Gate  # the exit code under --fail-on


def check_out_dir(out: Path, dataset: Dataset, names: list[str],
                  input_dirs: dict[str, Path | None] | None = None, onnx_path: Path | None = None,
                  overwrite: bool = False, reads: set[str] = frozenset()) -> None:
    """Refuse an output folder whose files would land on an input: inside an input
    folder (`input_dirs`, e.g. {"model": ..., "adapter": ...}), or on the dataset,
    an image or the ONNX graph; and one holding a previous bundle unless
    `overwrite`, or other files (preflight.check_out_folder; `reads`: files
    there the command reads and leaves as they are)."""
    out = Path(out)
    refuse_inputs([out], input_dirs or {}, set())
    inputs = _input_paths(dataset, onnx_path)
    refuse_inputs([out / name for name in names], {}, inputs)
    check_out_folder(out, overwrite, inputs, reads, bundle.OUTPUT_NAMES)


def refuse_mostly_skipped(skipped: list[tuple[str, str | None, str]], n_records: int, source: Path) -> None:
    """More than MOST_SKIPPED of the records skipped for input reasons (`skipped`:
    (id, cause code, reason) triples) is an input error naming the causes and their fixes:
    an audit of what is left would only say "inconclusive" and hide why."""
    if n_records and len(skipped) > MOST_SKIPPED * n_records:
        causes = group_reasons(skipped)
        detail = "; ".join(g.line() for g in causes[:2])
        more = f"; and {len(causes) - 2} other cause(s)" if len(causes) > 2 else ""
        raise AuditInputError(f"{source}: {len(skipped):,} of {n_records:,} records cannot be analysed: "
                              f"{detail}{more}")


def _skipped(features: FeatureSet) -> list[tuple[str, str | None, str]]:
    """(id, cause code, reason) of every row stage 1 skipped for an input reason."""
    return [(i, c, r or "") for i, st, c, r in zip(features.column("id"), features.column("status"),
                                                   features.column("cause"), features.column("reason"))
            if st == "skipped"]


def _input_paths(dataset: Dataset, onnx_path: Path | None = None) -> set[str]:
    """The dataset file, every image and the ONNX graph's files, resolved, as
    strings (cheap for millions)."""
    graph = set() if onnx_path is None else {str(p.resolve()) for p in onnx_files(onnx_path)}
    return {str(dataset.path.resolve())} | {s.image for s in dataset.samples if s.image} | graph


def extract(loaded: Stage1Model, dataset: Dataset, config: AuditConfig,
            on_start: Callable[[int], None] | None = None,
            on_progress: Callable[[int], None] | None = None,
            parts: Path | None = None, address: str | None = None,
            on_resumed: Callable[[int], None] | None = None) -> FeatureSet:
    """Stage 1 over a dataset; `on_start(n)` is called first with the samples to run.
    With `parts`, completed shards are kept there, and a rerun resumes from them.
    With `config.engine` "ray", the shards run on the Ray cluster at `address`
    (a local one when None), each worker loading the model itself."""
    import torch
    import transformers

    from .extract.runner import extract_features  # torch: loaded with the model, not for `analyze`

    model_dir, adapter_dir = loaded.model_dir, loaded.adapter_dir
    provenance = Provenance(
        n_layers=loaded.n_layers, tool={"name": "bye-audit", "version": __version__},
        model=ModelRef(str(model_dir), loaded.model_type, loaded.family.name, sha256_tree(Path(model_dir)),
                       loaded.n_layers),
        adapter=None if adapter_dir is None else AdapterRef(str(adapter_dir), sha256_tree(Path(adapter_dir)),
                                                            merged=getattr(loaded, "peft", None) is None),
        base=_base_ref(loaded, config),
        dataset=DatasetRef(str(dataset.path), dataset.format, sha256_file(dataset.path),
                           len(dataset.records)),
        environment=Runtime(
            device=loaded.device, dtype=config.stage1.dtype, backend=_backend_meta(loaded),
            attention=f"{config.stage1.attn_implementation} (outputs); fp32 captured rows",
            torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version(),
            libraries=library_versions(),
            engine=({"name": "ray", "address": address or "local"}
                    if config.stage1.engine == "ray" else None)),
        config=config.to_dict())
    meta = provenance.to_dict(FEATURES_SCHEMA_VERSION)
    journal = (None if parts is None
               else shards.Journal(parts, shards.fingerprint(provenance, config.stage1),
                                   config.stage1.resume, on_resumed))
    if on_start:
        on_start(sum(s.ok for s in dataset.samples))
    if config.stage1.engine == "ray":
        from .extract.ray_engine import extract_features_ray  # ray: an optional dependency

        if journal is None:
            raise ValueError("--engine ray keeps its shards in a parts folder; pass `parts`")
        load_args = {"model_dir": str(model_dir), "stage1": asdict(config.stage1),
                     **{k: None if p is None else str(p)
                        for k, p in (("adapter_dir", adapter_dir), ("onnx_path", loaded.onnx_path),
                                     ("base_dir", getattr(loaded, "base_dir", None)))}}
        rows = extract_features_ray(dataset, config.stage1, load_args, journal, address, on_progress)
    else:
        rows = extract_features(loaded, dataset, config.stage1, on_progress, journal)
    return FeatureSet(rows=tuple(rows), meta=meta, resume=None if journal is None else journal.summary())


def check_pinned_base(model_dir: Path, adapter_dir: Path | None, base_dir: Path | None,
                      pinned: str | None) -> None:
    """--base-sha256: the base (--base, or the model under --adapter) must have
    that tree digest; checked before the model loads."""
    if pinned is None:
        return
    base = base_dir if base_dir is not None else (model_dir if adapter_dir is not None else None)
    if base is None:
        raise AuditInputError("--base-sha256: there is no base to pin; give --base BASE_DIR (a full "
                              "fine-tune) or --adapter ADAPTER_DIR (the base is then --model)")
    digest = sha256_tree(Path(base))
    if digest != pinned:
        raise AuditInputError(f"{base}: its tree digest is {digest}, not the pinned --base-sha256 {pinned}: "
                              "this is not the base you pinned; pass the right folder, or check the digest")


def _scoring(loaded: Stage1Model, config: AuditConfig) -> str:
    """What stage 1 also does to each sample, in words, for its progress line."""
    if not config.stage1.answers:
        return ""
    from .extract.runner import loaded_reference  # torch

    how = loaded_reference(loaded) if config.stage1.base_pass else None
    if how is None:
        return "; and its answers under the model"
    base = "the model with its adapter disabled" if how == "adapter disabled" else f"the base {how}"
    return f"; and its answers under the model and under {base} (a second pass)"


def _base_ref(loaded: Stage1Model, config: AuditConfig) -> BaseRef | None:
    """The base pass's model, when stage 1 scores the answers under one."""
    from .extract.runner import loaded_reference  # torch

    if not (config.stage1.answers and config.stage1.base_pass):
        return None
    how = loaded_reference(loaded)
    if how is None:
        return None
    if how == "adapter disabled":
        return BaseRef(how, str(loaded.model_dir), sha256_tree(Path(loaded.model_dir)))
    return BaseRef("model", how, sha256_tree(Path(how)))


def _backend_meta(loaded: Stage1Model) -> dict[str, Any]:
    """Which runtime computed the rows: the features' provenance."""
    if loaded.backend != "onnx" or loaded.onnx_path is None:
        return {"name": "torch"}
    from importlib.metadata import version

    from .extract.onnx_backend import import_onnxruntime  # onnxruntime: an optional dependency

    path = loaded.onnx_path
    return {"name": "onnx", "provider": loaded.device,
            "onnx": {"path": str(path), "sha256": sha256_file(path)},
            "onnxruntime": import_onnxruntime().__version__, "onnx_package": version("onnx")}


def extract_file(model_dir: Path, data: Path, out: Path, config: AuditConfig,
                 image_root: Path | None = None, on_start: Callable[[int], None] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 adapter_dir: Path | None = None, onnx_path: Path | None = None,
                 address: str | None = None, base_dir: Path | None = None,
                 on_resumed: Callable[[int], None] | None = None) -> FeatureSet:
    """Stage 1 alone: the features file at `out`."""
    dataset = read_dataset(data, image_root, config.stage1.absolute_images)
    parts = Path(str(out) + ".parts")  # completed shards, until the file is written
    refuse_inputs([Path(out), parts], {"model": model_dir, "adapter": adapter_dir, "base": base_dir},
                  _input_paths(dataset, onnx_path))
    check_writable(Path(out).parent)
    check_pinned_base(model_dir, adapter_dir, base_dir, config.stage1.base_sha256)
    loaded = load(model_dir, config.stage1, adapter_dir, onnx_path, base_dir)
    features = extract(loaded, dataset, config, on_start, on_progress, parts, address, on_resumed)
    write_bytes_atomic(Path(out), render_features(features))
    shards.clear(parts)
    return features


def write_outputs(out: Path, dataset: Dataset, features: FeatureSet, analysis: Analysis, *,
                  model_dir: Path | None = None, adapter_dir: Path | None = None,
                  onnx_path: Path | None = None, signer: Signer | None = None, signer_name: str | None = None,
                  write_features: bool = True, base_dir: Path | None = None,
                  heatmaps: dict[int, tuple[bytes, bytes]] | None = None,
                  features_file: Path | None = None, audited_at: datetime | None = None,
                  sarif_root: Path | None = None) -> AuditOutputs:
    """Render the bundle (auditor/bundle.py: every output, in order), then write
    it all or nothing. `features_file`: the features already exist as this
    file; it is copied as it is. `write_features` False: `analyze` reading the
    features where they stay. `audited_at`: the audit's time [default: now, or
    SOURCE_DATE_EPOCH]. `sarif_root`: the findings' URIs relative to this
    folder (a repository's root)."""
    g = gate(analysis.verdict, len(analysis.flagged), analysis.n_analysed, analysis.config.gate.rule)
    inputs = input_files(dataset, model_dir, adapter_dir, onnx_path, base_dir)
    digests = {name: sha256_file(path) for name, path in inputs.items()}
    when = audited_at or audit_time()
    in_place = Path(out) / bundle.FEATURES
    audit = bundle.Audit(
        analysis=analysis, dataset=dataset, features=features, gate=g,
        report_id=report_id(digests, analysis.config.to_dict(), when), audited_at=iso(when),
        input_digests=digests, digests_by_path={real_path(p): digests[n] for n, p in inputs.items()},
        roots=roots(dataset, model_dir, adapter_dir, onnx_path, base_dir), signer=signer,
        signer_name=signer_name, heatmaps=heatmaps,
        sarif_root=sarif_root, features_file=features_file, with_features=write_features,
        features_in_place=in_place if not write_features and in_place.is_file() else None)
    return AuditOutputs(analysis, tuple(bundle.write(Path(out), audit)), g)


def audit(model_dir: Path, data: Path, out: Path, config: AuditConfig, image_root: Path | None = None,
          on_start: Callable[[int], None] | None = None,
          on_progress: Callable[[int], None] | None = None,
          adapter_dir: Path | None = None, sign_key: Path | None = None,
          onnx_path: Path | None = None, address: str | None = None, overwrite: bool = False,
          on_step: Callable[[str], None] | None = None, sarif_root: Path | None = None,
          base_dir: Path | None = None, on_resumed: Callable[[int], None] | None = None) -> AuditOutputs:
    """Every stage; with `sign_key` (a `keygen` private key) the bundle is signed.
    `overwrite`: replace a previous bundle in `out`. `on_step` hears what starts next.
    `base_dir`: the model a full fine-tune started from (the answers' base pass)."""
    step = on_step or (lambda _msg: None)
    signer = _signer(sign_key)  # a bad key fails before the long stage 1
    name = _signer_name(sign_key)
    step(f"reading the dataset {data}")
    dataset = read_dataset(data, image_root, config.stage1.absolute_images)
    check_out_dir(out, dataset, bundle.output_names(dataset),
                  {"model": model_dir, "adapter": adapter_dir, "base": base_dir}, onnx_path, overwrite)
    check_writable(Path(out))  # before the long stage 1
    refuse_mostly_skipped([(s.id, s.skip_cause, s.skip_reason or "") for s in dataset.samples if not s.ok],
                          len(dataset.records), Path(data))
    check_pinned_base(model_dir, adapter_dir, base_dir, config.stage1.base_sha256)
    step(f"loading the model {model_dir}" + (f" with the adapter {adapter_dir}" if adapter_dir else ""))
    loaded = load(model_dir, config.stage1, adapter_dir, onnx_path, base_dir)
    parts = Path(out) / PARTS  # completed stage-1 shards: rerunning the command resumes
    step(f"stage 1: attention entropy of {sum(s.ok for s in dataset.samples):,} samples "
         f"({loaded.family.name}, {loaded.n_layers} layers, {loaded.device}){_scoring(loaded, config)}")
    features = extract(loaded, dataset, config, on_start, on_progress, parts, address, on_resumed)
    refuse_mostly_skipped(_skipped(features), len(dataset.records), Path(data))
    step(f"stages 2-3 ({config.method}) on {len(dataset.records):,} records")
    analysis = analyze(features, config, [s.prompt for s in dataset.samples],
                       [s.answer for s in dataset.samples], [s.later for s in dataset.samples])
    step("attention heatmaps of the samples the report shows")
    heatmaps = attention_heatmaps(loaded, dataset, analysis)
    step(f"writing the report (HTML, PDF), the cleaned dataset and the evidence to {out}")
    result = write_outputs(out, dataset, features, analysis, model_dir=model_dir, adapter_dir=adapter_dir,
                           onnx_path=onnx_path if config.stage1.backend == "onnx" else None, signer=signer,
                           signer_name=name, base_dir=base_dir if config.stage1.base_pass else None,
                           heatmaps=heatmaps, sarif_root=sarif_root)
    shards.clear(parts)
    return result


def _signer(sign_key: Path | None) -> Signer | None:
    if sign_key is None:
        return None
    from .evidence.keys import load_signer  # cryptography: only when signing

    return load_signer(sign_key)


def _signer_name(sign_key: Path | None) -> str | None:
    if sign_key is None:
        return None
    from .evidence.keys import signer_name

    return signer_name(sign_key)


def attention_heatmaps(loaded: Stage1Model, dataset: Dataset, analysis: Analysis
                       ) -> dict[int, tuple[bytes, bytes]]:
    """(thumbnail PNG, attention heatmap PNG) by record index, for the samples the
    report shows; their rows are recomputed here, so stage 1 stays small."""
    from .extract.runner import load_image, sample_rows  # torch

    layers = heatmap_layers(analysis, loaded.n_layers)
    out = {}
    for index in samples_to_show(analysis):
        sample = dataset.samples[index]
        image = load_image(sample)
        grid = attention_grid(sample_rows(loaded, [image], [sample.prompt])[0].image_rows, layers)
        if grid is not None:
            out[index] = heatmap_pngs(image, grid)
    return out


def analyze_file(features_path: Path, data: Path, out: Path, config: AuditConfig,
                 image_root: Path | None = None, sign_key: Path | None = None,
                 on_step: Callable[[str], None] | None = None, overwrite: bool = False,
                 sarif_root: Path | None = None) -> AuditOutputs:
    """Stages 2-4 from an existing features file (no model needed, so the
    manifest lists no model files: the features' metadata names the model).
    `on_step` hears what starts next (a million samples take a minute)."""
    step = on_step or (lambda _msg: None)
    signer, name = _signer(sign_key), _signer_name(sign_key)
    step(f"reading the features {features_path}")
    features = read_features(features_path)
    step(f"reading the dataset {data} ({len(features.rows):,} feature rows read)")
    dataset = read_dataset(data, image_root, config.stage1.absolute_images)
    imported = features.provenance.imported  # a dump in another format: it becomes a features file
    if imported:
        features = align(features, [s.id for s in dataset.samples], Path(features_path))
    if len(features.rows) != len(dataset.records) or any(
            i != s.id for i, s in zip(features.column("id"), dataset.samples)):
        raise AuditInputError(f"{features_path}: its rows do not match the records of {data}; extract "
                              "features from this dataset first")
    check_out_dir(out, dataset, bundle.output_names(dataset, with_features=False), overwrite=overwrite,
                  reads={str(Path(features_path).resolve())})
    check_writable(Path(out))
    refuse_mostly_skipped(_skipped(features), len(dataset.records), Path(features_path))
    step(f"stages 2-3 ({config.method}) on {len(dataset.records):,} records")
    analysis = analyze(features, config, [s.prompt for s in dataset.samples],
                       [s.answer for s in dataset.samples], [s.later for s in dataset.samples])
    step(f"writing the outputs to {out}")
    # Copy the features next to the other outputs (an imported dump as a
    # features file), unless that is where they came from.
    fresh = (Path(out) / bundle.FEATURES).resolve() != Path(features_path).resolve()
    as_is = None if imported else Path(features_path)
    return write_outputs(out, dataset, features, analysis, signer=signer, signer_name=name,
                         write_features=fresh,
                         features_file=as_is, sarif_root=sarif_root)
