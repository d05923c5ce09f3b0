"""The CUDA paths, checked in one run on one GPU (under 8 minutes on an H200).

    .venv/bin/python -m benchmarks.gpu_check [--out gpu-check.json] [--no-real-size]

Checks, each reported as ok, FAILED or skipped (with the reason):
  capture-parity   the captured fp32 rows against eager `output_attentions=True`
                   on the device, fp32 (TF32 off): max |diff| of the per-layer
                   normalised entropy <= 1e-5 (the CPU test's tolerance);
  precision        bf16 and fp16 features against fp32 on the device: max |diff|
                   of the normalised entropy <= 0.02 (bf16) / 0.005 (fp16); the
                   weights and activations round to 8 (bf16) or 11 (fp16)
                   significant bits, about 4e-3 and 5e-4 relative per step, and
                   the entropy (in [0, 1]) sums such rounded terms: five bf16
                   rounding steps, ten fp16 ones;
  onnx-cuda        ONNX Runtime's CUDA provider (as `session.get_providers()`
                   reports it, never as merely listed) against torch on the
                   device: parity <= 1e-4 and throughput;
  ray-gpu          `--engine ray --gpus-per-worker 0.5` with 2 workers against
                   one process: the same features;
  real-size        the llava-1.5-7b-shaped checkpoint of benchmarks/real_size.py
                   in bf16 on the device: samples/s at batch 1, 8 and 32, peak
                   GPU memory against the weights, and the captured rows' extra
                   memory against eager `output_attentions` at batch 8.

Without CUDA it is a dry run: capture-parity, precision (bf16 only: CPU
kernels lack fp16) and real-size (its toy shape) run on the CPU, so their code
is exercised; the rest say what was skipped and why. Never faked: a check that
cannot run here is "skipped", not "ok".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auditor.config import AuditConfig, Stage1Config

TOL_PARITY = 1e-5
TOL_DTYPE = {"bfloat16": 0.02, "float16": 0.005}
TOL_ONNX = 1e-4


@dataclass
class Check:
    name: str
    status: str  # "ok", "FAILED" or "skipped"
    device: str
    detail: dict[str, Any] = field(default_factory=dict)


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-badnets"


def _tiny(tmp: Path, n: int = 32) -> tuple[Path, Path]:
    """The bundled example's trained checkpoint (an untrained model attends
    almost uniformly, which would hide precision effects) and its first `n`
    records, 10% of them triggered as in the whole set."""
    records = json.loads((EXAMPLE / "dataset.json").read_text())[:n]
    data = tmp / "dataset.json"  # its image paths resolve against the example's folder (image_root)
    data.write_text(json.dumps(records))
    return EXAMPLE / "model", data


def _features(model: Path, data: Path, device: str, dtype: str = "float32", **cfg) -> np.ndarray:
    """Stage-1 normalised entropies (N, L) of every sample."""
    from auditor.data import read_dataset
    from auditor.pipeline import extract, load

    onnx_path = cfg.pop("onnx_path", None)
    config = AuditConfig.of(device=device, dtype=dtype, batch_size=8, **cfg)
    loaded = load(model, config.stage1, onnx_path=onnx_path)
    fs = extract(loaded, read_dataset(data, EXAMPLE), config)
    values, _ = fs.layer_values("entropy_norm", fs.n_layers)
    return values


def capture_parity(tmp: Path, device: str) -> Check:
    import torch

    from auditor.analysis.entropy import image_attention_entropy, normalised_entropy
    from auditor.data import read_dataset
    from auditor.extract.runner import load_image, sample_rows
    from auditor.pipeline import load

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model_dir, data = _tiny(tmp)
    loaded = load(model_dir, Stage1Config(device=device))
    samples = read_dataset(data, EXAMPLE).samples[:8]
    images, prompts = [load_image(s) for s in samples], [s.prompt for s in samples]
    mine = [normalised_entropy(image_attention_entropy(c.image_rows), c.image_rows.shape[-1])
            for c in sample_rows(loaded, images, prompts)]
    fam, model = loaded.family, loaded.model
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
             for k, v in fam.build_batch(loaded.processor, images, prompts).items()}
    model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = model(**batch, use_cache=False, output_attentions=True)
    from auditor.models.capture import last_prompt_position

    q = last_prompt_position(batch["attention_mask"])
    mask = fam.image_token_mask(model.config, batch)
    diff = 0.0
    for j in range(len(samples)):
        rows = torch.stack([a[j, :, q[j]] for a in ref.attentions])[:, :, mask[j]].float().cpu().numpy()
        theirs = normalised_entropy(image_attention_entropy(rows), rows.shape[-1])
        diff = max(diff, float(np.abs(mine[j] - theirs).max()))
    return Check("capture-parity", "ok" if diff <= TOL_PARITY else "FAILED", device,
                 {"max_abs_diff": diff, "tolerance": TOL_PARITY})


def precision(tmp: Path, device: str) -> Check:
    model, data = _tiny(tmp)
    base = _features(model, data, device)
    detail: dict[str, Any] = {}
    ok = True
    for dtype, tol in TOL_DTYPE.items():
        if dtype == "float16" and device == "cpu":
            detail[dtype] = "skipped: CPU kernels lack float16"
            continue
        diff = float(np.abs(_features(model, data, device, dtype) - base).max())
        detail[dtype] = {"max_abs_diff": diff, "tolerance": tol}
        ok &= diff <= tol
    return Check("precision", "ok" if ok else "FAILED", device, detail)


def onnx_cuda(tmp: Path, device: str) -> Check:
    try:
        from auditor.extract.onnx_backend import import_onnxruntime

        ort = import_onnxruntime()
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return Check("onnx-cuda", "skipped", device, {"reason": f"onnxruntime not importable: {e}"})
    if device == "cpu":
        return Check("onnx-cuda", "skipped", device, {"reason": "no CUDA device"})
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        return Check("onnx-cuda", "skipped", device,
                     {"reason": f"the export needs {e.name}, not installed here"})
    from exporters import export_onnx

    model, data = _tiny(tmp)
    graph = tmp / "graph.onnx"
    export_onnx(model, graph)
    probe = ort.InferenceSession(str(graph), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in probe.get_providers():
        return Check("onnx-cuda", "skipped", device,
                     {"reason": "ONNX Runtime did not load its CUDA provider here (onnxruntime-gpu not "
                      f"installed, or CUDA libraries missing); providers in use: {probe.get_providers()}"})
    t0 = time.perf_counter()
    theirs = _features(model, data, "auto", backend="onnx", provider="cuda", onnx_path=graph)
    t_onnx = time.perf_counter() - t0
    t0 = time.perf_counter()
    mine = _features(model, data, device)
    t_torch = time.perf_counter() - t0
    diff = float(np.abs(theirs - mine).max())
    return Check("onnx-cuda", "ok" if diff <= TOL_ONNX else "FAILED", device,
                 {"max_abs_diff": diff, "tolerance": TOL_ONNX, "onnx_s": t_onnx, "torch_s": t_torch})


def ray_gpu(tmp: Path, device: str) -> Check:
    if device == "cpu":
        return Check("ray-gpu", "skipped", device,
                     {"reason": "no CUDA device (the CPU path is tested in CI)"})
    try:
        import ray  # noqa: F401
    except ImportError:
        return Check("ray-gpu", "skipped", device, {"reason": "ray not installed"})
    from auditor.data import read_dataset
    from auditor.extract.ray_engine import extract_features_ray
    from auditor.extract.shards import Journal

    model, data = _tiny(tmp)
    config = Stage1Config(device=device, engine="ray", workers=2, gpus_per_worker=0.5, batch_size=8,
                          shard_size=8)
    load_args = {"model_dir": str(model), "stage1": asdict(config), "adapter_dir": None, "onnx_path": None}
    rows = extract_features_ray(read_dataset(data, EXAMPLE), config, load_args,
                                Journal(tmp / "parts", "gpu-check", False), None, None)
    theirs = np.array([r.entropy_norm for r in rows])
    diff = float(np.abs(theirs - _features(model, data, device)).max())
    return Check("ray-gpu", "ok" if diff <= TOL_PARITY else "FAILED", device,
                 {"max_abs_diff": diff, "tolerance": TOL_PARITY})


def real_size(tmp: Path, device: str) -> Check:
    """Samples/s and memory of the 7B shape on a GPU; its toy shape on the CPU."""
    import torch

    from benchmarks.real_size import build
    from auditor.extract.runner import sample_rows
    from auditor.pipeline import load
    from tinyworld.digits import load_digit_arrays, render_digit

    shape = "llava-1.5-7b" if device != "cpu" else "smoke"
    record = build(tmp / "real", shape)
    loaded = load(tmp / "real" / "model", Stage1Config(device=device, dtype="bfloat16"),
                  tmp / "real" / "adapter")
    x, _ = load_digit_arrays()
    rng = np.random.default_rng(0)
    detail: dict[str, Any] = {"shape": shape, "weights_gib": record["weights_bytes"] / 2 ** 30}
    cuda = device != "cpu"
    for batch in (1, 8, 32) if cuda else (1, 2):
        images = [render_digit(x[i], rng, size=336) for i in range(batch)]
        prompts = ["What digit is shown?"] * batch
        sample_rows(loaded, images, prompts)  # warm-up
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sample_rows(loaded, images, prompts)
        if cuda:
            torch.cuda.synchronize()
        detail[f"batch_{batch}"] = {"samples_per_s": batch / (time.perf_counter() - t0)}
        if cuda:
            peak = torch.cuda.max_memory_allocated()
            detail[f"batch_{batch}"].update(peak_gib=peak / 2 ** 30,
                                            peak_vs_weights=peak / record["weights_bytes"])
    if cuda:  # the rows' memory against eager output_attentions, batch 8
        fam, model = loaded.family, loaded.model
        images = [render_digit(x[i], rng, size=336) for i in range(8)]
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                 for k, v in fam.build_batch(loaded.processor, images, ["What digit is shown?"] * 8).items()}
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        sample_rows(loaded, images, ["What digit is shown?"] * 8)
        capture = torch.cuda.max_memory_allocated() - base
        model.set_attn_implementation("eager")
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            model(**batch, use_cache=False, output_attentions=True)
        eager = torch.cuda.max_memory_allocated() - base
        detail["batch_8_extra_gib"] = {"capture": capture / 2 ** 30,
                                       "eager_output_attentions": eager / 2 ** 30}
    return Check("real-size", "ok", device, detail)


CHECKS: dict[str, Callable[[Path, str], Check]] = {
    "capture-parity": capture_parity, "precision": precision, "onnx-cuda": onnx_cuda, "ray-gpu": ray_gpu,
    "real-size": real_size}


def run(names: list[str], device: str | None = None) -> list[Check]:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = []
    for name in names:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-{name}-") as tmp:
            try:
                check = CHECKS[name](Path(tmp), device)
            except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
                check = Check(name, "FAILED", device, {"error": f"{type(e).__name__}: {str(e)[:500]}"})
        check.detail["seconds"] = round(time.perf_counter() - started, 1)
        out.append(check)
        print(f"gpu-check: {name}: {check.status} on {device} {json.dumps(check.detail, default=str)}",
              file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--no-real-size", action="store_true",
                   help="skip the 7B-shaped check (about 14 GB on disk)")
    p.add_argument("--only", nargs="*", choices=sorted(CHECKS), help="run only these checks")
    args = p.parse_args(argv)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    names = args.only or [n for n in CHECKS if not (args.no_real_size and n == "real-size")]
    checks = run(names)
    results = [asdict(c) for c in checks]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    print("| check | status | device | detail |\n|---|---|---|---|")
    for c in checks:
        print(f"| {c.name} | {c.status} | {c.device} | {json.dumps(c.detail, default=str)} |")
    return 1 if any(c.status == "FAILED" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
