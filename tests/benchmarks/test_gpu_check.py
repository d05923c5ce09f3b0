"""The GPU check's dry run: without CUDA, the checks that can run on the CPU do
(and meet their tolerances), the others say why they were skipped."""

import json

import torch

from benchmarks.gpu_check import TOL_DTYPE, TOL_PARITY, main


def test_the_dry_run_exercises_what_the_cpu_can_and_names_what_it_skipped(tmp_path, capsys):
    assert not torch.cuda.is_available()  # CI's machine; on a GPU this is the real check
    out = tmp_path / "gpu-check.json"
    assert main(["--out", str(out)]) == 0
    results = {r["name"]: r for r in json.loads(out.read_text())}
    assert list(results) == ["capture-parity", "precision", "onnx-cuda", "ray-gpu", "real-size"]
    assert {r["device"] for r in results.values()} == {"cpu"}
    assert results["capture-parity"]["status"] == "ok"
    assert results["capture-parity"]["detail"]["max_abs_diff"] <= TOL_PARITY
    bf16 = results["precision"]["detail"]["bfloat16"]
    assert results["precision"]["status"] == "ok" and 0 < bf16["max_abs_diff"] <= TOL_DTYPE["bfloat16"]
    assert results["precision"]["detail"]["float16"].startswith("skipped")
    for name in ("onnx-cuda", "ray-gpu"):
        assert results[name]["status"] == "skipped" and results[name]["detail"]["reason"]
    assert results["real-size"]["status"] == "ok" and results["real-size"]["detail"]["shape"] == "smoke"
    table = capsys.readouterr().out
    assert "| onnx-cuda | skipped | cpu |" in table
