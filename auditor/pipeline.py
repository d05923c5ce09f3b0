"""The stages chained over files; the CLI calls these and nothing deeper."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .analysis.verdict import Analysis, analyze
from .causes import group_reasons
from .config import AuditConfig
from .data import Dataset, cleaned_name, read_dataset, render_cleaned, render_flagged
from .errors import AuditInputError
from .evidence.manifest import onnx_files
from .extract.features import FEATURES_SCHEMA_VERSION, FeatureSet, read_features, render_features
from .fileio import (check_writable, json_bytes, real_path, sha256_bytes, sha256_file, sha256_tree,
                     write_bytes_atomic, write_files_atomic)
from .gate import Gate, gate
from .preflight import PARTS, check_out_folder, refuse_inputs

if TYPE_CHECKING:  # torch-bound; analyze/evaluate must start without it
    from securesystemslib.signer import Signer

    from .extract.runner import Stage1Model

FEATURES = "features.parquet"
ANALYSIS = "analysis.json"
FLAGGED = "flagged.jsonl"
REPORT = "report.html"
REPORT_PDF = "report.pdf"
SUMMARY = "summary.json"
SARIF = "findings.sarif"
MANIFEST = "manifest.json"
ATTESTATION = "attestation.dsse.json"
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
    check_out_folder(out, overwrite, inputs, reads)


def refuse_mostly_skipped(skipped: list[tuple[str, str]], n_records: int, source: Path) -> None:
    """More than MOST_SKIPPED of the records skipped for input reasons (`skipped`:
    (id, reason) pairs) is an input error naming the causes and their fixes:
    an audit of what is left would only say "inconclusive" and hide why."""
    if n_records and len(skipped) > MOST_SKIPPED * n_records:
        causes = group_reasons(skipped)
        detail = "; ".join(g.line() for g in causes[:2])
        more = f"; and {len(causes) - 2} other cause(s)" if len(causes) > 2 else ""
        raise AuditInputError(f"{source}: {len(skipped):,} of {n_records:,} records cannot be analysed: "
                              f"{detail}{more}")


def _input_paths(dataset: Dataset, onnx_path: Path | None = None) -> set[str]:
    """The dataset file, every image and the ONNX graph's files, resolved, as
    strings (cheap for millions)."""
    graph = set() if onnx_path is None else {str(p.resolve()) for p in onnx_files(onnx_path)}
    return {str(dataset.path.resolve())} | {s.image for s in dataset.samples if s.image} | graph


def load(model_dir: Path, config: AuditConfig, adapter_dir: Path | None = None,
         onnx_path: Path | None = None) -> Stage1Model:
    """The checkpoint (and adapter) ready for stage 1, on the torch model or, with
    `config.backend` "onnx", on the graph at `onnx_path`; heavy imports happen
    here, not at CLI start-up."""
    from .extract.capture import CAPTURE_ATTENTION
    from .models import load_model

    if config.backend == "onnx":
        if onnx_path is None:
            raise AuditInputError("--backend onnx needs --onnx FILE (a graph from bye-audit export-onnx)")
        if config.dtype != "float32":
            raise AuditInputError(f"--dtype {config.dtype}: the ONNX graph runs in float32; drop --dtype, "
                                  "or use --backend torch")
        if config.device not in ("auto", "cpu"):
            raise AuditInputError(f"--device {config.device}: with --backend onnx the device is chosen by "
                                  "--provider (cpu, cuda, tensorrt)")
        from .extract.onnx_backend import load_onnx

        return _check_template(load_onnx(onnx_path, model_dir, config, adapter_dir))
    if onnx_path is not None:
        raise AuditInputError(f"--onnx {onnx_path}: only used with --backend onnx; add it, or drop --onnx")

    return _check_template(load_model(model_dir, config.dtype, capture_attention=CAPTURE_ATTENTION,
                                      adapter_dir=adapter_dir, allow_pickle=config.allow_pickle,
                                      device=config.device))


def _check_template(loaded: Stage1Model) -> Stage1Model:
    """Render the checkpoint's chat template once, within its bounds, before
    stage 1: a template that never returns is refused up front rather than
    once per sample."""
    from .models.template import TemplateLimitError

    if loaded.family.uses_chat_template:
        try:
            loaded.family.chat_texts(loaded.processor, ["What is shown in the image?"])
        except TemplateLimitError as e:
            raise AuditInputError(f"{loaded.model_dir}: {e}; bye-audit refuses a chat template that does "
                                  "not render within bounds: fix chat_template.jinja (or the tokenizer's)") from None
        except Exception:  # noqa: BLE001 - any other template error is reported per sample
            pass
    return loaded


def extract(loaded: Stage1Model, dataset: Dataset, config: AuditConfig,
            on_start: Callable[[int], None] | None = None,
            on_progress: Callable[[int], None] | None = None,
            parts: Path | None = None, address: str | None = None) -> FeatureSet:
    """Stage 1 over a dataset; `on_start(n)` is called first with the samples to run.
    With `parts`, completed shards are kept there, and a rerun resumes from them.
    With `config.engine` "ray", the shards run on the Ray cluster at `address`
    (a local one when None), each worker loading the model itself."""
    import torch
    import transformers

    from .evidence.manifest import library_versions
    from .extract.runner import extract_features
    from .extract.shards import Journal, fingerprint

    model_dir, adapter_dir = loaded.model_dir, loaded.adapter_dir
    meta = {
        "schema_version": FEATURES_SCHEMA_VERSION,
        "tool": {"name": "bye-audit", "version": __version__},
        "model": {"path": str(model_dir), "model_type": loaded.model_type, "family": loaded.family.name,
                  "sha256_tree": sha256_tree(Path(model_dir)), "n_layers": loaded.n_layers},
        "adapter": None if adapter_dir is None else {
            "path": str(adapter_dir), "sha256_tree": sha256_tree(Path(adapter_dir)), "merged": True},
        "dataset": {"path": str(dataset.path), "format": dataset.format,
                    "sha256": sha256_file(dataset.path), "records": len(dataset.records)},
        "n_layers": loaded.n_layers,
        "environment": {"device": loaded.device, "dtype": config.dtype, "backend": _backend_meta(loaded),
                        "attention": f"{config.attn_implementation} (outputs); fp32 captured rows",
                        "torch": torch.__version__, "transformers": transformers.__version__,
                        "python": platform.python_version(), "libraries": library_versions()},
        "config": config.to_dict(),
    }
    journal = None if parts is None else Journal(parts, fingerprint(meta), config.resume)
    if on_start:
        on_start(sum(s.ok for s in dataset.samples))
    if config.engine == "ray":
        from .extract.ray_engine import extract_features_ray

        if journal is None:
            raise ValueError("--engine ray keeps its shards in a parts folder; pass `parts`")
        load_args = {"model_dir": str(model_dir), "config": config.to_dict(),
                     **{k: None if p is None else str(p) for k, p in (("adapter_dir", adapter_dir),
                                                                      ("onnx_path", loaded.onnx_path))}}
        meta["environment"]["engine"] = {"name": "ray", "address": address or "local"}
        rows = extract_features_ray(dataset, config, load_args, journal, address, on_progress)
    else:
        rows = extract_features(loaded, dataset, config, on_progress, journal)
    return FeatureSet(rows=tuple(rows), meta=meta, resume=None if journal is None else journal.summary())


def _backend_meta(loaded: Stage1Model) -> dict[str, Any]:
    """Which runtime computed the rows: the features' provenance."""
    if loaded.backend != "onnx" or loaded.onnx_path is None:
        return {"name": "torch"}
    from importlib.metadata import version

    from .extract.onnx_backend import import_onnxruntime

    path = loaded.onnx_path
    return {"name": "onnx", "provider": loaded.device, "onnx": {"path": str(path), "sha256": sha256_file(path)},
            "onnxruntime": import_onnxruntime().__version__, "onnx_package": version("onnx")}


def extract_file(model_dir: Path, data: Path, out: Path, config: AuditConfig,
                 image_root: Path | None = None, on_start: Callable[[int], None] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 adapter_dir: Path | None = None, onnx_path: Path | None = None,
                 address: str | None = None) -> FeatureSet:
    """Stage 1 alone: the features file at `out`."""
    from .extract.shards import clear

    dataset = read_dataset(data, image_root)
    parts = Path(str(out) + ".parts")  # completed shards, until the file is written
    refuse_inputs([Path(out), parts], {"model": model_dir, "adapter": adapter_dir},
                  _input_paths(dataset, onnx_path))
    check_writable(Path(out).parent)
    loaded = load(model_dir, config, adapter_dir, onnx_path)
    features = extract(loaded, dataset, config, on_start, on_progress, parts, address)
    write_bytes_atomic(Path(out), render_features(features))
    clear(parts)
    return features


def write_outputs(out: Path, dataset: Dataset, features: FeatureSet, analysis: Analysis, *,
                  model_dir: Path | None = None, adapter_dir: Path | None = None,
                  onnx_path: Path | None = None, signer: Signer | None = None, write_features: bool = True,
                  heatmaps: dict[int, tuple[bytes, bytes]] | None = None,
                  features_file: Path | None = None, audited_at: datetime | None = None,
                  sarif_root: Path | None = None) -> AuditOutputs:
    """Render every output to bytes, then write each atomically; the manifest
    (digests of every input and output) and, with `signer`, the attestation last.
    `features_file`: the features already exist as this file; it is copied as it is.
    `audited_at`: the audit's time [default: now, or SOURCE_DATE_EPOCH].
    `sarif_root`: the findings' URIs relative to this folder (a repository's root)."""
    from .evidence.attestation import statement
    from .evidence.attestation import sign as sign_statement
    from .evidence.manifest import audit_time, input_files, iso, manifest_dict, report_id, roots
    from .report.html import render_html
    from .report.pdf import render_pdf
    from .report.sarif import render_sarif
    from .report.summary import summary_dict

    g = gate(analysis.verdict, len(analysis.flagged), analysis.n_analysed, analysis.config.fail_on)
    signing = None if signer is None else {"keyid": signer.public_key.keyid}
    inputs = input_files(dataset, model_dir, adapter_dir, onnx_path)
    digests = {name: sha256_file(path) for name, path in inputs.items()}
    by_path = {real_path(path): digests[name] for name, path in inputs.items()}
    when = audited_at or audit_time()
    about = {"report_id": report_id(digests, analysis.config.to_dict(), when), "audited_at": iso(when)}

    keep = set(range(len(dataset.records))) - {f.index for f in analysis.flagged}
    files: dict[str, bytes] = {}
    if write_features and features_file is None:
        files[FEATURES] = render_features(features)
    meta = features.meta
    resume = {} if features.resume is None else {"resume": features.resume}
    files[ANALYSIS] = json_bytes({**analysis.to_dict(), "inputs": meta, **resume})
    files[FLAGGED] = render_flagged(dataset, {f.index: f.score for f in analysis.flagged})
    files[cleaned_name(dataset)] = render_cleaned(dataset, keep)
    files[REPORT] = render_html(analysis, meta, dataset, heatmaps, gate=g, signing=signing,
                                features=features, about=about)
    files[REPORT_PDF] = render_pdf(files[REPORT])
    files[SARIF] = render_sarif(analysis, dataset, int(g.exit_code), by_path, sarif_root, about["report_id"])
    outputs_sha256 = {n: sha256_bytes(b) for n, b in files.items()}
    if write_features and features_file is not None:
        outputs_sha256[FEATURES] = sha256_file(features_file)
    if not write_features and (Path(out) / FEATURES).is_file():  # `analyze` reading features in place
        outputs_sha256[FEATURES] = sha256_file(Path(out) / FEATURES)
    summary = summary_dict(analysis, meta, outputs_sha256, g, about["report_id"], about["audited_at"])
    files[SUMMARY] = json_bytes(summary)
    outputs_sha256[SUMMARY] = sha256_bytes(files[SUMMARY])
    manifest = manifest_dict(digests, outputs_sha256, roots(dataset, model_dir, adapter_dir, onnx_path), meta,
                             summary) | resume
    files[MANIFEST] = json_bytes(manifest)
    if signer is not None:
        subjects = {**manifest["files"], f"outputs/{MANIFEST}": sha256_bytes(files[MANIFEST])}
        predicate = {"report_id": about["report_id"], "audited_at": about["audited_at"],
                     "verdict": analysis.verdict, "exit_code": int(g.exit_code), "reasons": list(analysis.reasons),
                     "counts": summary["counts"], "config": analysis.config.to_dict(), "tool": manifest["tool"]}
        files[ATTESTATION] = sign_statement(statement(subjects, predicate), signer)
    items: dict[str, bytes | Path] = {}
    if write_features and features_file is not None:
        items[FEATURES] = Path(features_file)
    items.update(files)
    # All or nothing: a full disk leaves the folder as it was, never half a bundle.
    paths = write_files_atomic(Path(out), items)
    if signer is None:
        (Path(out) / ATTESTATION).unlink(missing_ok=True)  # a previous signature no longer covers these files
    return AuditOutputs(analysis, tuple(paths), g)


def output_names(dataset: Dataset, with_features: bool = True) -> list[str]:
    return [FEATURES] * with_features + [ANALYSIS, FLAGGED, cleaned_name(dataset), REPORT, REPORT_PDF,
                                           SARIF, SUMMARY, MANIFEST, ATTESTATION]


def audit(model_dir: Path, data: Path, out: Path, config: AuditConfig, image_root: Path | None = None,
          on_start: Callable[[int], None] | None = None,
          on_progress: Callable[[int], None] | None = None,
          adapter_dir: Path | None = None, sign_key: Path | None = None,
          onnx_path: Path | None = None, address: str | None = None, overwrite: bool = False,
          on_step: Callable[[str], None] | None = None, sarif_root: Path | None = None) -> AuditOutputs:
    """Every stage; with `sign_key` (a `keygen` private key) the bundle is signed.
    `overwrite`: replace a previous bundle in `out`. `on_step` hears what starts next."""
    step = on_step or (lambda _msg: None)
    signer = _signer(sign_key)  # a bad key fails before the long stage 1
    step(f"reading the dataset {data}")
    dataset = read_dataset(data, image_root)
    check_out_dir(out, dataset, output_names(dataset), {"model": model_dir, "adapter": adapter_dir},
                  onnx_path, overwrite)
    check_writable(Path(out))  # before the long stage 1
    refuse_mostly_skipped([(s.id, s.skip_reason or "") for s in dataset.samples if not s.ok],
                          len(dataset.records), Path(data))
    from .extract.shards import clear

    step(f"loading the model {model_dir}" + (f" with the adapter {adapter_dir}" if adapter_dir else ""))
    loaded = load(model_dir, config, adapter_dir, onnx_path)
    parts = Path(out) / PARTS  # completed stage-1 shards: rerunning the command resumes
    step(f"stage 1: attention entropy of {sum(s.ok for s in dataset.samples):,} samples "
         f"({loaded.family.name}, {loaded.n_layers} layers, {loaded.device})")
    features = extract(loaded, dataset, config, on_start, on_progress, parts, address)
    refuse_mostly_skipped([(r.id, r.reason or "") for r in features.rows if r.status == "skipped"],
                          len(dataset.records), Path(data))
    step(f"stages 2-3 ({config.method}) on {len(dataset.records):,} records")
    analysis = analyze(features, config, [s.prompt for s in dataset.samples])
    step("attention heatmaps of the samples the report shows")
    heatmaps = attention_heatmaps(loaded, dataset, analysis)
    step(f"writing the report (HTML, PDF), the cleaned dataset and the evidence to {out}")
    result = write_outputs(out, dataset, features, analysis, model_dir=model_dir, adapter_dir=adapter_dir,
                           onnx_path=onnx_path if config.backend == "onnx" else None, signer=signer,
                           heatmaps=heatmaps, sarif_root=sarif_root)
    clear(parts)
    return result


def _signer(sign_key: Path | None) -> Signer | None:
    if sign_key is None:
        return None
    from .evidence.keys import load_signer

    return load_signer(sign_key)


def attention_heatmaps(loaded: Stage1Model, dataset: Dataset, analysis: Analysis
                       ) -> dict[int, tuple[bytes, bytes]]:
    """(thumbnail PNG, attention heatmap PNG) by record index, for the samples the
    report shows; their rows are recomputed here, so stage 1 stays small."""
    from .extract.runner import load_image, sample_rows
    from .report.heatmaps import attention_grid, heatmap_pngs, samples_to_show

    layers = list(analysis.sensitive_layers) or list(range(loaded.n_layers))
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
    signer = _signer(sign_key)
    step(f"reading the features {features_path}")
    features = read_features(features_path)
    step(f"reading the dataset {data} ({len(features.rows):,} feature rows read)")
    dataset = read_dataset(data, image_root)
    imported = features.meta.get("source", {}).get("format") == "bye-jsonl"  # becomes a features file
    if imported:
        from .extract.bye_jsonl import align

        features = align(features, [s.id for s in dataset.samples], Path(features_path))
    if len(features.rows) != len(dataset.records) or any(
            i != s.id for i, s in zip(features.column("id"), dataset.samples)):
        raise AuditInputError(f"{features_path}: its rows do not match the records of {data}; "
                              "extract features from this dataset first")
    check_out_dir(out, dataset, output_names(dataset, with_features=False), overwrite=overwrite,
                  reads={str(Path(features_path).resolve())})
    check_writable(Path(out))
    refuse_mostly_skipped([(i, r or "") for i, st, r in zip(features.column("id"), features.column("status"),
                                                            features.column("reason")) if st == "skipped"],
                          len(dataset.records), Path(features_path))
    step(f"stages 2-3 ({config.method}) on {len(dataset.records):,} records")
    analysis = analyze(features, config, [s.prompt for s in dataset.samples])
    step(f"writing the outputs to {out}")
    # Copy the features next to the other outputs (an imported dump as a
    # features file), unless that is where they came from.
    fresh = (Path(out) / FEATURES).resolve() != Path(features_path).resolve()
    as_is = None if imported else Path(features_path)
    return write_outputs(out, dataset, features, analysis, signer=signer, write_features=fresh,
                         features_file=as_is, sarif_root=sarif_root)
