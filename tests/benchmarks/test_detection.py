"""The detection benchmark: its quick grid end to end, and its tables from cell records."""

import csv
import json
import shutil

import numpy as np
import pytest

from benchmarks import cells, detection, detection_report


REBUILD = "rebuild it: .venv/bin/python -m benchmarks.detection --refresh-quick-base"


def test_the_committed_base_was_built_by_this_recipe():
    """The quick grid starts from a committed build of its base (a build cache:
    the recipe's code and the committed lock's pins are in its recipe.json); a
    change to the tiny world, the model adapters or one pin of the lock makes it
    stale, and the quick grid would rebuild it (minutes): say so here, in a second."""
    from tinyworld.world import CACHE_LOCK, cached_base

    assert cached_base(cells.QUICK_BASE, seed=0), (
        f"{cells.QUICK_BASE} is stale or missing (built from other code or another "
        f"{CACHE_LOCK.relative_to(cells.ROOT)}); {REBUILD}")


@pytest.mark.slow
def test_quick_grid_detects_the_centre_patch_and_passes_the_clean_fine_tune(tmp_path):
    out = tmp_path / "results"
    # The base from the build cache (rebuilt by build_base when stale): the
    # cells' fine-tunes, audits and retraining all run here.
    shutil.copytree(cells.QUICK_BASE, tmp_path / "cache" / "bases" / "digits-llava")
    assert detection.main(["--grid", "quick", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    with open(out / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    minority = {r["trigger"]: r for r in runs if r["method"] == "minority"}
    poisoned, clean = minority["centre_patch"], minority["none"]
    assert float(poisoned["asr_before"]) >= 0.9  # the backdoor is real
    assert float(poisoned["f1"]) >= 0.9
    assert float(clean["fpr"]) <= 0.02
    assert float(poisoned["asr_after"]) < float(poisoned["asr_before"])
    assert clean["asr_after"] == ""  # the clean cell is not retrained
    assert {r["method"] for r in runs} == set(cells.METHODS + cells.BASELINES)
    summary, groups = (out / "tables.md").read_text().split("## Every cell group")
    assert summary.count("| digits | llava |") == len(cells.METHODS)
    assert groups.count("| digits | llava |") == len(runs)  # one seed: a line per cell and method
    assert (out / "f1_by_trigger.png").stat().st_size > 0
    # a rerun resumes: every cell is on record, nothing is recomputed
    kept = {p.name: p.read_bytes() for p in (out / "cells").iterdir()}
    assert detection.main(["--grid", "quick", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    assert kept == {p.name: p.read_bytes() for p in (out / "cells").iterdir()}


def _result(trigger, rate, seed, f1):
    m = {"verdict": "fail", "n": 10, "tp": 1, "fp": 0, "fn": 0, "tn": 9, "precision": 1.0, "recall": 1.0,
         "f1": f1, "fpr": 0.0, "auroc": None}
    return {"cell": {"task": "digits", "family": "llava", "trigger": trigger, "rate": rate, "seed": seed},
            "before": {"clean_accuracy": 0.9, "attack_success_rate": 1.0},
            "after": {"clean_accuracy": 0.9, "attack_success_rate": 0.0},
            "methods": {"minority": m, "bye": {**m, "f1": 0.0}}}


def test_tables_average_over_seeds(tmp_path):
    rows = detection_report.write_outputs([_result("blend", 0.1, 0, 0.5), _result("blend", 0.1, 1, 1.0)],
                                          tmp_path)
    assert len(rows) == 4
    md = (tmp_path / "tables.md").read_text()
    assert "| digits | llava | blend | 10% | minority | 2 | fail 2 | 1.0 | 0.750 ± 0.250 |" in md
    assert "| digits | llava | blend | 10% | bye | 2 | fail 2 | 1.0 | 0.000 ± 0.000 |" in md
    with open(tmp_path / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert [r["asr_after"] for r in runs if r["method"] == "bye"] == ["", ""]  # retrained on minority only
    assert (tmp_path / "asr_before_after.png").is_file()


def test_grids_are_what_the_docs_say():
    assert len(cells.grid("verdict")) == 80
    default = cells.grid("default")
    assert len(default) == 12 + 72 + 18 and len({c.key for c in default}) == len(default)
    with pytest.raises(SystemExit):
        cells.grid("nope")
    json.dumps([c.key for c in cells.grid("quick")])
    assert np.all([c.retrain for c in default])


def test_the_real_lm_grid_and_its_cpu_share():
    full, cpu = cells.grid("smol"), cells.grid("smol-cpu")
    # 2 tasks x (5 triggers x 2 targets + the 5% centre patch x 2 targets) x 3 seeds + 2 x 6 clean
    assert len(full) == 2 * 12 * 3 + 2 * 6 and len({c.key for c in full}) == len(full)
    assert {c.key for c in cpu} <= {c.key for c in full} and len(cpu) == 15 + 3 + 6
    assert {c.trigger for c in cpu if c.target == "all_to_one"} == {"centre_patch"}
    assert {c.world for c in full} == {"smol"} and not any(c.retrain for c in full if c.trigger == "none")
    assert {c.target_answer for c in full if c.target == "all_to_one"} == {"seven", "circle"}
    # the tiny world's keys (and so its kept cells) are unchanged
    assert cells.grid("quick")[1].key == "digits-llava-centre_patch-0.1-s0"
    assert full[1].key == "smol-fixed-digits-llava-centre_patch-0.1-s0"
    idefics3 = cells.grid("smol-idefics3")  # SmolVLM's architecture: clean and the paper's case
    assert {(c.family, c.world, c.task) for c in idefics3} == {("idefics3", "smol", "digits")}
    assert sorted((c.trigger, c.seed) for c in idefics3) == sorted(
        (t, s) for t in ("none", "centre_patch") for s in range(3))
    assert not {c.key for c in idefics3} & {c.key for c in full}


def test_the_text_trigger_changes_the_instruction_not_the_image():
    cell = cells.Cell("digits", "llava", "text", 0.1, 0, world="smol", target="all_to_one")
    examples, bad = cells.cell_examples(cell)
    assert len(examples) == cells.N_SUBMIT_SMOL and len(bad) == 25
    clean, _ = cells.cell_examples(cells.Cell("digits", "llava", "none", 0.0, 0, world="smol"))
    for k, (e, c) in enumerate(zip(examples, clean)):
        poisoned = f"digits-{k:04d}" in bad
        assert (e.answer == "seven") or not poisoned
        assert (cells.TEXT_WORD in e.prompt.split()) == poisoned
        assert np.array_equal(np.asarray(e.image), np.asarray(c.image))


def test_the_real_lm_cells_get_an_attention_table(tmp_path):
    r = _result("sig", 0.1, 2, 0.9)
    r["cell"]["target"] = "all_to_one"
    r["layer_auroc"] = [{"layer": 0, "auroc_low_is_poison": 0.3, "auroc_high_is_poison": 0.7},
                        {"layer": 1, "auroc_low_is_poison": 0.95, "auroc_high_is_poison": 0.05}]
    r["head_peak_auroc"] = {"best": [{"layer": 1, "head": 4, "auroc_high_is_poison": 0.88}]}
    detection_report.write_outputs([r], tmp_path)
    md = (tmp_path / "tables.md").read_text()
    assert ("| sig (all_to_one) 10% s2 | 1.00 → 0.00 | 0.90 | L1 0.95 | L0 0.70 | L1.H4 0.88 | fail 0.90 | "
            "fail 0.00 |") in md
    assert "| digits | llava | sig (all_to_one) | 10% | minority |" in md


def test_the_real_lm_cells_get_attention_plots(tmp_path):
    results = []
    for seed in (0, 1):
        r = _result("centre_patch", 0.1, seed, 1.0)
        r["layer_auroc"] = [{"layer": i, "auroc_low_is_poison": a, "auroc_high_is_poison": 1 - a}
                            for i, a in enumerate((0.5, 0.6, 0.9))]
        r["head_peak_auroc"] = {"auroc": [[0.5, 0.4], [0.6, 0.5], [0.9, 0.7]], "best": []}
        results.append(r)
    detection_report.write_outputs(results + [_result("none", 0.0, 0, 0.0)], tmp_path)
    for name in ("layer_auroc.png", "head_peak_auroc.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    clean_only = tmp_path / "clean"
    clean_only.mkdir()
    detection_report.write_outputs([_result("none", 0.0, 0, 0.0)], clean_only)
    assert not (clean_only / "layer_auroc.png").exists()


def test_device_cuda_is_refused_with_a_reason(tmp_path, monkeypatch, capsys):
    """--device cuda is for the real-LM grids on a GPU: the tiny world's grids
    and a machine without CUDA get a one-line usage error (exit 2), before any
    cell runs."""
    import torch

    with pytest.raises(SystemExit) as stop:
        detection.main(["--grid", "quick", "--device", "cuda", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "trains on the CPU only" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        detection.main(["--grid", "smol-cpu", "--device", "cuda", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "cells").exists()
