"""`bye-audit`: thin Click commands (parse, call the pipeline, print, exit code)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click
import cloup

from . import __version__
from .config import (BACKENDS, DTYPES, ENGINES, PROVIDERS, AuditConfig, DetectionConfig, GateConfig,
                     Stage1Config)
from .detectors import DETECTORS, channels_of
from .detectors.params import Spec, specs
from .errors import AuditInputError, ExitCode, Interrupted
from .fileio import write_bytes_atomic
from .preflight import (ERROR_LOG, PARTS, check_file, check_folder, check_out_folder, refuse_inputs,
                        source_date_epoch)
_path = click.Path(path_type=Path)


_batch_size = click.option("--batch-size", type=click.IntRange(min=1), default=Stage1Config.batch_size,
                           show_default=True, help="Samples per forward pass (stage 1).")
_shard_size = click.option(
    "--shard-size", type=click.IntRange(min=1), default=Stage1Config.shard_size, show_default=True,
    help="Samples per resumable stage-1 shard; an interrupted run resumes when rerun.")
_device = click.option("--device", default=Stage1Config.device, show_default=True,
                       help="auto (CUDA when available), cpu, cuda or cuda:N.")
_dtype = click.option("--dtype", type=click.Choice(DTYPES), default=Stage1Config.dtype,
                      show_default=True,
                      help="Weights' precision for stage 1; captured rows are always fp32.")
_max_prompt_tokens = click.option(
    "--max-prompt-tokens", type=click.IntRange(min=1), default=None,
    help="Skip records whose instruction is longer than this many tokens [default: the language model's "
         "context length].")
_max_answer_tokens = click.option(
    "--max-answer-tokens", type=click.IntRange(min=1), default=None,
    help="Cut each answer turn to this many tokens before scoring it (counted in the features) "
         "[default: what fits the language model's context after the prompt].")
_max_image_pixels = click.option(
    "--max-image-pixels", type=click.IntRange(min=1), default=Stage1Config.max_image_pixels,
    show_default=True,
    help="Skip images declaring more pixels than this (checked before decoding).")
_per_head = click.option("--per-head", is_flag=True, default=False,
                         help="Also store per-head entropies (layers x heads per sample) in the features.")
_allow_pickle = click.option(
    "--allow-pickle", is_flag=True, default=False,
    help="Load pickle weights (.bin/.pt) when the checkpoint has no safetensors, through torch's "
         "weights-only loader (never a full unpickle).")
_progress_flag = click.option("--progress/--no-progress", default=True,
                              help="Progress bar on a terminal, heartbeat lines elsewhere (stderr).")
_resume = click.option("--resume/--no-resume", default=True, show_default=True,
                       help="Reuse the stage-1 shards an interrupted run left (each checked against its "
                            "journal); --no-resume deletes them and computes everything.")
_model = click.option("--model", "model_dir", type=_path, required=True,
                      help="Checkpoint folder (safetensors).")
_adapter = click.option("--adapter", "adapter_dir", type=_path, default=None,
                        help="PEFT LoRA adapter folder (safetensors) applied over --model.")
_base = click.option("--base", "base_dir", type=_path, default=None,
                     help="The model a full fine-tune started from (safetensors): its answers are scored "
                          "under it too (with --adapter the base pass is automatic: the adapter disabled).")
_base_sha256 = click.option(
    "--base-sha256", type=str, default=None, metavar="DIGEST",
    help="Pin the base: its folder's tree digest (summary.json's base.sha256_tree) must equal DIGEST, else "
         "the audit stops (exit 2). The base is --base, or --model with --adapter.")
_data = click.option("--data", type=_path, required=True,
                     help="Dataset: LLaVA JSON array (.json), JSONL or Parquet.")
_absolute_images = click.option(
    "--absolute-images", is_flag=True, default=None,
    help="Accept absolute image paths as the dataset gives them (refused by default; recorded in the "
         "evidence, and such images are named by their absolute path in the manifest).")
_image_root = click.option("--image-root", type=_path, default=None,
                           help="Folder image paths resolve against [default: the dataset file's folder].")
_overwrite = click.option("--overwrite", is_flag=True, default=False,
                          help="Replace the bundle of an earlier audit in --out (other files are never "
                               "replaced).")
_sarif_root = click.option(
    "--sarif-root", type=_path, default=None,
    help="Write findings.sarif's paths relative to this folder (the repository's root, for GitHub code "
         "scanning) [default: relative to the dataset's folder].")
_sign_key = click.option("--sign-key", type=_path, default=None,
                         help="Ed25519 private key (from `bye-audit keygen`): sign the bundle "
                              "(attestation.dsse.json).")

_answers = click.option("--answers/--no-answers", default=Stage1Config.answers, show_default=True,
                        help="Score each record's answer turn in the same pass (its NLL under the model).")
_base_pass = click.option("--base-pass/--no-base-pass", default=Stage1Config.base_pass, show_default=True,
                          help="Also score the answers under the base (--adapter: the adapter disabled; "
                               "else --base), one more pass.")
_STAGE1 = [_batch_size, _shard_size, _resume, _device, _dtype, _max_prompt_tokens, _max_answer_tokens,
           _max_image_pixels,
           _per_head, _answers, _base_pass,
           _allow_pickle, _progress_flag]
_ONNX = [
    click.option("--backend", type=click.Choice(BACKENDS), default=Stage1Config.backend,
                 show_default=True, help="Run stage 1 on the torch model, or on --onnx with ONNX Runtime."),
    click.option("--onnx", "onnx_path", type=_path, default=None,
                 help="Graph from `bye-audit export-onnx` of --model (with --backend onnx)."),
    click.option("--provider", type=click.Choice(PROVIDERS), default=Stage1Config.provider,
                 show_default=True, help="ONNX Runtime execution provider."),
    click.option("--allow-fallback", is_flag=True, default=False,
                 help="Run on the CPU when the asked provider does not load (recorded in the features)."),
    click.option("--threads", type=click.IntRange(min=0), default=Stage1Config.threads, show_default=True,
                 help="ONNX Runtime intra-op threads (0: one per physical core)."),
]
_RAY = [
    click.option("--engine", type=click.Choice(ENGINES), default=Stage1Config.engine, show_default=True,
                 help="Run stage 1 in this process, or on a Ray cluster (pip install 'bye-audit[ray]')."),
    click.option("--address", default=None,
                 help="Ray cluster to join, e.g. ray://head:10001 or auto [default: start a local one]."),
    click.option("--workers", type=click.IntRange(min=1), default=Stage1Config.workers, show_default=True,
                 help="Ray actors, each loading the model once."),
    click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=Stage1Config.gpus_per_worker,
                 show_default=True, help="GPUs per Ray actor (fractions share a GPU)."),
]


def _detection_options() -> list[Callable]:
    return [
        click.option("--method", type=click.Choice(tuple(DETECTORS)), default=DetectionConfig.method,
                     show_default=True,
                     help="; ".join(f"{name}: {d.info.help}" for name, d in DETECTORS.items())
                          + " (docs/method.md)."),
        click.option("--fail-on", type=str, default=GateConfig.fail_on, show_default=True,
                     help="When a fail verdict exits 1: 'verdict' (always), 'count:N' (more than N flagged), "
                          "'fraction:F' (more than F of the analysed samples flagged)."),
        click.option("--seed", type=int, default=DetectionConfig.seed, show_default=True,
                     help="Seed of the mixtures."),
        click.option("--fit-sample", type=click.IntRange(min=2), default=DetectionConfig.fit_sample,
                     show_default=True, help="Fit each mixture on at most this many samples (seeded draw); "
                                             "every sample is then assigned."),
        click.option("--min-samples", type=click.IntRange(min=2), default=DetectionConfig.min_samples,
                     show_default=True, help="Fewer analysed samples than this: inconclusive."),
        click.option("--min-coverage", type=click.FloatRange(0, 1), default=DetectionConfig.min_coverage,
                     show_default=True, help="Lower share of analysed records: inconclusive."),
    ]


def _parameter_option(spec: Spec, users: list[str]) -> Callable:
    """One detector parameter as an option, from its declaration; unset, the
    method's default applies (and a set one of another method is refused)."""
    shown = ("off" if not spec.default else "on") if spec.kind is bool else f"{spec.default}"
    text = f"{spec.help[0].upper()}{spec.help[1:]} (--method {' / '.join(users)}) [default: {shown}" + (
        f"; {spec.bounds()}]." if spec.bounds() else "].")
    if spec.kind is bool:
        return click.option(spec.flag, is_flag=True, default=None, help=text)
    kind = click.Choice(spec.choices) if spec.choices else {int: click.INT, float: click.FLOAT}.get(spec.kind,
                                                                                                    click.STRING)
    return click.option(spec.flag, type=kind, default=None, help=text)


def _with_detector_parameters(command: Callable) -> Callable:
    """One option group per registered detector, its parameters from its
    Params declaration (docs/cli.md's table comes from the same)."""
    for name, detector in reversed(DETECTORS.items()):
        users = [name] + [m for m, d in DETECTORS.items() if name in channels_of(d)]
        options = [_parameter_option(s, users) for s in specs(detector.Params)]
        if options:
            command = cloup.option_group(f"Parameters of --method {' / '.join(users)}", *options)(command)
    return command


EXIT_CODES = ("Exit codes: 0 pass, 1 fail (samples flagged; see --fail-on), 2 usage or input error, 3 "
              "inconclusive, 4 internal error (traceback in OUT/bye-audit-error.log); 130 interrupted "
              "(Ctrl-C), 143 terminated (SIGTERM), 141 output pipe closed: rerun to resume.")


def _config(**options) -> AuditConfig:
    """The config from the command's options (unset ones keep their defaults);
    AuditConfig validates every value, and refuses one that would not apply."""
    try:
        return AuditConfig.of(**{k: v for k, v in options.items() if v is not None})
    except ValueError as e:
        raise AuditInputError(str(e)) from None


def _check_address(config: AuditConfig, address: str | None) -> None:
    if address is not None and config.stage1.engine != "ray":
        raise AuditInputError("--address: only used with --engine ray; add --engine ray, or drop the option")


def _quiet_libraries() -> None:
    """transformers' own progress bars and warnings would interleave with ours."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: inputs are local
    import transformers

    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed" at export
    transformers.utils.logging.disable_progress_bar()


def _print_outcome(result) -> int:
    a, paths, gate = result.analysis, result.paths, result.gate
    click.echo(f"verdict: {a.verdict.upper()} ({len(a.flagged)} of {a.n_records} records flagged; "
               f"{a.n_analysed} analysed, {a.n_skipped} skipped, {a.n_errors} failed)")
    for r in a.reasons:
        click.echo(f"  - {r.text}")
    for g in a.causes:  # grouped: a thousand identical reasons are one line
        click.echo(f"  not analysed: {g.line()}")
    if gate.rule != "verdict":
        click.echo(f"gate: exit {int(gate.exit_code)}: {gate.reason}")
    click.echo(f"outputs in {paths[0].parent}: " + ", ".join(p.name for p in paths))
    return int(gate.exit_code)


_LOG_KEY = "bye_audit.error_log"
_PARTS_KEY = "bye_audit.parts"
_NEW_OUT_KEY = "bye_audit.new_out"  # an --out folder this run will create: removed again if left empty


def _out_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Remember where an unexpected error's traceback goes (into the output
    folder) and where stage 1 keeps its shards (said on an interruption)."""
    if value is not None:
        ctx.meta[_LOG_KEY] = Path(value) / ERROR_LOG
        ctx.meta[_PARTS_KEY] = Path(value) / PARTS
        if not Path(value).exists():
            ctx.meta[_NEW_OUT_KEY] = Path(value)
    return value


def _drop_empty_out(ctx: click.Context) -> None:
    """An input error leaves no empty output folder behind (one this run made)."""
    new = ctx.meta.get(_NEW_OUT_KEY)
    try:
        if new is not None and new.is_dir() and not any(new.iterdir()):
            new.rmdir()
    except OSError:
        pass  # e.g. removed or filled meanwhile: nothing to undo


def _out_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """... or, for a command that writes one file, beside it."""
    if value is not None:
        ctx.meta[_LOG_KEY] = Path(value).with_name(Path(value).name + ".error.log")
        ctx.meta[_PARTS_KEY] = Path(str(value) + ".parts")  # pipeline.extract_file's
    return value


def _kept(parts: Path | None) -> str:
    """What an interrupted run leaves for the next one, in words."""
    shards = samples = 0
    for entry in sorted(parts.glob("shard-*.json")) if parts is not None and parts.is_dir() else []:
        try:
            samples += len(json.loads(entry.read_text(encoding="utf-8"))["samples"])
            shards += 1
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written entry: that shard is recomputed
    if not shards:
        return "no stage-1 shard was complete, nothing is kept; run the same command to start again"
    return (f"{shards} stage-1 shard(s) ({samples:,} samples) are kept in {parts}; run the same command "
            "to resume from them")


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted("SIGTERM", ExitCode.TERMINATED)


def _write_traceback(wanted: Path | None) -> Path:
    """The current exception's traceback in `wanted`, else in a temporary file."""
    import tempfile
    import traceback


    text = f"bye-audit {__version__}: {' '.join(sys.argv)}\n\n{traceback.format_exc()}".encode(
        "utf-8", "backslashreplace")
    if wanted is not None:
        try:
            write_bytes_atomic(wanted, text)
            return wanted
        except (OSError, AuditInputError):
            pass  # e.g. the output folder is what failed: the temporary folder then
    fd, name = tempfile.mkstemp(prefix="bye-audit-error-", suffix=".log")
    with os.fdopen(fd, "wb") as fh:
        fh.write(text)
    return Path(name)


class _Group(cloup.Group):
    """Turns input errors raised anywhere below into one line on stderr and exit
    code 2, an interruption (Ctrl-C, SIGTERM, a closed output pipe) into one
    line saying what was kept and 130 / 143 / 141, and any other exception into
    one line and exit code 4 (never 1, which a gate reads as "samples
    flagged"), with the traceback in a log file."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AuditInputError as e:
            _drop_empty_out(ctx)
            click.echo(f"error: {e}", err=True)
            ctx.exit(int(ExitCode.INPUT_ERROR))
        except KeyboardInterrupt:  # before click's own handler, which exits 1 ("Aborted!")
            click.echo(f"\ninterrupted (SIGINT): {_kept(ctx.meta.get(_PARTS_KEY))}", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))
        except Interrupted as e:
            click.echo(f"\ninterrupted ({e.signal_name}): {_kept(ctx.meta.get(_PARTS_KEY))}", err=True)
            ctx.exit(int(e.exit_code))
        except BrokenPipeError:
            # Whoever read stdout is gone (`| head`): nothing more can be said
            # there, and Python's own flush at exit must not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(int(ExitCode.BROKEN_PIPE))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own exits and usage errors (Exit is a RuntimeError)
        except Exception as e:  # noqa: BLE001 - the documented last resort
            log = _write_traceback(ctx.meta.get(_LOG_KEY))
            first = (str(e).strip().splitlines() or [""])[0][:300]
            click.echo(f"internal error: {type(e).__name__}: {first} (the traceback is in {log}; "
                       "please report it with that file)", err=True)
            ctx.exit(int(ExitCode.INTERNAL_ERROR))



def _preflight(model_dir: Path | None = None, adapter_dir: Path | None = None, data: Path | None = None,
               image_root: Path | None = None, onnx_path: Path | None = None, sign_key: Path | None = None,
               out: Path | None = None, overwrite: bool = False, sarif_root: Path | None = None,
               base_dir: Path | None = None) -> None:
    """Paths checked before anything heavy is imported: a typo costs well under a second."""
    check_folder(model_dir, "--model", "model folder")
    check_folder(adapter_dir, "--adapter", "adapter folder")
    check_folder(base_dir, "--base", "base model folder")
    check_file(data, "--data", "dataset file")
    if data is not None:
        from .data.readers import dataset_format  # no torch: a wrong file type costs well under a second

        dataset_format(data)
    check_folder(image_root, "--image-root", "image folder")
    check_file(onnx_path, "--onnx", "ONNX graph")
    check_file(sign_key, "--sign-key", "signing key")
    check_folder(sarif_root, "--sarif-root", "SARIF root folder")
    if sarif_root is not None and data is not None and not Path(data).resolve().is_relative_to(
            Path(sarif_root).resolve()):
        raise AuditInputError(f"--sarif-root {sarif_root}: the dataset {data} is not under it; pass the "
                              "repository folder that holds the dataset")
    if out is not None:
        refuse_inputs([out], {"model": model_dir, "adapter": adapter_dir, "base": base_dir}, set())
        check_out_folder(out, overwrite, {str(Path(p).resolve()) for p in (data, onnx_path) if p is not None})


def _stage1(reporter):
    return dict(on_start=reporter.start, on_progress=reporter.advance, on_resumed=reporter.resumed)


@cloup.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="bye-audit")
def cli() -> None:
    """Audit a fine-tuned multimodal LLM and its dataset for backdoored samples (BYE).

    \b
    Start with:  bye-audit audit --model CHECKPOINT --base BASE --data dataset.json --out audit/
    (BASE: the model the fine-tune started from; a LoRA: --model BASE --adapter ADAPTER.)
    Then open audit/report.html (or report.pdf); bye-audit COMMAND -h for each command.
    """


@cli.command(epilog="\b\nExample:\n  bye-audit audit --model ckpt/ --base base/ --data train.json "
                    "--out audit/ --sign-key bye-audit.key\n  bye-audit audit --model base/ --adapter lora/ "
                    "--data train.json --out audit/\n\n" + EXIT_CODES)
@cloup.option_group("Inputs", _model, _adapter, _base, _base_sha256, _data, _image_root, _absolute_images)
@cloup.option_group("Output", click.option("--out", type=_path, required=True, callback=_out_folder,
                                           help="Output folder (created; inputs are never overwritten)."),
                    _overwrite, _sign_key, _sarif_root)
@cloup.option_group("Detection (stages 2-3)", *_detection_options())
@_with_detector_parameters
@cloup.option_group("Stage 1 (the model's forward passes)", *_STAGE1)
@cloup.option_group("ONNX Runtime backend", *_ONNX)
@cloup.option_group("Ray engine (scale-out)", *_RAY)
def audit(model_dir, adapter_dir, base_dir, data, out, image_root, progress, sign_key, onnx_path, address,
          overwrite, sarif_root, **cfg) -> None:
    """Run every stage: extract, analyse, write the cleaned dataset, the report and
    the evidence (manifest; signed attestation with --sign-key)."""
    config = _config(**cfg)  # a bad value is named before any file is looked at
    _check_address(config, address)
    source_date_epoch()  # the audit's date, used only when the outputs are written
    _preflight(model_dir, adapter_dir, data, image_root, onnx_path, sign_key, out, overwrite, sarif_root,
               base_dir)
    from . import pipeline  # torch, pyarrow, sklearn, matplotlib: after the options are checked
    from .console import reporter  # rich

    _quiet_libraries()
    with reporter(sys.stderr, progress) as r:
        result = pipeline.audit(model_dir, data, out, config, image_root, adapter_dir=adapter_dir,
                                base_dir=base_dir,
                                sign_key=sign_key, onnx_path=onnx_path, address=address, overwrite=overwrite,
                                on_step=r.step, sarif_root=sarif_root, **_stage1(r))
    sys.exit(_print_outcome(result))


@cli.command(epilog="\b\nExample:\n"
                    "  bye-audit extract --model ckpt/ --data train.json --out features.parquet")
@cloup.option_group("Inputs", _model, _adapter, _base, _base_sha256, _data, _image_root, _absolute_images)
@cloup.option_group("Output", click.option("--out", type=_path, required=True, callback=_out_file,
                                           help="Features file to write (.parquet)."))
@cloup.option_group("Stage 1 (the model's forward passes)", *_STAGE1)
@cloup.option_group("ONNX Runtime backend", *_ONNX)
@cloup.option_group("Ray engine (scale-out)", *_RAY)
def extract(model_dir, adapter_dir, base_dir, data, out, image_root, progress, onnx_path, address,
            **stage1) -> None:
    """Stage 1 only: per-sample, per-layer attention entropy -> features.parquet."""
    config = _config(**stage1)
    _check_address(config, address)
    _preflight(model_dir, adapter_dir, data, image_root, onnx_path, base_dir=base_dir)
    from . import pipeline  # torch, pyarrow, sklearn, matplotlib: after the options are checked
    from .console import reporter  # rich

    _quiet_libraries()
    with reporter(sys.stderr, progress, prefix="extract") as r:
        features = pipeline.extract_file(model_dir, data, out, config, image_root, adapter_dir=adapter_dir,
                                         base_dir=base_dir,
                                         onnx_path=onnx_path, address=address, **_stage1(r))
    n_ok = features.n_ok
    resume = features.resume or {}
    for d in resume.get("discarded_shards", []):
        click.echo(f"extract: shard {d['shard']} of an earlier run was recomputed: {d['reason']}", err=True)
    if resume.get("resumed_shards"):
        click.echo(f"extract: {len(resume['resumed_shards'])} shard(s) reused from an interrupted run",
                   err=True)
    click.echo(f"wrote {out}: {len(features.rows)} rows, {n_ok} analysed, {len(features.rows) - n_ok} "
               "skipped or failed")


@cli.command("export-onnx", epilog="\b\nExample:\n  bye-audit export-onnx --model ckpt/ --out graph.onnx\n  "
                                   "bye-audit audit --model ckpt/ --backend onnx --onnx graph.onnx ...")
@_model
@_adapter
@click.option("--out", type=_path, required=True, callback=_out_file,
              help="ONNX file to write (weights inline below 2 GB, else in OUT.data beside it).")
@_allow_pickle
def export_onnx(model_dir, adapter_dir, out, allow_pickle) -> None:
    """Export the attention-producing graph of --model (LLaVA, Qwen2-VL) to ONNX,
    for `extract|audit --backend onnx --onnx OUT`."""
    _preflight(model_dir, adapter_dir)
    if out.exists() and out.is_dir():
        raise AuditInputError(f"{out}: is a folder; pass a file name such as {out / 'graph.onnx'}")
    from exporters import export_onnx as export  # torch, onnx

    _quiet_libraries()
    meta = export(model_dir, out, adapter_dir, allow_pickle,
                  on_step=lambda msg: click.echo(f"export-onnx: {msg}", err=True))
    size = sum(p.stat().st_size for p in [out] + [out.parent / n for n in meta["external_data"]])
    click.echo(f"wrote {out} ({size / 2 ** 20:.1f} MiB, {meta['family']}, {meta['n_layers']} layers, opset "
               f"{meta['opset']})")


@cli.command(epilog="\b\nExample (another --tau on an audit's features):\n  bye-audit analyze "
                    "audit/features.parquet --data train.json --out audit-tau2/ "
                    "--method bye --tau 2\n\n" + EXIT_CODES)
@click.argument("features_path", metavar="FEATURES", type=_path)
@cloup.option_group("Inputs", click.option("--data", type=_path, required=True,
                                           help="The dataset the features were extracted from."), _image_root,
                    _absolute_images)
@cloup.option_group("Output", click.option("--out", type=_path, required=True, callback=_out_folder,
                                           help="Output folder."), _overwrite, _sign_key, _sarif_root)
@cloup.option_group("Detection (stages 2-3)", *_detection_options())
@_with_detector_parameters
def analyze(features_path, data, out, image_root, sign_key, overwrite, sarif_root, **cfg) -> None:
    """Stages 2-3 (and the report) from FEATURES (a features.parquet of `extract` or
    `audit`, or a .jsonl dump in the reference code's format), e.g. with another
    --tau; no model needed."""
    config = _config(**cfg)
    check_file(features_path, "FEATURES", "features file")
    source_date_epoch()
    _preflight(data=data, image_root=image_root, sign_key=sign_key, sarif_root=sarif_root)
    check_out_folder(out, overwrite, reads={str(features_path.resolve())})
    from . import pipeline  # torch, pyarrow, sklearn, matplotlib: after the options are checked
    from .console import reporter  # rich

    with reporter(sys.stderr, False, prefix="analyze") as r:
        result = pipeline.analyze_file(features_path, data, out, config, image_root, sign_key,
                                       on_step=r.step, overwrite=overwrite, sarif_root=sarif_root)
    sys.exit(_print_outcome(result))


@cli.command("export-features",
             epilog="\b\nExample:\n  bye-audit export-features audit/features.parquet --out entropy.jsonl")
@click.argument("features_path", metavar="FEATURES", type=_path)
@click.option("--format", "fmt", type=click.Choice(["bye-jsonl"]), default="bye-jsonl", show_default=True,
              help="bye-jsonl: the reference code's dump, one {question_id, entropy: {layer: nats}} "
                   "per line.")
@click.option("--out", type=_path, required=True, callback=_out_file, help="File to write.")
def export_features(features_path, fmt, out) -> None:
    """Write FEATURES (a features.parquet) in another tool's format; `analyze` reads it back."""
    from .features import read_features  # pyarrow
    from .features.bye_jsonl import render_bye_jsonl

    if Path(out).resolve() == Path(features_path).resolve():
        raise AuditInputError(f"{out}: is the input; choose another --out")
    features = read_features(features_path)
    data = render_bye_jsonl(features)
    write_bytes_atomic(Path(out), data)
    n = data.count(b"\n")
    click.echo(f"wrote {out}: {n} samples ({len(features.rows) - n} skipped or failed rows left out), {fmt}")


@cli.command(epilog="\b\nExample:\n  bye-audit evaluate audit/ --truth poisoned-ids.txt")
@click.argument("bundle", metavar="BUNDLE", type=_path, required=False)
@click.option("--truth", type=_path, required=True, help="Ground-truth poisoned ids, one per line.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the metrics as JSON (floats rounded to 6 digits).")
@click.option("--out", "old_out", type=_path, default=None, hidden=True)  # the 0.1 form, deprecated
def evaluate(bundle, truth, as_json, old_out) -> None:
    """Detection metrics of the audit bundle BUNDLE against ground truth: which
    poisoned samples were missed, which clean ones flagged."""
    if bundle is None and old_out is None:
        raise click.UsageError("pass the audit's output folder: bye-audit evaluate BUNDLE --truth FILE")
    if bundle is not None and old_out is not None:
        raise click.UsageError("pass the bundle once: as BUNDLE (--out is the old form)")
    if old_out is not None:
        click.echo("evaluate: --out BUNDLE is deprecated; write `bye-audit evaluate BUNDLE --truth FILE`",
                   err=True)
    from .evaluate import evaluate_outputs, read_truth, render_table, rounded  # sklearn, matplotlib

    if not read_truth(truth):
        click.echo(f"warning: {truth} lists no poisoned ids: recall is undefined and every flag counts as a "
                   "false positive; pass the file of poisoned ids, one per line", err=True)
    result = evaluate_outputs(bundle or old_out, truth)
    click.echo(json.dumps(rounded(result), indent=2) if as_json else render_table(result))


@cli.command(epilog="\b\nExample:\n  bye-audit keygen --out keys/\n  bye-audit audit ... --sign-key "
                    "keys/bye-audit.key")
@click.option("--out", "out_dir", type=_path, required=True,
              help="Folder for bye-audit.key and bye-audit.pub.")
@click.option("--signer", default=None,
              help='Who holds the key, e.g. "Ada Lovelace <ada@example.org>": stored beside the keys '
                   "(bye-audit.signer), named in every signed statement, the report and verify's output.")
def keygen(out_dir, signer) -> None:
    """Make an Ed25519 key pair for signing audit bundles. The private key
    (bye-audit.key, mode 0600, unencrypted) signs; give bye-audit.pub (and
    bye-audit.signer) to verifiers."""
    from .evidence.keys import PRIVATE_NAME, PUBLIC_NAME, SIGNER_NAME, check_signer, generate  # cryptography

    name = None if signer is None else check_signer(signer)
    private, public, named = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME, out_dir / SIGNER_NAME
    for p in (private, public, named):
        if p.exists():
            raise AuditInputError(f"{p}: exists; keygen never overwrites a key, choose another --out")
    pair = generate()
    write_bytes_atomic(private, pair.private_pem, mode=0o600)
    write_bytes_atomic(public, pair.public_pem)
    if name is not None:
        write_bytes_atomic(named, (name + "\n").encode("utf-8"))
    click.echo(f"wrote {private} (keep it secret) and {public}; key id {pair.keyid}"
               + (f"; signer {name} ({named})" if name else ""))


@cli.command(epilog="\b\nExample:\n  bye-audit verify audit/ --key bye-audit.pub\n  bye-audit verify audit/ "
                    "--key bye-audit.pub --data moved/train.json --image-root moved/")
@click.argument("out_dir", metavar="DIR", type=_path)
@click.option("--key", "key_path", type=_path, required=True,
              help="Public key (.pub from `bye-audit keygen`).")
@cloup.option_group(
    "Inputs that moved since the audit",
    click.option("--model", "model_dir", type=_path, default=None,
                 help="Where the model folder is now [default: where it was audited]."),
    _adapter,
    click.option("--base", "base_dir", type=_path, default=None,
                 help="Where the base model folder (--base of the audit) is now."),
    click.option("--data", type=_path, default=None,
                 help="Where the dataset file is now [default: where it was audited]."),
    click.option("--image-root", type=_path, default=None, help="Where the images' folder is now."),
    click.option("--onnx", "onnx_path", type=_path, default=None,
                 help="Where the ONNX graph is now (--backend onnx audits)."))
@click.option("--outputs-only", is_flag=True,
              help="Check the signature and the outputs only, not the inputs.")
def verify(out_dir, key_path, model_dir, adapter_dir, base_dir, data, image_root, onnx_path,
           outputs_only) -> None:
    """Check an audit bundle: the signature of DIR/attestation.dsse.json with --key,
    then the SHA-256 of every file it names (model, adapter, base, dataset, images,
    outputs). Exit 0 when all holds, 1 otherwise, naming what changed."""
    from .verify import verify_bundle  # the renderers (matplotlib, jinja) through the bundle

    if not out_dir.is_dir():
        raise AuditInputError(f"{out_dir}: not a folder; pass the output folder of an audit")
    overrides = {"model": model_dir, "adapter": adapter_dir, "base": base_dir, "images": image_root,
                 "dataset": data.parent if data is not None else None,
                 "onnx": onnx_path.parent if onnx_path is not None else None}
    result = verify_bundle(out_dir, key_path, overrides, outputs_only)
    for line in result.problems:
        click.echo(f"FAILED {line}", err=True)
    for line in result.notes:
        click.echo(f"note: {line}")
    if result.ok:
        click.echo(f"verified: {out_dir} (signature by key {result.keyid}; {result.checked} digests match)")
        if result.signed:
            click.echo(f"signed result: {result.signed}")
        if result.environment:
            click.echo(f"signed environment: {result.environment}")
    else:
        click.echo(f"NOT verified: {out_dir} ({len(result.problems)} problem(s))", err=True)
    sys.exit(0 if result.ok else 1)


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)  # a documented exit code, never a bare kill
    cli()


if __name__ == "__main__":  # python -m auditor.cli
    main()
